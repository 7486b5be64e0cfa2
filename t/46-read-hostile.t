#!/usr/bin/perl
# Hostile query strings against the read API: malformed grammar, unbalanced
# parentheses, 10,000-deep nesting, huge in.(...) lists and filter counts,
# identifiers with quotes and SQL in them, percent-encoding tricks, invalid
# UTF-8 and over-long query strings. Each gets a 4xx with a JSON error body
# (never a 5xx, a crash or a hang), the server keeps serving, and the
# fixture's data is unchanged afterwards.

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP ();
use Apiary::Test qw(:all);

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

# max_uri_size 1m lets the huge inputs reach the parser; the default 8k
# is tested at the end for 414.
my $t = Apiary::Test->new(db => 1, config => { server => { workers => 2, max_uri_size => '1m', max_header_size => '1m' } });
$t->psql(do { local (@ARGV, $/) = ("$FindBin::Bin/fixtures/read.sql"); <> });
ok(eval { $t->run(timeout => 10); 1 }, 'apiary starts') or BAIL_OUT($@);
ok($t->wait_ready(timeout => 15), 'ready') or BAIL_OUT($t->log_tail);
ok(wait_for(sub { get('/items?select=id')->{status} == 200 }, timeout => 10), 'the fixture is served');
my @workers = sort { $a <=> $b } $t->worker_pids;

sub get($path, %h) {
    my $hdr = join '', map { "$_: $h{$_}\r\n" } sort keys %h;
    my ($r) = parse_responses(
        $t->http("GET $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n$hdr\r\n", timeout => 10));
    return $r // { status => 0, headers => {}, body => '' };
}

# A 4xx with PostgREST's JSON error body.
sub rejected($path, $name, %o) {
    my $r = get($path);
    my $ok = $r->{status} >= 400 && $r->{status} < 500;
    ok($ok, "$name: 4xx") or diag("status $r->{status}: " . substr($r->{body}, 0, 300));
    is($r->{status}, $o{status}, "$name: status $o{status}") if $o{status};
    my $j = eval { $JSON->decode($r->{body}) };
    ok(ref $j eq 'HASH' && defined $j->{code} && defined $j->{message}, "$name: a JSON error body")
        or diag(substr($r->{body}, 0, 300));
    is($j->{code}, $o{code}, "$name: code $o{code}") if $o{code} && ref $j eq 'HASH';
    return $j;
}

# Malformed grammar and unbalanced parentheses.
my @bad = (
    ['id=eq' => 'PGRST100'], ['id=' => 'PGRST100'], ['id=.' => 'PGRST100'], ['id=not.' => 'PGRST100'],
    ['id=not.not.eq.1' => 'PGRST100'], ['id=eq(any' => 'PGRST100'], ['id=fts(.x' => 'PGRST100'],
    ['id=in.(' => 'PGRST100'], ['id=in.((1)' => '22P02'], ['id=in.(1))' => 'PGRST100'],
    ['id=in.("1' => 'PGRST100'], ['or=(' => 'PGRST100'], ['or=)' => 'PGRST100'],
    ['or=((id.eq.1)' => 'PGRST100'], ['or=(id.eq.1))' => 'PGRST100'], ['or=(id.eq.1,)' => 'PGRST100'],
    ['or=(,id.eq.1)' => 'PGRST100'], ['or=(id)' => 'PGRST100'], ['or=(id.eq)' => 'PGRST100'],
    ['or=(and(id.eq.1)' => 'PGRST100'], ['and=(or())' => 'PGRST100'], ['or=(id.eq."1)' => 'PGRST100'],
    ['or=(id.eq.{1)' => 'PGRST100'], ['not.or=id.eq.1' => 'PGRST100'], ['select=' . ',,' => 'PGRST100'],
    ['select=id,' => 'PGRST100'], ['select=a:' => 'PGRST100'], ['select=:a' => 'PGRST100'],
    ['select=id::' => 'PGRST100'], ['select=id::1int' => 'PGRST100'], ['select=id::text)' => 'PGRST100'],
    ['select=data->' => 'PGRST100'], ['select=data->>' => 'PGRST100'], ['order=' => 'PGRST100'],
    ['order=id.' => 'PGRST100'], ['order=id.asc.desc' => 'PGRST100'], ['order=,id' => 'PGRST100'],
    ['order=id.asc.nullsfirst.x' => 'PGRST100'], ['limit=' => 'PGRST100'], ['limit=1e3' => 'PGRST100'],
    ['limit=99999999999999999999999' => 'PGRST100'], ['offset=-0' => 'PGRST100'],
    ['data->=eq.1' => 'PGRST100'], ['id)=eq.1' => 'PGRST100'], ['"id=eq.1' => 'PGRST100'],
);
for my $b (@bad) {
    rejected("/items?$b->[0]", "malformed: $b->[0]", code => $b->[1]);
}

