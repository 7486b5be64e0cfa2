#!/usr/bin/perl
# contrib/backup: apiary-backup dumps the database (pg_dump -Fc), checks
# the dump (pg_restore --list, SHA-256) and rotates the old ones;
# apiary-restore restores a dump into a new database and compares its rows
# with the dump. The test makes data, backs it up, damages the database
# (a table dropped, rows deleted), restores into a new database and
# compares every table's row count and checksum with the original; then
# switches a running apiary to the restored database with the commands
# apiary-restore prints.

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP ();
use POSIX qw(strftime);
use Apiary::Test qw(:all);

my $src = $ENV{APIARY_SRCDIR} // "$FindBin::Bin/..";
my $backup = "$src/contrib/backup/apiary-backup";
my $restore = "$src/contrib/backup/apiary-restore";

my $t = Apiary::Test->new(db => 1, config => { server => { workers => 2 } });
my $db = $t->dbname;
my $new = substr($db, 0, 55) . '_r';
my $uri = sprintf('postgresql://postgres@127.0.0.1:%d/%s', $t->pg_port, $db);
my $bdir = $t->testdir . '/backups';

END { eval { $t->psql("drop database if exists \"$new\" with (force)", db => 'postgres') } if $t && $t->{owner} == $$ }

sub run_script(@args) {
    my $o = ref $args[-1] eq 'HASH' ? pop @args : {};
    return Apiary::Test::_run_prog(['bash', @args], timeout => $o->{timeout} // 120, env => $o->{env} // {});
}

# More data, of every kind a dump must carry: Unicode, NULLs, newlines and
# backslashes in text, bytea, numeric, jsonb, an empty table, a quoted name.
$t->psql(<<'SQL');
create schema shop;
create table shop.things (
    id int primary key, name text not null, price numeric(10, 2), data jsonb, pic bytea,
    at timestamptz, note text
);
insert into shop.things
select i, 'thing ' || i || ' ünï ✓ 😀 שלום', i * 1.25, jsonb_build_object('i', i, 'tags', array['a', 'b']),
       decode(md5(i::text), 'hex'), timestamptz '2024-01-01 00:00+00' + i * interval '1 minute',
       case when i % 3 = 0 then null else E'line1\nline2\ttab \\ backslash' end
from generate_series(1, 5000) as i;
create table shop.empty (a int);
create table shop."Mixed Case" (k text primary key);
insert into shop."Mixed Case" values ('a'), ('b');
SQL

# Every table: row count and an order-independent checksum of its rows.
sub snapshot($dbname) {
    my @tables = $t->psql(<<'SQL', db => $dbname);
select format('%I.%I', n.nspname, c.relname) from pg_class c join pg_namespace n on n.oid = c.relnamespace
where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg\_toast%'
order by 1
SQL
    my %s;
    for my $tb (@tables) {
        $s{$tb} = $t->psql("select count(*) || ' ' || coalesce(md5(string_agg(md5(t::text), '' order by md5(t::text))), '-') from only $tb t",
            db => $dbname);
    }
    return \%s;
}

my $orig = snapshot($db);
my $ntables = keys %$orig;
ok($ntables >= 6, "$ntables tables: " . join(' ', sort keys %$orig));
like($orig->{'shop.things'}, qr/^5000 [0-9a-f]{32}$/, 'shop.things: 5000 rows');

# ---------------------------------------------------------------------------
# Backup
# ---------------------------------------------------------------------------

my $dump;
{
    my ($code, $out, $err) = run_script($backup, '--uri', $uri, '--dir', $bdir);
    is($code, 0, 'apiary-backup: exit 0') or diag($err);
    like($out, qr{^apiary-backup: \Q$bdir\E/\Q$db\E-\d{8}T\d{6}Z\.dump: \d+ bytes, \d+ objects, $ntables tables with data, \d+ s; verified \(pg_restore --list, SHA-256\)$}m,
        'it reports the dump, its tables and the checks') or diag($out);
    my @dumps = glob("$bdir/$db-*.dump");
    is(scalar @dumps, 1, 'one dump, named by the time');
    $dump = $dumps[0];
    ok(-f "$dump.sha256", 'and its .sha256');
    is((stat $bdir)[2] & 07777, 0700, 'the directory is created with mode 0700');
    is((stat $dump)[2] & 07777, 0600, 'the dump has mode 0600');
    my ($c2, $o2, $e2) = Apiary::Test::_run_prog(['sh', '-c', "cd '$bdir' && sha256sum -c " . ($dump =~ s{.*/}{}r) . '.sha256']);
    is($c2, 0, 'sha256sum -c accepts the .sha256') or diag("$o2$e2");
    my ($c3, $toc) = Apiary::Test::_run_prog(['pg_restore', '--list', $dump]);
    is($c3, 0, 'pg_restore --list reads the dump');
    like($toc, qr/TABLE DATA shop things /, 'its table of contents lists the data of shop.things');
    my @left = grep { /partial/ } glob("$bdir/.* $bdir/*");
    is(scalar @left, 0, 'no temporary file left') or diag("@left");
}

# The database from apiary's configuration ([database] migrate_uri).
{
    $t->write_file('backup.conf', "[database]\nuri = postgresql://nobody\@127.0.0.1:1/x\nmigrate_uri = $uri\n");
    my ($code, $out, $err) = run_script($backup, '-c', $t->testdir . '/backup.conf', '--dir', $bdir, '--prefix', 'fromconf');
    is($code, 0, 'apiary-backup -c apiary.conf: exit 0') or diag($err);
    is(scalar(my @f = glob("$bdir/fromconf-*.dump")), 1, 'it dumped [database] migrate_uri');
    $t->write_file('nomig.conf', "[database]\nuri = $uri\n");
    ($code, $out, $err) = run_script($backup, '-c', $t->testdir . '/nomig.conf', '--dir', $bdir);
    is($code, 1, 'a configuration without migrate_uri: exit 1');
    like($err, qr/has no \[database\] migrate_uri/, 'the message');
}

# ---------------------------------------------------------------------------
# Damage, restore into a new database, compare
# ---------------------------------------------------------------------------

$t->psql('drop table shop.things; delete from api.tasks where id % 2 = 0');
my $damaged = snapshot($db);
ok(!exists $damaged->{'shop.things'}, 'damage: shop.things dropped');
like($damaged->{'api.tasks'}, qr/^5000 /, 'damage: half of the tasks deleted');

{
    my $t0 = time;
    my ($code, $out, $err) = run_script($restore, '--uri', $uri, $dump, $new);
    is($code, 0, 'apiary-restore into a new database: exit 0') or diag("$out$err");
    like($out, qr/SHA-256 matches/, 'it checked the SHA-256');
    like($out, qr/^shop\.things\s+5000\s+5000\s+ok$/m, 'per table: rows in the dump and restored');
    like($out, qr/^shop\."Mixed Case"\s+2\s+2\s+ok$/m, 'a quoted name');
    like($out, qr/^shop\.empty\s+0\s+0\s+ok$/m, 'an empty table');
    like($out, qr/^api\.tasks\s+10000\s+10000\s+ok$/m, 'api.tasks');
    like($out, qr/^apiary-restore: verified: $ntables tables, \d+ rows, as in the dump$/m, 'verified');
    like($out, qr/-s reload --wait/, 'it prints the switch command');
    is_deeply(snapshot($new), $orig, 'every table of the restored database: the row count and checksum of the original')
        or diag(explain(snapshot($new)));
    diag(sprintf('restore and verification: %.1f s', time - $t0));
}

# Never over an existing database, least of all the live one, without --force.
{
    my ($code, $out, $err) = run_script($restore, '--uri', $uri, $dump, $db);
    is($code, 1, 'into the live database: exit 1');
    like($err, qr/"\Q$db\E" is the live database: apiary-restore restores into a new one/, 'refused, says why');
    is_deeply(snapshot($db), $damaged, 'the live database untouched');
    ($code, $out, $err) = run_script($restore, '--uri', $uri, $dump, $new);
    is($code, 1, 'into an existing database: exit 1');
    like($err, qr/database "\Q$new\E" exists: apiary-restore restores into a new database/, 'refused');
    $t->psql('create table shop.marker (a int)', db => $new);
    ($code, $out, $err) = run_script($restore, '--uri', $uri, '--force', '--jobs', '2', $dump, $new);
    is($code, 0, '--force --jobs 2: exit 0') or diag("$out$err");
    like($out, qr/dropped database "\Q$new\E" \(--force\)/, 'it says it dropped it first');
    is_deeply(snapshot($new), $orig, 'restored again, identical');
}

# Bad dumps.
{
    my $bad = $t->testdir . '/bad.dump';
    open my $in, '<:raw', $dump or die;
    my $bytes = do { local $/; <$in> };
    close $in;
    my $flipped = $bytes;
    substr($flipped, int(length($flipped) / 2), 1) ^.= "\x01";
    $t->write_file($bad, $flipped);
    system('cp', "$dump.sha256", "$bad.sha256") == 0 or die;
    my ($code, $out, $err) = run_script($restore, '--uri', $uri, $bad, "${new}x");
    is($code, 1, 'a dump that does not match its .sha256: exit 1');
    like($err, qr/does not match .*damaged or replaced; not restoring it/, 'refused, says why');
    unlink "$bad.sha256";
    $t->write_file($bad, substr($bytes, 0, int(length($bytes) * 0.6)));
    ($code, $out, $err) = run_script($restore, '--uri', $uri, $bad, "${new}x");
    is($code, 1, 'a truncated dump without a .sha256: exit 1');
    like($err, qr/warning: no .*\.sha256/, 'a warning that there is no checksum');
    like($err, qr/pg_restore/, 'pg_restore names the failure') or diag($err);
    $t->psql("drop database if exists \"${new}x\" with (force)", db => 'postgres');
    $t->write_file($bad, "not a dump\n");
    ($code, $out, $err) = run_script($restore, '--uri', $uri, $bad, "${new}x");
    is($code, 1, 'not a dump at all: exit 1');
    like($err, qr/pg_restore --list cannot read/, 'said so');
    ($code, $out, $err) = run_script($restore, '--uri', $uri, $dump, '1bad-name');
    is($code, 2, 'a bad database name: exit 2');
}

# ---------------------------------------------------------------------------
# apiary, switched to the restored database as apiary-restore says
# ---------------------------------------------------------------------------

{
    my $ok = eval { $t->run(timeout => 10); 1 };
    ok($ok && $t->wait_ready(timeout => 15), 'apiary serves the damaged database') or diag($@);
    my $total = sub {
        my ($r) = parse_responses($t->http("GET /rpc/task_counts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
        my $j = eval { JSON::PP->new->decode($r->{body}) } // [];
        my $n = 0;
        $n += $_->{n} for @$j;
        return $n;
    };
    is($total->(), 5000, 'before: 5000 tasks');
    $t->write_config(config => { server => { workers => 2 },
        database => { uri => $t->db_uri($new), listen_uri => $t->db_listen_uri($new) } });
    my ($code, $out, $err) = $t->cli('-s', 'reload', '--wait', { timeout => 60 });
    is($code, 0, 'apiary -s reload --wait') or diag($err);
    is($total->(), 10000, 'after: 10000 tasks, from the restored database');
}

# ---------------------------------------------------------------------------
# Failures, rotation, upload
# ---------------------------------------------------------------------------

{
    my @before = sort(glob("$bdir/* $bdir/.*"));
    my ($code, $out, $err) = run_script($backup, '--uri', 'postgresql://postgres@127.0.0.1:1/nowhere', '--dir', $bdir);
    is($code, 1, 'backup of a database that cannot be reached: exit 1');
    like($err, qr/^apiary-backup: cannot connect to the database: /, 'the message');
    # authenticator may connect but read nothing: pg_dump fails halfway.
    ($code, $out, $err) = run_script($backup, '--uri', $t->db_listen_uri, '--dir', $bdir, '--prefix', 'denied');
    is($code, 1, 'pg_dump failing (permission denied): exit 1');
    like($err, qr/^apiary-backup: pg_dump of \Q$db\E failed: .*permission denied/m, 'the message') or diag($err);
    is_deeply([sort(glob("$bdir/* $bdir/.*"))], [sort(@before, "$bdir/.denied.lock")], 'no dump and no partial file left');
    ($code, $out, $err) = run_script($backup, '--uri', $uri, '--dir', $bdir, '--keep-daily', 'x');
    is($code, 2, '--keep-daily x: exit 2');
}

{
    # Old dumps of the prefix "rot": two a day for 40 days back.
    my $now = time;
    my @fake;
    for my $k (1 .. 40) {
        for my $h ('010000', '020000') {
            my $name = 'rot-' . strftime('%Y%m%d', gmtime($now - $k * 86400)) . "T${h}Z.dump";
            $t->write_file("$bdir/$name", "fake\n");
            $t->write_file("$bdir/$name.sha256", "fake\n");
            push @fake, $name;
        }
    }
    my ($code, $out, $err) = run_script($backup, '--uri', $uri, '--dir', $bdir, '--prefix', 'rot',
        '--keep-daily', 3, '--keep-weekly', 3);
    is($code, 0, 'a backup with 80 older dumps: exit 0') or diag($err);
    my ($new_dump) = grep { !/T0[12]0000Z/ } map { s{.*/}{}r } glob("$bdir/rot-*.dump");
    # The expected survivors: newest first, the newest of each of the last
    # 3 days and of each of the last 3 ISO weeks.
    my @all = sort { $b cmp $a } (@fake, $new_dump);
    my (%day, %week, %keep);
    for my $f (@all) {
        my ($y, $m, $d) = $f =~ /^rot-(\d{4})(\d\d)(\d\d)T/;
        my $w = strftime('%G-W%V', 0, 0, 12, $d, $m - 1, $y - 1900);
        if (!$day{"$y$m$d"} && keys %day < 3) { $day{"$y$m$d"} = 1; $keep{$f} = 1 }
        if (!$week{$w} && keys %week < 3) { $week{$w} = 1; $keep{$f} = 1 }
    }
    my @left = sort map { s{.*/}{}r } glob("$bdir/rot-*.dump");
    is_deeply(\@left, [sort keys %keep], sprintf('rotation: %d kept (3 daily, 3 weekly), the rest removed', scalar @left));
    ok(scalar(@left) >= 4 && scalar(@left) <= 6, 'between 4 and 6 of them');
    is(scalar(my @s = glob("$bdir/rot-*.dump.sha256")), scalar @left, 'their .sha256 go with them');
    like($out, qr/rotation: \d+ dumps of rot kept \(3 daily, 3 weekly\), \d+ removed/, 'the report');
}

{
    my $up = $t->testdir . '/uploaded';
    mkdir $up;
    my ($code, $out, $err) = run_script($backup, '--uri', $uri, '--dir', $bdir, '--prefix', 'up',
        '--upload', "cp -t '$up'");
    is($code, 0, 'an upload command: exit 0') or diag($err);
    my @got = sort map { s{.*/}{}r } glob("$up/*");
    is(scalar @got, 2, 'it got the dump and its .sha256: ' . "@got");
    ($code, $out, $err) = run_script($backup, '--uri', $uri, '--dir', $bdir, '--prefix', 'up2',
        '--upload', 'false');
    is($code, 1, 'a failing upload: exit 1');
    like($err, qr/the upload command failed; the dump is kept in \Q$bdir\E\/up2-/, 'the message');
    is(scalar(my @k = glob("$bdir/up2-*.dump")), 1, 'and the dump is kept');
}

done_testing;
