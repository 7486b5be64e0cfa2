#!/usr/bin/perl
# The database side the API stands on, without the daemon: sql/apiary.sql
# (roles, schema, the schema-reload event triggers; idempotent), the example
# application sql/migrations/0001_example_tasks.sql, applied by apiary
# migrate (data, functions, privileges, the errors it is there to provoke), pgBouncer's transaction pooling, and the
# harness's database helpers, including stopping and starting the servers
# of a private cluster.

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Apiary::Test qw(:all);

my $src = $ENV{APIARY_SRCDIR} // "$FindBin::Bin/..";
my $apiary_sql = "$src/sql/apiary.sql";
my $tasks_sql = "$src/sql/migrations/0001_example_tasks.sql";

my $t = Apiary::Test->new(db => 1);
my $db = $t->dbname;

like($db, qr/^t_40_sql_\d+$/, "database name from the test file and pid: $db");
is($t->psql("select count(*) from pg_database where datname = '$db'"), 1, 'the database exists');

# The configuration a database test gets.
{
    my $conf = $t->read_file('apiary.conf');
    my ($bp, $pp) = ($t->pgbouncer_port, $t->pg_port);
    like($conf, qr{^\[database\]\nlisten_uri = postgresql://authenticator\@127\.0\.0\.1:$pp/$db\nuri = postgresql://authenticator\@127\.0\.0\.1:$bp/$db$}m,
        '[database] uri through pgBouncer, listen_uri straight to PostgreSQL');
    like($conf, qr{^\[api\]\nanon_role = anon\nschemas = api$}m, '[api] schemas and anon_role');
    $t->write_config(config => { database => { listen_uri => undef }, api => { schemas => 'api, other' } });
    $conf = $t->read_file('apiary.conf');
    unlike($conf, qr/listen_uri/, 'config => { database => { listen_uri => undef } } leaves it out');
    like($conf, qr/^schemas = api, other$/m, 'a test can override the defaults');
    $t->write_config(raw => "[database]\nuri = %%DB_URI%%\n# %%DBNAME%% %%PG_PORT%% %%PGBOUNCER_PORT%%\n");
    is($t->read_file('apiary.conf'),
        sprintf("[database]\nuri = %s\n# %s %d %d\n", $t->db_uri, $db, $pp, $bp), 'placeholders in raw text');
    $t->write_config();
}

# ---------------------------------------------------------------------------
# sql/apiary.sql
# ---------------------------------------------------------------------------

{
    my ($code, $out, $err) = $t->psql_ex("\\i $apiary_sql\n\\i $apiary_sql\n");
    is($code, 0, 'sql/apiary.sql loads twice more into a database that has it') or diag($err);
    unlike($err, qr/ERROR|NOTICE/, 'quietly') or diag($err);
}

is_deeply([$t->psql(<<'SQL')],
select rolname, rolcanlogin, rolinherit, rolsuper from pg_roles
where rolname in ('authenticator', 'anon') order by 1
SQL
    ['anon|f|t|f', 'authenticator|t|f|f'], 'roles: authenticator LOGIN NOINHERIT, anon NOLOGIN');
is($t->psql("select pg_has_role('authenticator', 'anon', 'member')"), 't', 'anon is granted to authenticator');
is($t->psql("select has_schema_privilege('anon', 'api', 'usage'), has_schema_privilege('anon', 'apiary', 'usage')"),
    't|f', 'anon may use the schema api, not apiary');
is_deeply([$t->psql("select evtname, evtevent, evtenabled from pg_event_trigger order by 1")],
    ['apiary_ddl_command_end|ddl_command_end|O', 'apiary_sql_drop|sql_drop|O'], 'the two event triggers');

# Notifications: one psql session LISTENs while DDL runs in it and in
# another session (\! runs a second psql), and a query after each step
# delivers what arrived.
{
    my $other = "psql -X -q -v ON_ERROR_STOP=1";
    my ($code, $out, $err) = $t->psql_ex(<<"SQL");
listen apiary;
select 'step 1: create table';
create table api.notify_test (a int);
select 'step 2: temporary objects';
create temp table tt (a serial primary key);
drop table tt;
select 'step 3: rolled back';
begin; create table api.never (a int); rollback;
select 'step 4: another session';
\\! $other -c 'alter table api.notify_test add column b int'
select pg_sleep(0.2);
select 'step 5: drop';
drop table api.notify_test;
select 'step 6: grant';
grant select on api.tasks to anon;
select 'step 7: drop if exists, nothing dropped';
drop table if exists api.nothing_here;
select 'end';
SQL
    is($code, 0, 'DDL with LISTEN apiary') or diag($err);
    my %got;
    my $step = '';
    for my $line (split /\n/, $out) {
        if ($line =~ /^step (\d)/) { $step = $1; next }
        $got{$step}++ if $line =~ /^Asynchronous notification "apiary" with payload "reload schema" received/;
    }
    is($got{1}, 1, 'CREATE TABLE in api: one notification');
    is($got{2}, undef, 'temporary objects: none');
    is($got{3}, undef, 'a rolled-back transaction: none');
    is($got{4}, 1, 'ALTER TABLE in another session: one notification');
    is($got{5}, 1, 'DROP TABLE: one notification (ddl_command_end and sql_drop: one per transaction)');
    is($got{6}, 1, 'GRANT: one notification');
    is($got{7}, undef, 'DROP IF EXISTS that drops nothing: none');
}

# ---------------------------------------------------------------------------
# The example application
# ---------------------------------------------------------------------------

is_deeply([$t->psql(<<'SQL')],
select count(*), min(id), max(id) from api.users;
select count(*), min(id), max(id), count(distinct user_id) from api.tasks;
select * from api.task_counts();
select count(*) from api.tag_list();
SQL
    ['100|1|100', '10000|1|10000|100', 'doing|2000', 'done|5000', 'todo|3000', '7'],
    'example data: 100 users, 10,000 tasks');
is($t->psql("select title from api.task(42)"), 'Call about slides #42', 'task 42');

# The example came in as a migration, recorded with the SHA-256 of its file.
{
    require Digest::SHA;
    my $sum = Digest::SHA->new(256)->addfile($tasks_sql)->hexdigest;
    is($t->psql("select name, checksum, duration_ms >= 0 from apiary.schema_migrations where version = 1"),
        "example_tasks|$sum|t", 'apiary.schema_migrations records 0001_example_tasks.sql and its checksum');
}

# As apiary runs requests: authenticator through pgBouncer, SET LOCAL ROLE.
sub as_role($role, $sql, %o) {
    return $t->psql_ex("\\set VERBOSITY verbose\nbegin;\nset local role $role;\n$sql;\ncommit;\n",
        user => 'authenticator', via => 'pgbouncer', %o);
}

sub role_ok($role, $sql, $want, $name) {
    my ($code, $out, $err) = as_role($role, $sql);
    is($code == 0 ? $out : "exit $code: $err", "$want\n", $name);
}

sub sqlstate_is($role, $sql, $state, $name) {
    my ($code, $out, $err) = as_role($role, $sql);
    my ($got) = $err =~ /ERROR:\s+([0-9A-Z]{5}):/;
    is($got, $state, $name) or diag($err);
}

role_ok('anon', 'select current_user, api.whoami()', 'anon|anon', 'SET LOCAL ROLE anon through pgBouncer');
role_ok('anon', 'select api.add_them(1, 2)', '3', 'add_them (scalar)');
role_ok('anon', "select row_to_json(t) ->> 'title' from api.task(1) t", 'Write the report #1', 'task (composite)');
role_ok('anon', "select count(*) from api.tasks_by_status('doing')", '2000', 'tasks_by_status (setof)');
role_ok('anon', 'select string_agg(t, \',\') from api.tag_list() t',
    'errand,finance,health,home,someday,urgent,work', 'tag_list (setof text)');
role_ok('anon', "select api.echo_json('{\"a\": [1, 2]}')", '{"a": [1, 2]}', 'echo_json');
role_ok('anon', 'select api.slow(0.01)', '1', 'slow');
role_ok('anon', "select t.user_id, t.title, t.status, t.priority, t.tags from api.create_task(7, 'new') t",
    '7|new|todo|3|[]', 'create_task with the default priority');
role_ok('anon', "select api.mark_done(3); select status from api.tasks where id = 3", "\ndone",
    'mark_done (void)');
role_ok('anon', "select (api.dup_email('someone\@example.com')).name", 'someone', 'dup_email with a new email');
role_ok('webuser', 'select api.whoami()', 'webuser', 'webuser');

sqlstate_is('anon', "select api.dup_email('USER1\@example.com')", '23505', 'dup_email: unique violation (citext)');
sqlstate_is('anon', "select api.fail_raise('boom')", 'P0001', 'fail_raise: P0001');
sqlstate_is('anon', 'select api.purge_done()', '42501', 'purge_done: not for anon');
sqlstate_is('anon', 'delete from api.tasks where id = 1', '42501', 'anon may not delete');
sqlstate_is('anon', "insert into api.users (email, name) values ('x\@y', 'x')", '42501', 'nor insert users');
sqlstate_is('anon', "select api.create_task(1, 'p', 9)", '23514', 'priority out of range: check violation');
sqlstate_is('anon', "select api.create_task(100000, 'p')", '23503', 'unknown user: foreign key violation');
sqlstate_is('anon', "set local statement_timeout = '50ms'; select api.slow(2)", '57014',
    'slow past statement_timeout: 57014');
{
    my ($code, $out, $err) = as_role('anon', "select api.fail_raise('boom')");
    like($err, qr/DETAIL:\s+raised by api\.fail_raise\nHINT:\s+the message is the argument/,
        'fail_raise has a detail and a hint');
}
sqlstate_is('authenticator', 'select count(*) from api.tasks', '42501',
    'authenticator itself has no rights (NOINHERIT)');

# pgBouncer pools by transaction, and its admin console answers.
{
    my @cfg = $t->psql('show config', db => 'pgbouncer', via => 'pgbouncer');
    my ($mode) = map { (split /\|/)[1] } grep { /^pool_mode\|/ } @cfg;
    is($mode, 'transaction', 'pgBouncer: pool_mode = transaction');
}

# ---------------------------------------------------------------------------
# A private cluster: the servers stop and start under the test's control
# ---------------------------------------------------------------------------

{
    my $p = Apiary::Test->new(db => 'private', name => '40-sql private');
    like($p->pg_dir, qr{^\Q${\ $p->testdir}\E/pg$}, 'private cluster in the test directory');
    isnt($p->pg_port, $t->pg_port, 'on ports of its own');
    my $q = 'select count(*) from api.tasks';
    is($p->psql($q), 10000, 'private cluster: database loaded');

    # With PostgreSQL down, pgBouncer accepts the client and holds its
    # query (up to query_wait_timeout, 120 s): "down" is a query that does
    # not answer within 2 s.
    my $through = sub { ($p->psql_ex('select 1', via => 'pgbouncer', timeout => 2))[0] };
    is($through->(), 0, 'reachable through pgBouncer');
    $p->pg_stop;
    isnt(($p->psql_ex('select 1', timeout => 5))[0], 0, 'pg_stop: PostgreSQL is down');
    isnt($through->(), 0, 'pg_stop: nothing through pgBouncer either');
    $p->pg_start;
    ok(wait_for(sub { $through->() == 0 }, timeout => 5), 'pg_start: back, through pgBouncer too');

    $p->pg_stop(mode => 'kill');
    isnt(($p->psql_ex('select 1', timeout => 5))[0], 0, 'pg_stop(mode => kill): down');
    $p->pg_start;
    is($p->psql($q), 10000, 'after crash recovery: the data is there');

    $p->pgbouncer_stop;
    isnt($through->(), 0, 'pgbouncer_stop: pgBouncer is down');
    is(($p->psql_ex('select 1'))[0], 0, '... PostgreSQL is not');
    $p->pgbouncer_start;
    is($through->(), 0, 'pgbouncer_start');
    $p->pgbouncer_restart;
    is($through->(), 0, 'pgbouncer_restart');
    $p->pg_restart;
    ok(wait_for(sub { $through->() == 0 }, timeout => 5), 'pg_restart');
}

done_testing;
