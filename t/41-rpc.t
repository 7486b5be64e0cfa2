#!/usr/bin/perl
# RPC over HTTP against the example application (sql/migrations/0001_example_tasks.sql):
# every result shape PostgREST knows (scalar, composite, set of rows,
# TABLE, set of scalars, void, one unnamed jsonb parameter, defaults), GET
# on STABLE/IMMUTABLE and VOLATILE functions, and the errors: PostgREST's
# JSON body {code, message, details, hint} with its status mapping. What a
# call changes is checked in the database with psql.

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP ();
use Apiary::Test qw(:all);

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

my $t = Apiary::Test->new(db => 1, config => { server => { workers => 2 } });
start_or_end($t, '41-rpc.t');

# Starts a daemon and waits for /ready; if it does not get there, the rest
# of the file cannot run: fail, and end here.
sub start_or_end($d, $name) {
    my $ok = eval { $d->run(timeout => 10); 1 };
    my $err = $@;
    ok($ok, "$name: apiary starts (/live answers)") or diag($err);
    $ok &&= ok($d->wait_ready(timeout => 15),
        "$name: /ready answers 200 once the pool is up and the schema cache loaded");
    return if $ok;
    diag("apiary did not get ready ($name): the remaining tests cannot run\n" . $d->log_tail);
    done_testing;
    exit 1;
}

