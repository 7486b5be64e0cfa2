#!/usr/bin/perl
# The read API against a fixture (t/fixtures/read.sql: every common column
# type, NULLs, a view): each operator, the or/and trees, select forms,
# order forms, limit/offset/Range, counts (exact, planned, estimated),
# representations (JSON, single object, CSV, stripped nulls) and each error
# code, compared with what PostgREST 16 answers.

use v5.36;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP ();
use Apiary::Test qw(:all);

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

my $t = Apiary::Test->new(db => 1, config => { server => { workers => 2 } });
$t->psql(do { local (@ARGV, $/) = ("$FindBin::Bin/fixtures/read.sql"); <> });
ok(eval { $t->run(timeout => 10); 1 }, 'apiary starts') or BAIL_OUT($@);
ok($t->wait_ready(timeout => 15), 'ready') or BAIL_OUT($t->log_tail);

# The fixture arrived after the workers loaded their cache, or with it: wait
# until /items answers.
ok(wait_for(sub { (get('/items?select=id'))->{status} == 200 }, timeout => 10),
   'the fixture is in the schema cache');

sub get($path, %h) {
    my $method = delete $h{method} // 'GET';
    my $hdr = join '', map { "$_: $h{$_}\r\n" } sort keys %h;
    my ($r) = parse_responses(
        $t->http("$method $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n$hdr\r\n", timeout => 5),
        head => $method eq 'HEAD');
    return $r // { status => 0, headers => {}, body => '' };
}

sub body($r) { my $j = eval { $JSON->decode($r->{body}) }; return $j }

# ids($query): the ids the read answers, in order (order=id unless the
# query orders).
sub ids($q, %h) {
    my $path = "/items?select=id" . ($q =~ /(?:^|&)order=/ ? '' : '&order=id') . ($q eq '' ? '' : "&$q");
    my $r = get($path, %h);
    return "status $r->{status}: $r->{body}" unless $r->{status} == 200 || $r->{status} == 206;
    my $j = body($r);
    return 'not JSON' unless ref $j eq 'ARRAY';
    return join ',', map { $_->{id} } @$j;
}