# Nesting: 60 levels work; 10,000 are refused before anything recurses deep.
{
    my $n = 60;
    my $q = 'or=(' . ('or(' x ($n - 1)) . 'id.eq.1' . (')' x $n);
    my $r = get("/items?select=id&$q");
    is($r->{status}, 200, '60 nested or() levels: 200') or diag($r->{body});
    is($r->{body}, '[{"id":1}]', '60 nested levels: the right row');
    $n = 10_000;
    $q = 'or=(' . ('or(' x ($n - 1)) . 'id.eq.1' . (')' x $n);
    my $j = rejected("/items?$q", '10,000 nested or() levels', status => 400, code => 'PGRST100');
    like($j->{details} // '', qr/nested 64 levels deep at most/, '10,000 levels: why');
    $q = 'or=(' . ('and(' x 9999) . ')';
    rejected("/items?$q", '10,000 unclosed and( levels', status => 400, code => 'PGRST100');
    $q = 'or=(' . ('not.and(' x 5000) . 'id.eq.1' . (')' x 5001);
    rejected("/items?$q", '5,000 nested not.and() levels', status => 400, code => 'PGRST100');
}

# Huge lists and many filters, within max_uri_size: they work.
{
    my $in = join ',', 1 .. 50_000;
    my $r = get("/items?select=id&order=id&id=in.($in)");
    is($r->{status}, 200, 'in.() with 50,000 values: 200') or diag(substr($r->{body}, 0, 200));
    is($r->{body}, join('', '[{"id":1}, ', "\n", ' {"id":2}, ', "\n", ' {"id":3}, ', "\n", ' {"id":4}, ', "\n",
                        ' {"id":5}, ', "\n", ' {"id":6}]'), 'in.() with 50,000 values: every row, json_agg\'s layout');
    my $many = join '&', ('id=gt.0') x 5000;
    $r = get("/items?select=id&$many");
    is($r->{status}, 200, '5,000 filters: 200');
    $many = join '&', ('id=gt.0') x 70_000;
    rejected("/items?select=id&$many", '70,000 filters: more values than a statement takes',
             status => 400, code => 'PGRST100');
    my $keys = join '->', ('a') x 60;
    $r = get("/items?select=id&data->$keys=is.null");
    is($r->{status}, 200, 'a 60-key JSON path: 200') or diag(substr($r->{body}, 0, 200));
    $keys = join '->', ('a') x 20_000;
    my $j = rejected("/items?select=id&data->$keys=is.null", 'a 20,000-key JSON path', status => 400, code => 'PGRST100');
    like($j->{details} // '', qr/64 keys at most/, 'a 20,000-key JSON path: why');
}

# Identifiers with quotes and SQL in them: never SQL, always "not found".
{
    for my $q ('id%22;drop%20table%20api.items;--=eq.1', 'select=id,name%22--', 'select=id%22)%20from%20pg_shadow--',
               'order=id%22%20desc;delete%20from%20api.items--', 'or=(id%22.eq.1)', '%22id%22%22=eq.1',
               'select=%22id%22%22::text', 'data-%3E%27a%27)%3B--=eq.1') {
        # Not found (42703), or not even a name (PGRST100, PGRST108).
        my $j = rejected("/items?$q", "identifier injection: $q", status => 400);
        like($j->{code} // '', qr/^(?:42703|PGRST100|PGRST108)$/, "identifier injection: $q: code");
    }
    rejected('/items%22;drop%20table%20api.items;--', 'table-name injection', status => 404, code => 'PGRST205');
    rejected('/pg_shadow', 'a catalog table', status => 404, code => 'PGRST205');
    rejected('/items?select=id::text;drop', 'a cast with SQL', status => 400, code => 'PGRST100');
    rejected('/items?select=id::text%20from%20pg_shadow', 'a cast with spaces and SQL', status => 400);
    # Values: quotes and SQL are data.
    my $r = get("/items?select=id&name=eq.'%20or%201=1--");
    is($r->{status}, 200, 'a value with SQL: 200');
    is($r->{body}, '[]', 'a value with SQL: no row matches it');
    $r = get("/items?select=id&name=in.(%22')%20or%20true--%22)");
    is($r->{body}, '[]', 'an in.() value with SQL: data');
}

# Percent-encoding tricks.
{
    rejected('/items?id=eq.%00', 'an encoded NUL in a value', status => 400, code => 'PGRST100');
    rejected('/items?id%00=eq.1', 'an encoded NUL in a key', status => 400, code => 'PGRST100');
    rejected('/items?id=eq.%zz', 'a bad escape', status => 400, code => 'PGRST100');
    rejected('/items?id=eq.%2', 'a truncated escape', status => 400, code => 'PGRST100');
    rejected('/items?id=eq.%', 'a lone percent', status => 400, code => 'PGRST100');
    rejected('/items?name=eq.%C0%AE', 'an overlong UTF-8 form in a value', status => 400, code => '22021');
    rejected('/items?na%C0%AEme=eq.1', 'invalid UTF-8 in a column name', status => 400, code => '42703');
    rejected('/items?select=%FF%FE', 'invalid UTF-8 in select', status => 400, code => '42703');
    rejected('/it%FFems', 'invalid UTF-8 in a table name', status => 404, code => 'PGRST205');
    my $r = get('/items?select=id&id=eq.%252');
    is($r->{status}, 400, 'a double-encoded value is decoded once (the value "%2" is not an int)');
    $r = get('/items?select=id&%69%64=eq.1');
    is($r->{body}, '[{"id":1}]', 'an encoded column name is the column');
    $r = get('/items?select=id&id=eq.1&id=eq.1&&&');
    is($r->{body}, '[{"id":1}]', 'repeated filters and empty pairs');
    $r = get('/items?select=id&id=eq.1#fragment');
    is($r->{status}, 200, 'a fragment is not part of the query');
}

# The database is untouched and the workers are the same ones.
is($t->psql('select count(*) from api.items'), 6, 'api.items still has its 6 rows');
is(get('/items?select=id&id=eq.1')->{body}, '[{"id":1}]', 'still serving');
is_deeply([sort { $a <=> $b } $t->worker_pids], \@workers, 'no worker crashed or was replaced');
$t->stop;

# The default max_uri_size: an over-long query string is 414.
{
    my $d = Apiary::Test->new(db => 1, config => { server => { workers => 1 } });
    $d->run(timeout => 10);
    ok($d->wait_ready(timeout => 15), 'default limits: ready');
    my ($r) = parse_responses($d->http('GET /tasks?id=in.(' . join(',', 1 .. 5000) . ") HTTP/1.1\r\nHost: x\r\n\r\n"));
    is($r->{status}, 414, 'a 24 KB query string: 414');
    ok(eval { $JSON->decode($r->{body}) }, '414: a JSON body');
    ($r) = parse_responses($d->http("GET /tasks?select=id&id=eq.1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    is($r->{status}, 200, 'default limits: still serving');
    $d->stop;
}
done_testing;
