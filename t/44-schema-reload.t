#!/usr/bin/perl
# Schema reload without a restart: DDL in the schema api fires the event
# trigger of sql/apiary.sql, which sends NOTIFY apiary, 'reload schema'; each
# worker LISTENs on its own direct connection ([database] listen_uri) and
# reloads its schema cache. A new function becomes callable, a changed
# signature is seen, a dropped function is 404 again. No HUP, no restart.

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP ();
use Time::HiRes qw(time sleep);
use Apiary::Test qw(:all);

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

my $t = Apiary::Test->new(db => 1, config => { server => { workers => 2 } });

# Starts the daemon and waits for /ready; if it does not get there, the
# rest of the file cannot run: fail, and end here.
{
    my $ok = eval { $t->run(timeout => 10); 1 };
    my $err = $@;
    ok($ok, 'apiary starts (/live answers)') or diag($err);
    $ok &&= ok($t->wait_ready(timeout => 15), '/ready 200');
    if (!$ok) {
        diag("apiary did not get ready: the remaining tests cannot run\n" . $t->log_tail);
        done_testing;
        exit 1;
    }
}

sub rpc($method, $path, $body = undef) {
    my $raw = "$method $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";
    $raw .= "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\n" if defined $body;
    $raw .= "\r\n" . ($body // '');
    my ($r) = parse_responses($t->http($raw, timeout => 5));
    return $r;
}

sub code_of($r) {
    my $j = eval { $JSON->decode($r->{body}) };
    return ref $j eq 'HASH' ? $j->{code} // '' : '';
}

# Polls (bounded) until $n requests in a row, each on a fresh connection
# (so both workers are asked), satisfy $cond; returns the seconds it took,
# or undef.
sub settles($req, $cond, %o) {
    my $t0 = time;
    my $deadline = $t0 + ($o{timeout} // 5);
    my $streak = 0;
    my $last;
    while (time < $deadline) {
        $last = $req->();
        $streak = ($last && $cond->($last)) ? $streak + 1 : 0;
        return time - $t0 if $streak >= ($o{n} // 10);
        sleep($streak ? 0.01 : 0.05);
    }
    diag('last response: ' . ($last ? $last->{raw} : 'none'));
    return undef;
}

# The workers (by id) that logged "schema cache reloaded" from log record
# $from on.
sub reloaded_workers($from) {
    my @recs = $t->log_records;
    my %w = map { $_->{worker} => 1 }
        grep { ($_->{msg} // '') =~ /^schema cache reloaded/ && defined $_->{worker} } @recs[$from .. $#recs];
    return join ',', sort keys %w;
}

# The function does not exist yet.
{
    my $r = rpc('GET', '/rpc/brand_new?x=2');
    is($r && $r->{status}, 404, 'before: GET /rpc/brand_new -> 404');
    is(code_of($r), 'PGRST202', 'before: PGRST202');
}

# CREATE FUNCTION: callable without a restart.
my @pids = $t->worker_pids;
my $from = scalar(my @recs = $t->log_records);
{
    $t->psql(<<'SQL');
create function api.brand_new(x int) returns int language sql immutable as $$ select x * 2 $$;
grant execute on function api.brand_new(int) to anon;
SQL
    my $took = settles(sub { rpc('GET', '/rpc/brand_new?x=21') },
        sub ($r) { $r->{status} == 200 && $r->{body} eq '42' });
    ok(defined $took, sprintf('a new function is callable on every worker within 5 s (%s s)',
        defined $took ? sprintf('%.2f', $took) : 'not'));
    my $r = rpc('POST', '/rpc/brand_new', '{"x":5}');
    ok($r && $r->{status} == 200 && $r->{body} eq '10', 'POST /rpc/brand_new {"x":5} -> 10')
        or diag($r && $r->{raw});
    ok(wait_for(sub { reloaded_workers($from) eq '0,1' }, timeout => 3),
        'both workers log "schema cache reloaded"') or diag('reloaded: ' . reloaded_workers($from));
    is_deeply([$t->worker_pids], \@pids, 'the same workers: no restart');
}

# A changed signature (parameter renamed): the old name is 404, the new one works.
{
    $t->psql(<<'SQL');
drop function api.brand_new(int);
create function api.brand_new(y int, z int default 1) returns int language sql immutable as $$ select y * z $$;
SQL
    my $took = settles(sub { rpc('GET', '/rpc/brand_new?y=6&z=7') },
        sub ($r) { $r->{status} == 200 && $r->{body} eq '42' });
    ok(defined $took, 'the new signature (y, z default 1) is callable within 5 s');
    my $r = rpc('GET', '/rpc/brand_new?x=2');
    is($r && $r->{status}, 404, 'the old parameter name: 404');
    is(code_of($r), 'PGRST202', 'the old parameter name: PGRST202');
    $r = rpc('POST', '/rpc/brand_new', '{"y":9}');
    ok($r && $r->{status} == 200 && $r->{body} eq '9', 'the default of z is known: {"y":9} -> 9')
        or diag($r && $r->{raw});
}

# CREATE OR REPLACE (same signature, now VOLATILE): still callable.
{
    $t->psql(<<'SQL');
create or replace function api.brand_new(y int, z int default 1) returns int language sql volatile as $$ select y * z $$;
SQL
    my $took = settles(sub { rpc('POST', '/rpc/brand_new', '{"y":2,"z":3}') },
        sub ($r) { $r->{status} == 200 && $r->{body} eq '6' });
    ok(defined $took, 'CREATE OR REPLACE as VOLATILE: POST still works');
}

# DROP FUNCTION: 404 after the reload.
{
    $t->psql('drop function api.brand_new(int, int)');
    my $took = settles(sub { rpc('GET', '/rpc/brand_new?y=6&z=7') },
        sub ($r) { $r->{status} == 404 && code_of($r) eq 'PGRST202' });
    ok(defined $took, sprintf('a dropped function is 404 PGRST202 on every worker within 5 s (%s s)',
        defined $took ? sprintf('%.2f', $took) : 'not'));
    my $r = rpc('POST', '/rpc/brand_new', '{"y":1}');
    is($r && $r->{status}, 404, 'POST after the drop: 404');
}

# A function in a schema that is not exposed stays invisible.
{
    $t->psql(<<'SQL');
create schema hidden;
create function hidden.secret() returns int language sql as $$ select 7 $$;
create function api.visible_again() returns int language sql as $$ select 8 $$;
SQL
    my $took = settles(sub { rpc('GET', '/rpc/visible_again') },
        sub ($r) { $r->{status} == 200 && $r->{body} eq '8' });
    ok(defined $took, 'a function created after the others is callable');
    my $r = rpc('GET', '/rpc/secret');
    is($r && $r->{status}, 404, 'a function outside [api] schemas: 404');
}

# The rest still works, and nothing was restarted.
{
    my $r = rpc('GET', '/rpc/add_them?a=1&b=2');
    ok($r && $r->{status} == 200 && $r->{body} eq '3', 'the example functions still answer');
    is_deeply([$t->worker_pids], \@pids, 'the same workers throughout');
    is($t->get('/ready')->{status}, 200, '/ready 200');
}

done_testing;