# rpc($t, METHOD, PATH, body => text|ref (encoded as JSON), headers => "raw
# lines\r\n", timeout => s): one request on a fresh connection, parsed.
sub rpc($d, $method, $path, %o) {
    my $body = $o{body};
    $body = $JSON->encode($body) if ref $body;
    my $raw = "$method $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" . ($o{headers} // '');
    if (defined $body) {
        $raw .= "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\n";
    }
    $raw .= "\r\n" . ($body // '');
    my ($r) = parse_responses($d->http($raw, timeout => $o{timeout} // 5), head => $method eq 'HEAD');
    return $r;
}

# A successful JSON answer: status 200, a JSON content type; the decoded body.
sub json_ok($r, $name, $status = 200) {
    ok($r, "$name: got a response") or return undef;
    is($r->{status}, $status, "$name: status $status") or diag($r->{raw});
    like($r->{headers}{'content-type'} // '', qr{^application/json(?:;|$)}, "$name: JSON content type");
    my $j = eval { $JSON->decode($r->{body}) };
    ok(!$@, "$name: the body is JSON") or diag($r->{body});
    return $j;
}

# PostgREST's error body: {code, message, details, hint}, this status and code.
sub pgrst_error_ok($r, $status, $code, $name) {
    ok($r, "$name: got a response") or return undef;
    is($r->{status}, $status, "$name: status $status") or diag($r->{raw});
    like($r->{headers}{'content-type'} // '', qr{^application/json(?:;|$)}, "$name: JSON content type");
    my $j = eval { $JSON->decode($r->{body}) };
    ok(ref $j eq 'HASH', "$name: the body is a JSON object") or return diag($r->{body});
    is_deeply([sort keys %$j], [qw(code details hint message)], "$name: code, message, details, hint");
    is($j->{code}, $code, "$name: code $code") or diag($r->{body});
    ok(defined $j->{message} && !ref $j->{message} && $j->{message} ne '', "$name: a message");
    return $j;
}

# ---------------------------------------------------------------------------
# Result shapes
# ---------------------------------------------------------------------------

# Scalar, POST and GET.
{
    my $r = rpc($t, 'POST', '/rpc/add_them', body => { a => 1, b => 2 });
    is(json_ok($r, 'POST add_them'), 3, 'POST add_them {"a":1,"b":2} -> 3');
    $r = rpc($t, 'GET', '/rpc/add_them?a=40&b=2');
    is(json_ok($r, 'GET add_them'), 42, 'GET add_them?a=40&b=2 -> 42');
    $r = rpc($t, 'GET', '/rpc/add_them?b=%2D2&a=5');
    is(json_ok($r, 'GET add_them, percent-encoded, any order'), 3, 'GET add_them?b=%2D2&a=5 -> 3');
    ok(!exists $r->{headers}{'content-range'}, 'a scalar result has no Content-Range');
}

# Composite: one object.
{
    my $r = rpc($t, 'GET', '/rpc/task?id=1');
    my $j = json_ok($r, 'GET task?id=1');
    ok(ref $j eq 'HASH', 'a composite result is a JSON object') or diag($r->{body});
    is($j->{id}, 1, 'task 1: id 1');
    is($j->{title}, $t->psql('select title from api.tasks where id = 1'), 'task 1: the title in the database');
    is_deeply([sort keys %{$j // {}}],
        [sort qw(id user_id title status priority tags due_at created_at updated_at)],
        'task 1: every column of api.tasks');
    is_deeply($j->{tags}, $JSON->decode($t->psql('select tags from api.tasks where id = 1')),
        'task 1: tags (jsonb) as JSON, not as a string');
    $r = rpc($t, 'POST', '/rpc/task', body => { id => 42 });
    $j = json_ok($r, 'POST task {"id":42}');
    is(ref $j eq 'HASH' && $j->{title}, 'Call about slides #42', 'POST task 42: the right row');
}

# SETOF composite: an array of objects, with Content-Range.
{
    my $want = $t->psql("select count(*) from api.tasks where status = 'doing'");
    my $r = rpc($t, 'POST', '/rpc/tasks_by_status', body => { status => 'doing' });
    my $j = json_ok($r, 'POST tasks_by_status doing');
    ok(ref $j eq 'ARRAY', 'a set of rows is a JSON array') or diag(substr($r->{body}, 0, 200));
    $j = [] unless ref $j eq 'ARRAY';
    is(scalar @$j, $want, "every task that is doing ($want)");
    is(scalar(grep { ref $_ eq 'HASH' && ($_->{status} // '') eq 'doing' } @$j), $want,
        'every element is a task object with status doing');
    is_deeply([map { $_->{id} } @$j], [sort { $a <=> $b } map { $_->{id} } @$j], 'in id order');
    is($r->{headers}{'content-range'}, '0-' . ($want - 1) . '/*', "Content-Range: 0-" . ($want - 1) . '/*');

    $r = rpc($t, 'GET', '/rpc/tasks_by_status?status=nothing-has-this');
    is_deeply(json_ok($r, 'GET tasks_by_status, no rows'), [], 'no rows: an empty array');
    is($r->{headers}{'content-range'}, '*/*', 'no rows: Content-Range */*');

    $r = rpc($t, 'GET', '/rpc/tasks_by_status?status=do%69ng');
    $j = json_ok($r, 'GET tasks_by_status?status=do%69ng');
    is(ref $j eq 'ARRAY' ? scalar @$j : -1, $want, 'a percent-encoded value is decoded');
}

# RETURNS TABLE: an array of objects with the table's columns.
{
    my @rows = $t->psql('select status, count(*) from api.tasks group by status order by status');
    my $want = [map { my ($s, $n) = split /\|/; { status => $s, n => $n + 0 } } @rows];
    my $r = rpc($t, 'GET', '/rpc/task_counts');
    my $j = json_ok($r, 'GET task_counts');
    is_deeply($j, $want, 'task_counts: [{status, n}, ...] as in the database') or diag($r->{body});
    is($r->{headers}{'content-range'}, '0-' . (@$want - 1) . '/*', 'task_counts: Content-Range');
    # POST with an empty body calls a function without parameters.
    $r = rpc($t, 'POST', '/rpc/task_counts', body => '');
    is_deeply(json_ok($r, 'POST task_counts, empty body'), $want, 'POST with an empty body: no arguments');
    $r = rpc($t, 'POST', '/rpc/task_counts', body => '{}');
    is_deeply(json_ok($r, 'POST task_counts {}'), $want, 'POST {}: no arguments');
}

# SETOF scalar: an array of values.
{
    my @want = $t->psql('select * from api.tag_list()');
    my $r = rpc($t, 'GET', '/rpc/tag_list');
    my $j = json_ok($r, 'GET tag_list');
    is_deeply($j, \@want, 'tag_list: an array of strings') or diag($r->{body});
    is(scalar @want, 7, 'seven tags');
    is($r->{headers}{'content-range'}, '0-6/*', 'tag_list: Content-Range 0-6/*');
}

# void: 204 without a body, and the update is in the database.
{
    my $id = $t->psql("select id from api.tasks where status <> 'done' order by id limit 1");
    like($id, qr/^\d+$/, "task $id is not done yet");
    my $r = rpc($t, 'POST', '/rpc/mark_done', body => { id => $id + 0 });
    ok($r, 'POST mark_done: got a response');
    is($r && $r->{status}, 204, 'POST mark_done: 204 No Content') or diag($r && $r->{raw});
    is($r && $r->{body}, '', 'POST mark_done: no body');
    ok(!exists $r->{headers}{'content-type'}, 'POST mark_done: no Content-Type');
    is($t->psql("select status from api.tasks where id = $id"), 'done', "task $id is done in the database");
    ok($t->psql("select updated_at > now() - interval '1 minute' from api.tasks where id = $id") eq 't',
        'the update trigger ran (updated_at is now)');
}

# A single unnamed jsonb parameter gets the whole body.
{
    for my $body ('{"x":[1,2,{"y":null}],"s":"caf\u00e9"}', '[1,2,3]', '[]', '{}', '42', '"text"', 'true') {
        my $r = rpc($t, 'POST', '/rpc/echo_json', body => $body);
        my $j = json_ok($r, "POST echo_json $body");
        is_deeply($j, $JSON->decode($body), "echo_json $body: the whole body comes back");
    }
}

# Defaults: create_task without priority gets 3; the row is in the database.
{
    my $before = $t->psql('select count(*) from api.tasks');
    my $r = rpc($t, 'POST', '/rpc/create_task', body => { user_id => 7, title => 'created by 41-rpc.t' });
    my $j = json_ok($r, 'POST create_task without priority');
    ok(ref $j eq 'HASH', 'create_task returns the new task as an object') or diag($r->{body});
    $j = {} unless ref $j eq 'HASH';
    is($j->{priority}, 3, 'priority defaults to 3');
    is($j->{user_id}, 7, 'user_id 7');
    is($j->{status}, 'todo', 'status todo (the column default)');
    like($j->{id} // '', qr/^\d+$/, 'the new id');
    my $id = $j->{id} // 0;
    is($t->psql("select user_id, title, priority, status from api.tasks where id = $id"),
        '7|created by 41-rpc.t|3|todo', 'the row is in the database');
    is($t->psql('select count(*) from api.tasks'), $before + 1, 'one more task');

    $r = rpc($t, 'POST', '/rpc/create_task', body => { user_id => 8, title => 'urgent one', priority => 1 });
    $j = json_ok($r, 'POST create_task with priority 1');
    is(ref $j eq 'HASH' && $j->{priority}, 1, 'a given priority is used');
    is($t->psql("select priority from api.tasks where title = 'urgent one'"), 1, 'priority 1 in the database');
}

# GET on a VOLATILE function runs read-only: 405, 25006, nothing written.
{
    my $before = $t->psql('select count(*) from api.tasks');
    my $r = rpc($t, 'GET', '/rpc/create_task?user_id=7&title=via+get');
    my $j = pgrst_error_ok($r, 405, '25006', 'GET create_task (VOLATILE, writes)');
    like($j && $j->{message}, qr/read-only transaction/, 'the message says read-only');
    is($t->psql("select count(*) from api.tasks where title = 'via get'"), 0, 'nothing was inserted');
    is($t->psql('select count(*) from api.tasks'), $before, 'the task count is unchanged');

    my $id = $t->psql("select id from api.tasks where status <> 'done' order by id limit 1");
    $r = rpc($t, 'GET', "/rpc/mark_done?id=$id");
    pgrst_error_ok($r, 405, '25006', 'GET mark_done (VOLATILE, writes)');
    isnt($t->psql("select status from api.tasks where id = $id"), 'done', "task $id was not updated");
}

# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

# Unknown function, unknown argument, missing argument: 404 PGRST202.
{
    my $r = rpc($t, 'POST', '/rpc/no_such_function', body => {});
    my $j = pgrst_error_ok($r, 404, 'PGRST202', 'POST an unknown function');
    like($j && $j->{message}, qr/no_such_function/, 'the message names the function');
    $r = rpc($t, 'GET', '/rpc/no_such_function?x=1');
    pgrst_error_ok($r, 404, 'PGRST202', 'GET an unknown function');

    $r = rpc($t, 'POST', '/rpc/add_them', body => { a => 1, b => 2, c => 3 });
    $j = pgrst_error_ok($r, 404, 'PGRST202', 'POST add_them with an unknown argument c');
    like($j && $j->{message}, qr/add_them\(.*\bc\b.*\)/, 'the message lists the arguments given');
    $r = rpc($t, 'GET', '/rpc/add_them?a=1&b=2&zzz=3');
    pgrst_error_ok($r, 404, 'PGRST202', 'GET add_them with an unknown argument');
    $r = rpc($t, 'POST', '/rpc/add_them', body => { a => 1 });
    pgrst_error_ok($r, 404, 'PGRST202', 'POST add_them without b (no default)');
}

# Invalid JSON: 400 PGRST102 with where the parser stopped.
{
    my $bad = '{"a": 1, "b": x}';
    my $r = rpc($t, 'POST', '/rpc/add_them', body => $bad);
    my $j = pgrst_error_ok($r, 400, 'PGRST102', "POST add_them $bad");
    my ($pos) = (($j && $j->{details}) // '') =~ /(\d+)/;
    ok(defined $pos && ($pos == 14 || $pos == 15),
        'details give the parse position (the x at offset 14)') or diag($r->{body});

    $bad = '{"a": 1, "b": ';
    $r = rpc($t, 'POST', '/rpc/add_them', body => $bad);
    $j = pgrst_error_ok($r, 400, 'PGRST102', 'POST add_them, truncated JSON');
    ($pos) = (($j && $j->{details}) // '') =~ /(\d+)/;
    ok(defined $pos && $pos <= length $bad, 'details give a position within the body') or diag($r->{body});

    $r = rpc($t, 'POST', '/rpc/add_them', body => '{"a":1,"b":2} trailing');
    pgrst_error_ok($r, 400, 'PGRST102', 'POST add_them, garbage after the JSON');
}

# A body that is not an object, for a function with named parameters.
{
    for my $body ('[1,2]', '3', '"a"') {
        my $r = rpc($t, 'POST', '/rpc/add_them', body => $body);
        ok($r && $r->{status} == 400, "POST add_them $body: 400") or diag($r && $r->{raw});
        my $j = eval { $JSON->decode($r->{body}) };
        like(ref $j eq 'HASH' && $j->{code}, qr/^PGRST1\d\d$/, "POST add_them $body: a PGRST1xx code")
            or diag($r && $r->{body});
    }
}

# RAISE EXCEPTION: 400 P0001 with message, details and hint.
{
    my $r = rpc($t, 'POST', '/rpc/fail_raise', body => { msg => 'boom from 41-rpc' });
    my $j = pgrst_error_ok($r, 400, 'P0001', 'POST fail_raise');
    is($j && $j->{message}, 'boom from 41-rpc', 'message: the raised message');
    is($j && $j->{details}, 'raised by api.fail_raise', 'details: the DETAIL');
    is($j && $j->{hint}, 'the message is the argument', 'hint: the HINT');
    $r = rpc($t, 'GET', '/rpc/fail_raise?msg=over%20GET');
    $j = pgrst_error_ok($r, 400, 'P0001', 'GET fail_raise (STABLE)');
    is($j && $j->{message}, 'over GET', 'GET: the raised message');
}

# Unique violation: 409 23505; the first insert is there, once.
{
    my $users = $t->psql('select count(*) from api.users');
    my $r = rpc($t, 'POST', '/rpc/dup_email', body => { email => 'new41@example.com' });
    my $j = json_ok($r, 'POST dup_email with a new address');
    is(ref $j eq 'HASH' && $j->{email}, 'new41@example.com', 'the new user comes back');
    $r = rpc($t, 'POST', '/rpc/dup_email', body => { email => 'new41@example.com' });
    $j = pgrst_error_ok($r, 409, '23505', 'POST dup_email with the same address again');
    like($j && $j->{details}, qr/new41\@example\.com/, 'details name the key');
    $r = rpc($t, 'POST', '/rpc/dup_email', body => { email => 'USER1@example.com' });
    pgrst_error_ok($r, 409, '23505', 'POST dup_email with a taken address (citext)');
    is($t->psql("select count(*) from api.users where email = 'new41\@example.com'"), 1, 'one such user');
    is($t->psql('select count(*) from api.users'), $users + 1, 'one user more, not three');
}

# Bad input for the parameter's type: 400 22P02.
{
    my $r = rpc($t, 'GET', '/rpc/add_them?a=x&b=1');
    my $j = pgrst_error_ok($r, 400, '22P02', 'GET add_them?a=x');
    like($j && $j->{message}, qr/integer/, 'the message names the type');
    $r = rpc($t, 'POST', '/rpc/add_them', body => { a => 'x', b => 1 });
    pgrst_error_ok($r, 400, '22P02', 'POST add_them {"a":"x"}');
}

# Methods other than GET and POST: 405 PGRST101 with Allow.
for my $m (qw(PUT PATCH DELETE)) {
    my $r = rpc($t, $m, '/rpc/add_them', body => { a => 1, b => 2 });
    pgrst_error_ok($r, 405, 'PGRST101', "$m /rpc/add_them");
    my %allow = map { uc($_) => 1 } split /\s*,\s*/, ($r && $r->{headers}{allow}) // '';
    ok($allow{GET} && $allow{POST}, "$m: Allow lists GET and POST")
        or diag('Allow: ' . (($r && $r->{headers}{allow}) // 'missing'));
    ok(!$allow{$m}, "$m: Allow does not list $m");
}

# A JWT: not supported yet, 500 PGRST300, and the function is not run.
{
    my $before = $t->psql('select count(*) from api.tasks');
    my $r = rpc($t, 'POST', '/rpc/create_task', body => { user_id => 1, title => 'with a jwt' },
        headers => "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.x\r\n");
    pgrst_error_ok($r, 500, 'PGRST300', 'Authorization: Bearer ...');
    is($t->psql('select count(*) from api.tasks'), $before, 'with a JWT the function did not run');
}

# Everything above left the daemon in good health.
{
    my $r = rpc($t, 'GET', '/rpc/add_them?a=2&b=2');
    is($r && $r->{status}, 200, 'still serving after the errors');
    is($t->get('/ready')->{status}, 200, '/ready still 200');
}

# ---------------------------------------------------------------------------
# [api] anon_role empty (anonymous access off), and [api] prefix
# ---------------------------------------------------------------------------
{
    my $t2 = Apiary::Test->new(
        name => '41-rpc.t (no anon_role, prefix /api)',
        config => {
            server => { workers => 1 },
            database => { uri => $t->db_uri, listen_uri => $t->db_listen_uri },
            api => { schemas => 'api', anon_role => '', prefix => '/api' },
        },
    );
    like($t2->read_file('apiary.conf'), qr/^anon_role = $/m, 'the configuration sets anon_role to nothing');
    start_or_end($t2, 'second daemon (anon_role empty, prefix /api)');
    my $r = rpc($t2, 'GET', '/api/rpc/add_them?a=1&b=2');
    pgrst_error_ok($r, 401, 'PGRST302', 'anon_role empty: a request without a JWT');
    is($r && $r->{headers}{'www-authenticate'}, 'Bearer', '401 comes with WWW-Authenticate: Bearer');
    my $before = $t->psql('select count(*) from api.tasks');
    $r = rpc($t2, 'POST', '/api/rpc/create_task', body => { user_id => 1, title => 'anon off' });
    pgrst_error_ok($r, 401, 'PGRST302', 'anon_role empty: POST');
    is($t->psql('select count(*) from api.tasks'), $before, 'anon_role empty: nothing was written');

    $r = rpc($t2, 'GET', '/rpc/add_them?a=1&b=2');
    ok($r && $r->{status} == 404, 'prefix /api: /rpc/add_them is outside the API, 404') or diag($r && $r->{raw});
    my $j = eval { $JSON->decode($r->{body}) };
    is(ref $j eq 'HASH' && $j->{code}, 'AP404', 'prefix /api: the server\'s own 404 (AP404)');
    $r = rpc($t2, 'GET', '/api/rpc/add_them?a=1&b=2', headers => "Authorization: Bearer x.y.z\r\n");
    pgrst_error_ok($r, 500, 'PGRST300', 'prefix /api: the API answers under /api');
    $t2->teardown;
}

done_testing;