sub error_ok($r, $status, $code, $name, $message = undef) {
    is($r->{status}, $status, "$name: status $status") or diag($r->{body});
    like($r->{headers}{'content-type'} // '', qr{^application/json; charset=utf-8$}, "$name: JSON");
    my $j = body($r);
    ok(ref $j eq 'HASH' && join(',', sort keys %$j) eq 'code,details,hint,message',
       "$name: {code, details, hint, message}") or diag($r->{body});
    is($j->{code}, $code, "$name: code $code");
    like($j->{message}, $message, "$name: message") if $message;
    return $j;
}

# ---------------------------------------------------------------------------
# Operators
# ---------------------------------------------------------------------------
my @filters = (
    ['' => '1,2,3,4,5,6'],
    ['id=eq.1' => '1'],
    ['id=neq.1' => '2,3,4,5,6'],
    ['qty=gt.5' => '1,2,6'],
    ['qty=gte.5' => '1,2,5,6'],
    ['qty=lt.5' => '4'],
    ['qty=lte.5' => '4,5'],
    ['price=gt.2.5' => '3,5,6'],
    ['ratio=lt.0' => '6'],
    ['born=gte.2021-01-01' => '2,5,6'],
    ['at=lt.2000-01-01T00:00:00Z' => '4'],
    ['name=like.*an*' => '2,6'],
    ['name=ilike.b*' => '2'],
    ['name=like.apple' => '1'],
    ['name=match.^[a-c]' => '1,3'],
    ['name=imatch.^B' => '2'],
    ['id=in.(1,3,5)' => '1,3,5'],
    ['id=in.()' => ''],
    ['name=in.(%22cherry,%20red%22,apple)' => '1,3'],
    ['name=in.(%22date%5C%22quote%22)' => '5'],
    ['name=in.(null)' => ''],
    ['active=is.true' => '1,3,5'],
    ['active=is.false' => '2,6'],
    ['active=is.null' => '4'],
    ['active=is.unknown' => '4'],
    ['active=is.NULL' => '4'],
    ['qty=is.null' => '3'],
    ['qty=is.not_null' => '1,2,4,5,6'],
    ['active=isdistinct.true' => '2,4,6'],
    ['doc=fts(english).cats' => '1'],
    ['doc=fts(english).fat' => '1,5'],
    ['doc=plfts(english).fat%20rats' => '5'],
    ['doc=phfts(english).fat%20cats' => '1'],
    ['doc=wfts(english).fat%20-rats' => '1'],
    ['body=fts(english).fox' => '1'],
    ['body=plfts(english).lazy%20dog' => '2'],
    ['tags=cs.{fruit}' => '1,2,6'],
    ['tags=cd.{red,fruit}' => '1,3,5'],
    ['tags=ov.{red,green}' => '1,3,6'],
    ['nums=cs.{1}' => '1,6'],
    ['span=sl.[50,60)' => '1,2,3'],
    ['span=sr.[0,1)' => '1,2,3,6'],
    ['span=nxr.[0,12)' => '1'],
    ['span=nxl.[8,9)' => '3,6'],
    ['span=adj.[10,20)' => '1,3'],
    ['span=ov.[8,12)' => '1,2'],
    ['data=cs.{"a":1}' => '1'],
    ['data->>a=eq.1' => '1'],
    ['data->a=gt.2' => '3,5,6'],
    ['data->b->>c=eq.x' => '1,6'],
    ['data->arr->0=eq.1' => '1'],
    ['data->b=is.null' => '3,4'],
    ['info->>k=eq.v2' => '2'],
    ['id=not.in.(1,2)' => '3,4,5,6'],
    ['qty=not.is.null' => '1,2,4,5,6'],
    ['name=not.like.*a*' => '3'],
    ['id=not.eq.3&id=not.eq.4' => '1,2,5,6'],
    ['id=gt.1&id=lt.4' => '2,3'],
    ['or=(id.eq.1,id.eq.2)' => '1,2'],
    ['or=(qty.lt.5,and(active.is.true,price.gt.5))' => '4,5'],
    ['not.or=(id.lt.3,id.gt.4)' => '3,4'],
    ['and=(id.gt.1,id.lt.4)' => '2,3'],
    ['not.and=(id.gt.1,id.lt.6)' => '1,6'],
    ['or=(id.eq.1,not.and(id.gt.1,id.lt.6))' => '1,6'],
    ['or=(id.in.(1,2),name.eq.%22cherry,%20red%22)' => '1,2,3'],
    ['or=(name.eq.%22date\\%22quote%22,id.eq.6)' => '5,6'],
    ['or=(tags.cs.{red,fruit},id.eq.2)' => '1,2'],
    ['or=(data->>a.eq.2,data->b->>c.eq.x)' => '1,2,6'],
    ['or=(id.not.eq.1,qty.is.null)&id=lt.3' => '2'],
    ['or=(span.adj.%22[10,20)%22)' => '1,3'],
    ['or=(or(id.eq.1,id.eq.2),or(id.eq.3))' => '1,2,3'],
    ['name=like(any).{a*,B*}' => '1,2'],
    ['name=like(all).{*a*,*e*}' => '1,5'],
    ['id=eq(any).{1,4}' => '1,4'],
    ['qty=gt(all).{1,6}' => '1,2,6'],
    ['%22dotted.col%22=eq.d1' => '1'],
    ['Spaced%20Col=eq.sp2' => '2'],
    ['Spaced+Col=eq.sp2' => '2'],
    ['name=eq.%C3%89lan%20%E2%98%95' => '6'],
    ['body=eq.quoted%20%22text%22%20here' => '4'],
    ['name=eq.a.b,c(d)' => ''],
    ['uid=eq.00000000-0000-0000-0000-000000000001' => '1'],
);
for my $f (@filters) {
    is(ids($f->[0]), $f->[1], "filter $f->[0]");
}

# The view.
{
    my $r = get('/active_items?order=id');
    is($r->{status}, 200, 'a view: 200');
    is_deeply(body($r), [{ id => 1, name => 'apple', qty => 10 }, { id => 3, name => 'cherry, red', qty => undef },
                         { id => 5, name => 'date"quote', qty => 5 }], 'a view: its rows and columns');
    is(get('/active_items?qty=gt.6')->{status}, 200, 'a view: filtered');
}

# ---------------------------------------------------------------------------
# select
# ---------------------------------------------------------------------------
{
    my $r = get('/items?id=eq.1');
    my $j = body($r);
    is($r->{status}, 200, 'select *: 200');
    is_deeply([sort keys %{$j->[0]}], [sort('id', 'name', 'qty', 'price', 'ratio', 'active', 'born', 'at', 'tags', 'nums',
        'data', 'info', 'span', 'doc', 'body', 'Spaced Col', 'dotted.col', 'uid')], 'select *: every column');
    is($j->[0]{price}, 1.5, 'numeric as a JSON number');
    is_deeply($j->[0]{tags}, ['red', 'fruit'], 'text[] as a JSON array');
    is_deeply($j->[0]{data}, { a => 1, b => { c => 'x' }, arr => [1, 2] }, 'jsonb as JSON');
    is($j->[0]{span}, '[1,10)', 'a range as text');
    is($j->[0]{born}, '2020-01-01', 'a date');
    is($j->[0]{at}, '2020-01-01T10:00:00+00:00', 'a timestamptz in ISO 8601');
    is_deeply(body(get('/items?id=eq.4&select=id,name,tags,data')), [{ id => 4, name => undef, tags => undef, data => undef }],
        'NULLs are JSON null');

    my @sel = (
        ['id,name' => [{ id => 1, name => 'apple' }]],
        ['label:name,id' => [{ label => 'apple', id => 1 }]],
        ['id,price::text' => [{ id => 1, price => '1.50' }]],
        ['p:price::text' => [{ p => '1.50' }]],
        ['qty::float8' => [{ qty => 10 }]],
        ['id,data->b->>c' => [{ id => 1, c => 'x' }]],
        ['id,x:data->a' => [{ id => 1, x => 1 }]],
        ['data->arr' => [{ arr => [1, 2] }]],
        ['first:nums->0' => [{ first => 1 }]],
        ['k:info->>k' => [{ k => 'v1' }]],
        ['%22dotted.col%22,Spaced%20Col' => [{ 'dotted.col' => 'd1', 'Spaced Col' => 'sp1' }]],
        ['*,label:name' => undef],
        ['id,id' => undef],
    );
    for my $s (@sel) {
        my $r = get("/items?id=eq.1&select=$s->[0]");
        is($r->{status}, 200, "select=$s->[0]: 200") or diag($r->{body});
        is_deeply(body($r), $s->[1], "select=$s->[0]: body") if $s->[1];
    }
    my $j2 = body(get('/items?id=eq.1&select=*,label:name'));
    is($j2->[0]{label}, 'apple', 'select=*,label:name: both');
    is(get('/items?id=eq.1&select=id,born::text')->{status}, 200, 'a cast to text');
    my $bad = get('/items?select=id::nosuchtype');
    error_ok($bad, 400, '42704', 'a cast to an unknown type: PostgreSQL\'s error');
}

# ---------------------------------------------------------------------------
# order, limit, offset, Range, counts
# ---------------------------------------------------------------------------
is(ids('order=id.desc'), '6,5,4,3,2,1', 'order=id.desc');
is(ids('order=qty.desc'), '3,2,1,6,5,4', 'order=qty.desc: NULLs first by default, as PostgreSQL');
is(ids('order=qty.desc.nullslast'), '2,1,6,5,4,3', 'order=qty.desc.nullslast');
is(ids('order=qty.asc.nullsfirst'), '3,4,5,6,1,2', 'order=qty.asc.nullsfirst');
is(ids('order=qty.nullsfirst'), '3,4,5,6,1,2', 'order=qty.nullsfirst (asc by default)');
is(ids('order=qty'), '4,5,6,1,2,3', 'order=qty');
is(ids('order=active.desc.nullslast,id.desc'), '5,3,1,6,2,4', 'order on two columns');
is(ids('order=data->>a.desc&data=not.is.null'), '6,5,3,2,1', 'order on a JSON path');
is(ids('order=data->a.asc&data=not.is.null'), '1,2,3,5,6', 'order on a jsonb value');
is(ids('order=Spaced%20Col.desc.nullslast'), '6,5,4,2,1,3', 'order on a column with a space');

sub range_ok($q, $h, $status, $range, $ids, $name) {
    my $r = get("/items?select=id&order=id$q", %$h);
    is($r->{status}, $status, "$name: status $status") or diag($r->{body});
    is($r->{headers}{'content-range'}, $range, "$name: Content-Range $range");
    is(join(',', map { $_->{id} } @{body($r) // []}), $ids, "$name: rows $ids") if defined $ids;
    return $r;
}
range_ok('', {}, 200, '0-5/*', '1,2,3,4,5,6', 'no range');
range_ok('&limit=2', {}, 200, '0-1/*', '1,2', 'limit=2');
range_ok('&limit=2&offset=2', {}, 200, '2-3/*', '3,4', 'limit=2&offset=2');
range_ok('&offset=4', {}, 200, '4-5/*', '5,6', 'offset=4');
range_ok('&limit=0', {}, 200, '*/*', '', 'limit=0');
range_ok('&offset=10', {}, 200, '*/*', '', 'offset past the end, no count');
range_ok('&id=gt.100', {}, 200, '*/*', '', 'no rows');
range_ok('', { Range => '1-2' }, 200, '1-2/*', '2,3', 'Range: 1-2');
range_ok('', { Range => '3-' }, 200, '3-5/*', '4,5,6', 'Range: 3-');
range_ok('', { Range => '0-1', 'Range-Unit' => 'items' }, 200, '0-1/*', '1,2', 'Range with Range-Unit');
range_ok('&limit=3', { Range => '1-10' }, 200, '1-2/*', '2,3', 'Range within limit');
range_ok('', { Range => 'bytes=0-10' }, 200, '0-5/*', undef, 'a byte range is ignored');
range_ok('', { Prefer => 'count=exact' }, 200, '0-5/6', undef, 'count=exact, everything');
my $pa = range_ok('&limit=2', { Prefer => 'count=exact' }, 206, '0-1/6', '1,2', 'count=exact, a page');
is($pa->{headers}{'preference-applied'}, 'count=exact', 'Preference-Applied: count=exact');
range_ok('&offset=4', { Prefer => 'count=exact' }, 206, '4-5/6', '5,6', 'count=exact, the last page');
range_ok('&id=gt.4', { Prefer => 'count=exact' }, 200, '0-1/2', '5,6', 'count=exact with a filter');
range_ok('&id=gt.100', { Prefer => 'count=exact' }, 200, '*/0', '', 'count=exact, no rows');
range_ok('&offset=6', { Prefer => 'count=exact' }, 206, '*/6', '', 'count=exact, offset at the end');
range_ok('', { Prefer => 'count=exact', Range => '2-3' }, 206, '2-3/6', '3,4', 'count=exact with Range');
{
    my $r = range_ok('&offset=10', { Prefer => 'count=exact' }, 416, '*/6', undef, 'count=exact, offset past the end');
    my $j = error_ok($r, 416, 'PGRST103', 'offset past the end', qr/^Requested range not satisfiable$/);
    is($j->{details}, 'An offset of 10 was requested, but there are only 6 rows.', '416 details');
    $r = get('/items', Range => '5-2');
    error_ok($r, 416, 'PGRST103', 'Range: 5-2');
}
{
    my $r = get('/items?select=id&limit=2', Prefer => 'count=planned');
    is($r->{status}, 206, 'count=planned: 206');
    like($r->{headers}{'content-range'} // '', qr{^0-1/\d+$}, 'count=planned: a number from the planner');
    is($r->{headers}{'preference-applied'}, 'count=planned', 'count=planned: Preference-Applied');
    $r = get('/items?select=id&limit=2&id=gt.2&name=like.*a*', Prefer => 'count=planned');
    like($r->{headers}{'content-range'} // '', qr{^0-1/\d+$}, 'count=planned with filters and parameters') or diag($r->{body});
    $r = get('/items?select=id&limit=2', Prefer => 'count=estimated');
    is($r->{headers}{'content-range'}, '0-1/6', 'count=estimated without max_rows: exact');
}
# HEAD: the head with Content-Range, no body.
{
    my $r = get('/items?limit=2', method => 'HEAD', Prefer => 'count=exact');
    is($r->{status}, 206, 'HEAD: 206');
    is($r->{headers}{'content-range'}, '0-1/6', 'HEAD: Content-Range');
    is($r->{body}, '', 'HEAD: no body');
}

# ---------------------------------------------------------------------------
# Representations
# ---------------------------------------------------------------------------
{
    my $r = get('/items?id=eq.1&select=id,name', Accept => 'application/vnd.pgrst.object+json');
    is($r->{status}, 200, 'single object: 200');
    is($r->{headers}{'content-type'}, 'application/vnd.pgrst.object+json; charset=utf-8', 'single object: type');
    is_deeply(body($r), { id => 1, name => 'apple' }, 'single object: the row');
    $r = get('/items?id=gt.1', Accept => 'application/vnd.pgrst.object+json');
    my $j = error_ok($r, 406, 'PGRST116', 'single object, 5 rows', qr/^Cannot coerce the result to a single JSON object$/);
    is($j->{details}, 'The result contains 5 rows', 'single object, 5 rows: details');
    $r = get('/items?id=eq.100', Accept => 'application/vnd.pgrst.object+json');
    $j = error_ok($r, 406, 'PGRST116', 'single object, no row');
    is($j->{details}, 'The result contains 0 rows', 'single object, no row: details');

    $r = get('/items?select=id,name,tags&id=lte.3&order=id', Accept => 'text/csv');
    is($r->{status}, 200, 'CSV: 200');
    is($r->{headers}{'content-type'}, 'text/csv; charset=utf-8', 'CSV: type');
    is($r->{body}, qq{id,name,tags\n1,apple,"{red,fruit}"\n2,Banana,"{yellow,fruit}"\n3,"cherry, red",{red}},
       'CSV: header and rows, quoted as PostgreSQL quotes records');
    $r = get('/items?select=id&id=eq.100', Accept => 'text/csv');
    is($r->{body}, "\n", 'CSV, no rows: an empty header line');

    $r = get('/items?select=id,name,qty&id=in.(3,4)&order=id', Accept => 'application/vnd.pgrst.array+json;nulls=stripped');
    is_deeply(body($r), [{ id => 3, name => 'cherry, red' }, { id => 4, qty => 0 }], 'nulls=stripped');

    $r = get('/items?select=id&id=eq.1', Accept => 'text/csv;q=0.5, application/json');
    is($r->{headers}{'content-type'}, 'application/json; charset=utf-8', 'Accept: the higher q wins');
    $r = get('/items?select=id&id=eq.1', Accept => 'text/html, */*;q=0.1');
    is($r->{status}, 200, 'Accept: */* as a fallback');
    $r = get('/items', Accept => 'text/xml');
    error_ok($r, 406, 'PGRST107', 'Accept: text/xml', qr/^None of these media types are available: text\/xml$/);
}

# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------
{
    my $j = error_ok(get('/itemz'), 404, 'PGRST205', 'unknown table',
                     qr/^Could not find the table 'api.itemz' in the schema cache$/);
    is($j->{hint}, "Perhaps you meant the table 'api.items'", 'unknown table: a hint');
    $j = error_ok(get('/zzzzzzzzzzzzzzz'), 404, 'PGRST205', 'unknown table, nothing close');
    is($j->{hint}, undef, 'nothing close: no hint');
    error_ok(get('/items?select=nope'), 400, '42703', 'unknown column in select', qr/^column items.nope does not exist$/);
    error_ok(get('/items?nope=eq.1'), 400, '42703', 'unknown column in a filter');
    error_ok(get('/items?order=nope.desc'), 400, '42703', 'unknown column in order');
    error_ok(get('/items?or=(id.eq.1,nope.eq.2)'), 400, '42703', 'unknown column in a tree');
    error_ok(get('/items?nope->>a=eq.1'), 400, '42703', 'unknown column with a JSON path');
    $j = error_ok(get('/items?id=xx.1'), 400, 'PGRST100', 'unknown operator',
                  qr/^"failed to parse filter \(xx\.1\)" \(line 1, column 1\)$/);
    like($j->{details}, qr/unexpected "x" expecting operator/, 'unknown operator: details');
    error_ok(get('/items?id=eq1'), 400, 'PGRST100', 'no dot after the operator');
    error_ok(get('/items?id=in.1,2'), 400, 'PGRST100', 'in without parentheses');
    error_ok(get('/items?id=in.(1,2'), 400, 'PGRST100', 'in, unbalanced');
    error_ok(get('/items?active=is.maybe'), 400, 'PGRST100', 'is.maybe');
    error_ok(get('/items?or=(id.eq.1'), 400, 'PGRST100', 'or, unbalanced');
    error_ok(get('/items?or=id.eq.1'), 400, 'PGRST100', 'or without parentheses');
    error_ok(get('/items?or=()'), 400, 'PGRST100', 'or=()');
    error_ok(get('/items?order=id.sideways'), 400, 'PGRST100', 'order direction');
    error_ok(get('/items?limit=x'), 400, 'PGRST100', 'limit=x');
    error_ok(get('/items?limit=-1'), 400, 'PGRST100', 'limit=-1');
    error_ok(get('/items?offset=1.5'), 400, 'PGRST100', 'offset=1.5');
    error_ok(get('/items?id=neq(any).{1}'), 400, 'PGRST100', 'neq(any)');
    error_ok(get('/items?select=id::'), 400, 'PGRST100', 'an empty cast');
    error_ok(get('/items?select=id::text;drop'), 400, 'PGRST100', 'a cast that is not a type name');
    error_ok(get('/items?select=id,users(*)'), 400, 'PGRST200', 'embedding',
             qr/^Could not find a relationship between 'items' and 'users' in the schema cache$/);
    error_ok(get('/items?select=count()'), 400, 'PGRST123', 'an aggregate');
    error_ok(get('/items?users.id=eq.1'), 400, 'PGRST108', 'a filter on an embedded resource',
             qr/^'users' is not an embedded resource in this request$/);
    error_ok(get('/items?id=eq.abc'), 400, '22P02', 'a value of the wrong type: PostgreSQL\'s 22P02');
    error_ok(get('/items?span=sl.[1,'), 400, '22P02', 'a malformed range literal');
    error_ok(get('/items?id=eq(any).{1,'), 400, '22P02', 'a malformed array literal');
    error_ok(get('/items?doc=fts(klingon).x'), 400, '42704', 'an unknown text search configuration');
    my $r = get('/items', method => 'POST');
    error_ok($r, 405, 'PGRST117', 'POST on a table');
    is($r->{headers}{allow}, 'GET, HEAD', 'POST on a table: Allow');
    error_ok(get('/items', 'Accept-Profile' => 'other'), 406, 'PGRST106', 'Accept-Profile: other',
             qr/^The schema must be one of the following: api$/);
    is(get('/items?select=id&id=eq.1', 'Accept-Profile' => 'api')->{status}, 200, 'Accept-Profile: api');
    $r = get('/items', Prefer => 'handling=strict, count=exact, foo, bar');
    $j = error_ok($r, 400, 'PGRST122', 'Prefer: handling=strict with unknown preferences');
    is($j->{details}, 'Invalid preferences: foo, bar', 'handling=strict: details');
    is(get('/items?select=id', Prefer => 'handling=lenient, foo')->{status}, 200, 'handling=lenient ignores them');
    error_ok(get('/a/b'), 404, 'PGRST125', 'a nested path');
}

# Anonymous access follows grants: a table anon may not read.
{
    $t->psql('create table api.secret (id int); insert into api.secret values (1)');
    ok(wait_for(sub { get('/secret')->{status} != 404 }, timeout => 10), 'a new table reaches the cache');
    error_ok(get('/secret'), 401, '42501', 'a table anon has no grant on: 401');
}

# max_rows: a second daemon with [api] max_rows = 3.
{
    my $m = Apiary::Test->new(db => 1, config => { server => { workers => 1 }, api => { max_rows => 3 } });
    $m->psql(do { local (@ARGV, $/) = ("$FindBin::Bin/fixtures/read.sql"); <> });
    $m->run(timeout => 10);
    ok($m->wait_ready(timeout => 15), 'max_rows: ready');
    my $get = sub ($path, %h) {
        my $hdr = join '', map { "$_: $h{$_}\r\n" } sort keys %h;
        my ($r) = parse_responses($m->http("GET $path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n$hdr\r\n"));
        return $r;
    };
    ok(wait_for(sub { $get->('/items?select=id')->{status} == 200 }, timeout => 10), 'max_rows: the fixture is there');
    my $r = $get->('/items?select=id&order=id');
    is($r->{headers}{'content-range'}, '0-2/*', 'max_rows caps the rows');
    is(scalar @{body($r)}, 3, 'max_rows: 3 rows');
    $r = $get->('/items?select=id&order=id&limit=10', Prefer => 'count=exact');
    is($r->{status}, 206, 'max_rows with count: 206');
    is($r->{headers}{'content-range'}, '0-2/6', 'max_rows with count: 0-2/6');
    $r = $get->('/items?select=id&order=id&limit=2');
    is($r->{headers}{'content-range'}, '0-1/*', 'a smaller limit stays');
    $r = $get->('/items?select=id&order=id', Prefer => 'count=estimated');
    like($r->{headers}{'content-range'} // '', qr{^0-2/\d+$}, 'count=estimated with max_rows');
    $m->stop;
}

# The daemon is still healthy after all of that.
is(get('/items?select=id&id=eq.1')->{status}, 200, 'still serving');
done_testing;
