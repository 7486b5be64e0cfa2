#!/usr/bin/perl
# contrib/sqlite2pg/apiary-sqlite2pg: an SQLite application database, built
# here with the sqlite3 CLI (NULLs, Unicode with emoji and right-to-left
# text, a 1 MB text, blobs, dates in the forms SQLite applications write,
# 0/1 booleans, foreign keys, a table of 100,000 rows), moved into
# PostgreSQL with pgloader and verified; the verification is then shown to
# catch a changed row, a deleted row and a dropped NOT NULL; values that do
# not fit and broken foreign keys stop the run before anything is written.
# Last, apiary serves the migrated schema and a sample is read back through
# SQL functions in it (/rpc), with the constraints proven by PostgreSQL.

use v5.36;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP ();
use Time::HiRes qw(time);
use Apiary::Test qw(:all);

my $src = $ENV{APIARY_SRCDIR} // "$FindBin::Bin/..";
my $tool = "$src/contrib/sqlite2pg/apiary-sqlite2pg";
for my $p (qw(sqlite3 pgloader python3)) {
    my $found = grep { -x "$_/$p" } split /:/, $ENV{PATH};
    plan(skip_all => "$p is not installed (contrib/dev/deps test)") if !$found && !$ENV{CI};
    die "$p is not installed (contrib/dev/deps test)" if !$found;
}

my $t = Apiary::Test->new(db => 1, config => { server => { workers => 2 }, api => { schemas => 'shop' } });
my $db = $t->dbname;
my $uri = sprintf('postgresql://postgres@127.0.0.1:%d/%s', $t->pg_port, $db);
my $dir = $t->testdir;
my $JSON = JSON::PP->new->utf8->canonical;

sub sqlite($file, $sql) {
    $t->write_file("$file.sql", ".bail on\n$sql");
    my ($code, $out, $err) = Apiary::Test::_run_prog(['sh', '-c', "sqlite3 '$file' < '$file.sql'"], timeout => 120);
    die "sqlite3 $file failed: $err$out" if $code != 0;
    return $out;
}

sub migrate(@args) {
    my $o = ref $args[-1] eq 'HASH' ? pop @args : {};
    return Apiary::Test::_run_prog(['python3', $tool, @args], timeout => $o->{timeout} // 300);
}

# ---------------------------------------------------------------------------
# The fixture
# ---------------------------------------------------------------------------

my $file = "$dir/app.db";
my $t0 = time;
sqlite($file, <<'SQL');
CREATE TABLE customers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    vip BOOLEAN NOT NULL DEFAULT 0,
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    birthday DATE,
    notes TEXT,
    avatar BLOB,
    prefs JSON,
    balance NUMERIC(10, 2) NOT NULL DEFAULT 0,
    rating REAL
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    placed_at TIMESTAMP NOT NULL,
    paid BOOLEAN,
    total DECIMAL(12, 2),
    status VARCHAR(20) NOT NULL DEFAULT 'new',
    UNIQUE (customer_id, placed_at)
);
CREATE TABLE tags (name TEXT PRIMARY KEY, color TEXT NOT NULL);
CREATE TABLE "OrderTags" (
    order_id INTEGER NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    tag TEXT NOT NULL REFERENCES tags (name) ON UPDATE CASCADE,
    PRIMARY KEY (order_id, tag)
) WITHOUT ROWID;
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    order_id INTEGER REFERENCES orders (id),
    kind TEXT NOT NULL,
    at DATETIME NOT NULL,
    payload JSON,
    seen BOOLEAN NOT NULL
);
CREATE INDEX events_order_idx ON events (order_id);
CREATE UNIQUE INDEX customers_name_email ON customers (name, email);
CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100;
CREATE TRIGGER orders_touch AFTER UPDATE ON orders BEGIN SELECT 1; END;

INSERT INTO customers (id, email, name, vip, created_at, birthday, notes, avatar, prefs, balance, rating) VALUES
 (1, 'ada@example.com', 'Ada Lovelace', 1, '2024-01-02 03:04:05', '1815-12-10', NULL,
     X'89504E470D0A1A0A', '{"theme": "dark", "langs": ["en", "fr"]}', 12.5, 4.75),
 (2, 'dov@example.com', 'דב כהן', 0, '2024-01-02T03:04:05.123Z', NULL,
     'multi' || char(10) || 'line' || char(9) || 'tab \ backslash' || char(13) || ' cr', X'', '[]', 0, NULL),
 (3, 'amal@example.com', 'أمل 😀 🎉', 0, 1700000000, '2001-02-03',
     'начало ' || hex(zeroblob(500000)) || ' 結束 😀', randomblob(100000), '"just a string"', 1234.56, -0.5),
 (4, 'zoe@example.com', 'Zoë Ångström', 1, '2024-06-01 12:00:00+02:00', '2000-02-29', '', NULL, 'null', -3.25, 1e300),
 (5, 'eve@example.com', 'Eve', 0, '2024-03-10 08:30', NULL, NULL, NULL, NULL, 0, 0.1),
 (6, 'micro@example.com', 'Micro', 't', '2024-03-10 08:30:00.123456', NULL, 'x', X'00', '{"a": 1.0, "b": 1e2}', 7, 2.5),
 (7, 'epoch@example.com', 'Epoch Real', 'false', 1700000000.25, 86400, NULL, NULL, '{"nested": {"z": 1, "a": [true, false, null]}}', 1, 3);
WITH RECURSIVE n(i) AS (SELECT 8 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
INSERT INTO customers (id, email, name, vip, created_at, birthday, notes, prefs, balance, rating)
SELECT i, 'user' || i || '@example.com', 'User ' || i, i % 2,
       datetime('2024-01-01', '+' || i || ' hours'), CASE WHEN i % 3 = 0 THEN NULL ELSE date('1990-01-01', '+' || i || ' days') END,
       CASE WHEN i % 4 = 0 THEN NULL ELSE 'note ' || i END,
       json_object('i', i), i * 0.25, i / 7.0
FROM n;
-- AUTOINCREMENT never reuses an id: the sequence must pass 200, not 199.
DELETE FROM customers WHERE id = 200;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
INSERT INTO orders (id, customer_id, placed_at, paid, total, status)
SELECT i, i % 199 + 1,
       CASE i % 3 WHEN 0 THEN datetime('2024-02-01', '+' || i || ' minutes')
                  WHEN 1 THEN strftime('%Y-%m-%dT%H:%M:%fZ', '2024-02-01', '+' || i || ' minutes')
                  ELSE 1706745600 + i * 60 END,
       CASE WHEN i % 7 = 0 THEN NULL ELSE i % 2 END,
       CASE WHEN i % 2 = 0 THEN i * 1.5 ELSE i END,
       CASE i % 3 WHEN 0 THEN 'new' WHEN 1 THEN 'paid' ELSE 'shipped' END
FROM n;

INSERT INTO tags VALUES ('red', '#f00'), ('שלום', '#0f0'), ('emoji😀', '#00f');
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
INSERT INTO "OrderTags" SELECT i, CASE i % 3 WHEN 0 THEN 'red' WHEN 1 THEN 'שלום' ELSE 'emoji😀' END FROM n;
INSERT INTO "OrderTags" VALUES (1, 'red');

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
INSERT INTO events (id, order_id, kind, at, payload, seen)
SELECT i, CASE WHEN i % 10 = 0 THEN NULL ELSE i % 500 + 1 END,
       CASE i % 4 WHEN 0 THEN 'created' WHEN 1 THEN 'paid' WHEN 2 THEN 'shipped' ELSE 'cancelled' END,
       CASE WHEN i % 2 = 0 THEN 1700000000 + i ELSE datetime('2024-01-01', '+' || i || ' seconds') END,
       CASE WHEN i % 5 = 0 THEN NULL ELSE json_object('i', i, 'ok', json('true'), 'tags', json_array('a', i % 7)) END,
       i % 2
FROM n;
SQL
is(sqlite($file, "select count(*) from events; select seq from sqlite_sequence where name = 'customers'; select max(id) from customers;\n"),
    "100000\n200\n199\n", sprintf('fixture built with sqlite3 (%.1f s): 100,000 events; customers: max id 199, sqlite_sequence 200', time - $t0));
is(sqlite($file, "select typeof(created_at) from customers where id in (1, 3, 7) order by id;\n"), "text\ninteger\nreal\n",
    'dates as text, as a Unix time, as a real Unix time');

# ---------------------------------------------------------------------------
# Migration
# ---------------------------------------------------------------------------

my $report;
{
    my $t1 = time;
    my ($code, $out, $err) = migrate($file, $uri, '--schema', 'shop');
    my $took = time - $t1;
    is($code, 0, sprintf('apiary-sqlite2pg: exit 0 (%.1f s)', $took)) or diag("$out\n$err");
    diag(sprintf('migration of the fixture (100,000-row table included): %.1f s', $took));
    $report = $out;
    like($out, qr/^apiary-sqlite2pg: zero data loss: 5 tables, \d+ rows, every row, NOT NULL, key, UNIQUE, foreign key and sequence verified/m,
        'zero data loss, shown');
    my %want = (
        customers => [199, '5/5', '2/2', '0/0', 'next 201 > 200'],
        orders => [500, '3/3', '1/1', '1/1', 'next 501 > 500'],
        tags => [3, '1/1', '0/0', '0/0', '-'],
        OrderTags => [301, '2/2', '0/0', '2/2', '-'],
        events => [100000, '3/3', '0/0', '1/1', 'next 100001 > 100000'],
    );
    for my $tb (sort keys %want) {
        my ($n, $nn, $un, $fk, $seq) = @{$want{$tb}};
        like($out, qr/^\Q$tb\E\s+$n\s+$n\s+([0-9a-f]{12}) = \1\s+\Q$nn\E\s+\Q$un\E\s+\Q$fk\E\s+ok\s+\Q$seq\E\s+ok$/m,
            "report: $tb: $n rows on both sides, equal checksums, NOT NULL $nn, UNIQUE $un, FK $fk, sequence $seq")
            or diag($out);
    }
    like($out, qr/^note: view big_orders: not carried over$/m, 'a note: the view');
    like($out, qr/^note: trigger orders_touch on orders: not carried over$/m, 'a note: the trigger');
}

# What PostgreSQL holds, asked directly.
{
    is_deeply([$t->psql(<<'SQL')],
select table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable
from information_schema.columns where table_schema = 'shop' and table_name = 'customers' order by ordinal_position
SQL
        ['customers.id bigint NO', 'customers.email text NO', 'customers.name text NO', 'customers.vip boolean NO',
         'customers.created_at timestamp with time zone NO', 'customers.birthday timestamp with time zone YES',
         'customers.notes text YES', 'customers.avatar bytea YES', 'customers.prefs jsonb YES',
         'customers.balance numeric NO', 'customers.rating double precision YES'],
        'customers: the types a web application needs, NOT NULL where SQLite had it');
    is($t->psql("select attidentity from pg_attribute where attrelid = 'shop.customers'::regclass and attname = 'id'"),
        'd', 'customers.id: an identity column (generated by default)');
    is($t->psql("select column_default from information_schema.columns where table_schema = 'shop' and table_name = 'customers' and column_name in ('vip', 'created_at', 'balance') order by column_name"),
        "0\nnow()\nfalse", 'defaults: 0 -> false, CURRENT_TIMESTAMP -> now(), 0');
    is($t->psql(<<'SQL'),
select name, vip, created_at, birthday, prefs::text, balance, rating, length(notes), length(avatar)
from shop.customers where id between 1 and 7 order by id
SQL
        join("\n",
            'Ada Lovelace|t|2024-01-02 03:04:05+00|1815-12-10 00:00:00+00|{"langs": ["en", "fr"], "theme": "dark"}|12.5|4.75||8',
            'דב כהן|f|2024-01-02 03:04:05.123+00||[]|0||30|0',
            'أمل 😀 🎉|f|2023-11-14 22:13:20+00|2001-02-03 00:00:00+00|"just a string"|1234.56|-0.5|1000012|100000',
            'Zoë Ångström|t|2024-06-01 10:00:00+00|2000-02-29 00:00:00+00|null|-3.25|1e+300|0|',
            'Eve|f|2024-03-10 08:30:00+00|||0|0.1||',
            'Micro|t|2024-03-10 08:30:00.123456+00||{"a": 1.0, "b": 100}|7|2.5|1|1',
            'Epoch Real|f|2023-11-14 22:13:20.25+00|1970-01-02 00:00:00+00|{"nested": {"a": [true, false, null], "z": 1}}|1|3||'),
        'the special rows, value by value');
    is($t->psql(q{select notes = 'multi' || chr(10) || 'line' || chr(9) || 'tab \\ backslash' || chr(13) || ' cr' from shop.customers where id = 2}),
        't', 'newline, tab, backslash and carriage return intact');
    is($t->psql("select count(*), count(order_id), count(payload), sum(seen::int), min(at), max(at) from shop.events"),
        '100000|90000|80000|50000|2023-11-14 22:13:22+00|2024-01-02 03:46:39+00', 'events: counts, NULLs, booleans, the range of dates');
}

# PostgreSQL enforces what SQLite declared.
{
    is($t->psql("insert into shop.customers (email, name) values ('new\@example.com', 'New') returning id, vip, balance"),
        '201|f|0', 'a new customer: id 201 (past sqlite_sequence), the defaults');
    $t->psql('delete from shop.customers where id = 201');
    my @cases = (
        ["insert into shop.customers (email, name) values (null, 'x')", '23502', 'NOT NULL customers.email'],
        ["insert into shop.events (kind, at, seen) values (null, now(), true)", '23502', 'NOT NULL events.kind'],
        ["insert into shop.customers (email, name) values ('ada\@example.com', 'x')", '23505', 'UNIQUE customers.email'],
        ["insert into shop.orders (customer_id, placed_at) values (99999, now())", '23503', 'FOREIGN KEY orders.customer_id'],
        [q{insert into shop."OrderTags" values (1, 'no such tag')}, '23503', 'FOREIGN KEY OrderTags.tag'],
        ["insert into shop.orders (id, customer_id, placed_at) values (1, 1, now())", '23505', 'PRIMARY KEY orders.id'],
    );
    for my $c (@cases) {
        my ($code, $out, $err) = $t->psql_ex("\\set VERBOSITY verbose\n$c->[0]");
        like($err, qr/ERROR:\s+$c->[1]:/, "$c->[2]: refused ($c->[1])");
    }
    is($t->psql("update shop.tags set name = 'rouge' where name = 'red'; select count(*) from shop.\"OrderTags\" where tag = 'rouge'"),
        101, 'ON UPDATE CASCADE on OrderTags.tag');
    $t->psql("update shop.tags set name = 'red' where name = 'rouge'");
}

# ---------------------------------------------------------------------------
# The verification catches what changes
# ---------------------------------------------------------------------------

{
    $t->psql(<<'SQL');
update shop.events set kind = 'tampered' where id = 501;
delete from shop."OrderTags" where order_id = 1 and tag = 'red';
alter table shop.customers alter column name drop not null;
SQL
    my ($code, $out, $err) = migrate($file, $uri, '--schema', 'shop', '--verify-only');
    is($code, 1, '--verify-only after tampering: exit 1');
    like($err, qr/MISMATCH: 3 of 5 tables differ/, 'three tables differ');
    like($out, qr/^events\s+100000\s+100000\s+([0-9a-f]{12}) ! (?!\1)[0-9a-f]{12}.*MISMATCH$/m, 'events: same count, checksums differ');
    like($out, qr/^\s+1 rows of SQLite not found in PostgreSQL, 1 rows of PostgreSQL not in SQLite$/m, 'one row changed');
    like($out, qr/^\s+only in PostgreSQL: id=501, order_id=2, kind=tampered,/m, 'the changed row is shown');
    like($out, qr/^OrderTags\s+301\s+300\s.*MISMATCH$/m, 'OrderTags: a row missing');
    like($out, qr/^customers\s.*\s4\/5\s.*MISMATCH\n\s+NOT NULL missing on name$/m, 'customers: the dropped NOT NULL');
}

# ---------------------------------------------------------------------------
# What stops a run before anything is written
# ---------------------------------------------------------------------------

{
    my ($code, $out, $err) = migrate($file, $uri, '--schema', 'shop');
    is($code, 1, 'into a schema that has the tables: exit 1');
    like($err, qr/schema shop already has tables of these names: /, 'says so');

    my $bad = "$dir/bad.db";
    sqlite($bad, <<'SQL');
CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, d DATETIME, j JSON, b BOOLEAN);
INSERT INTO t VALUES (1, 'abc', 'yesterday', '{bad', 2);
INSERT INTO t VALUES (2, 1.5, '2024-13-45', '[1, 2]', 'maybe');
SQL
    ($code, $out, $err) = migrate($bad, $uri, '--schema', 'badone');
    is($code, 1, 'values that do not fit: exit 1');
    like($err, qr/^  t\.n \(INTEGER -> bigint\), rowid 1: 'abc' is not an integer$/m, 'text in an INTEGER column, with its rowid');
    like($err, qr/^  t\.d \(DATETIME -> timestamptz\), rowid 1: 'yesterday' is not a date in a form SQLite reads$/m, 'an unreadable date');
    like($err, qr/^  t\.j \(JSON -> jsonb\), rowid 1: not JSON/m, 'invalid JSON');
    like($err, qr/^  t\.b \(BOOLEAN -> boolean\), rowid 1: 2 is not a boolean/m, 'a boolean that is 2');
    like($err, qr/^  t\.n \(INTEGER -> bigint\), rowid 2: 1\.5 is not an integer$/m, 'a fraction in an INTEGER column');
    like($err, qr/^  t\.d .*rowid 2: '2024-13-45' is not a valid date$/m, 'month 13');
    is($t->psql("select to_regnamespace('badone') is null"), 't', 'nothing written: not even the schema');

    my $fk = "$dir/fk.db";
    sqlite($fk, <<'SQL');
CREATE TABLE p (id INTEGER PRIMARY KEY);
CREATE TABLE c (id INTEGER PRIMARY KEY, p_id INTEGER REFERENCES p (id));
INSERT INTO p VALUES (1);
INSERT INTO c VALUES (1, 1), (2, 42);
SQL
    ($code, $out, $err) = migrate($fk, $uri, '--schema', 'fkone');
    is($code, 1, 'rows that break a foreign key in SQLite: exit 1');
    like($err, qr/break its own foreign keys.*\n  c rowid 2 -> p/, 'the row is named');

    ($code, $out, $err) = migrate($file, "host=127.0.0.1 dbname=$db");
    is($code, 2, 'a key=value connection string: exit 2');
    like($err, qr/TARGET_URI must be a postgresql:\/\/ URI/, 'says why');
    ($code, $out, $err) = migrate($file, $uri, '--schema', 'Bad Name');
    is($code, 2, 'a schema name that needs quoting: exit 2');
    ($code, $out, $err) = migrate("$dir/none.db", $uri);
    is($code, 1, 'no such file: exit 1');
    $t->write_file("$dir/not.db", "just text, not a database\n" x 100);
    ($code, $out, $err) = migrate("$dir/not.db", $uri, '--schema', 'notone');
    is($code, 1, 'not an SQLite file: exit 1');
    like($err, qr/not an SQLite database/, 'says so');
}

# ---------------------------------------------------------------------------
# apiary serves the migrated schema
# ---------------------------------------------------------------------------

$t->psql(<<'SQL');
update shop.events set kind = 'paid' where id = 501;
insert into shop."OrderTags" values (1, 'red');
alter table shop.customers alter column name set not null;
grant usage on schema shop to anon;
grant select on all tables in schema shop to anon;
-- Read through RPC: a customer card, as an application would ask for it.
create function shop.customer_card(id bigint) returns json language sql stable as $$
    select json_build_object('id', c.id, 'name', c.name, 'vip', c.vip, 'created_at', c.created_at,
                             'birthday', c.birthday, 'avatar', encode(c.avatar, 'hex'), 'prefs', c.prefs,
                             'balance', c.balance, 'rating', c.rating, 'notes_length', length(c.notes),
                             'orders', (select count(*) from shop.orders o where o.customer_id = c.id))
    from shop.customers c where c.id = customer_card.id
$$;
create function shop.event_kinds() returns table (kind text, n bigint) language sql stable as $$
    select e.kind, count(*) from shop.events e group by e.kind order by e.kind
$$;
create function shop.order_tags(order_id bigint) returns setof text language sql stable as $$
    select t.tag from shop."OrderTags" t where t.order_id = order_tags.order_id order by t.tag
$$;
SQL
{
    my $ok = eval { $t->run(timeout => 10); 1 };
    ok($ok && $t->wait_ready(timeout => 15), 'apiary serves the schema shop') or diag($@);
    my $get = sub ($path) {
        my ($r) = parse_responses($t->http("GET $path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout => 10));
        return $r;
    };
    my $r = $get->('/rpc/customer_card?id=3');
    is($r && $r->{status}, 200, 'GET /rpc/customer_card?id=3: 200') or diag($r && $r->{raw});
    my $j = eval { $JSON->decode($r->{body}) } // {};
    is($j->{name}, "\x{623}\x{645}\x{644} \x{1F600} \x{1F389}", 'Arabic and emoji, through HTTP');
    is($j->{created_at}, '2023-11-14T22:13:20+00:00', 'a Unix time, now a timestamptz');
    is($j->{birthday}, '2001-02-03T00:00:00+00:00', 'a DATE');
    is($j->{notes_length}, 1000012, 'the 1 MB text');
    is(length($j->{avatar} // ''), 200000, 'the 100 KB blob');
    is($j->{orders}, 3, 'its orders');
    $j = eval { $JSON->decode($get->('/rpc/customer_card?id=1')->{body}) } // {};
    is_deeply([@$j{qw(vip avatar balance rating)}, $j->{prefs}], [JSON::PP::true, '89504e470d0a1a0a', 12.5, 4.75,
        { theme => 'dark', langs => ['en', 'fr'] }], 'customer 1: boolean, blob, numeric, real, JSON');
    $j = eval { $JSON->decode($get->('/rpc/customer_card?id=2')->{body}) } // {};
    is($j->{name}, "\x{5d3}\x{5d1} \x{5db}\x{5d4}\x{5df}", 'Hebrew (right to left)');
    is($j->{created_at}, '2024-01-02T03:04:05.123+00:00', 'milliseconds and Z');
    $r = $get->('/rpc/event_kinds');
    my $kinds = eval { $JSON->decode($r->{body}) } // [];
    my $sum = 0;
    $sum += $_->{n} for @$kinds;
    is($sum, 100000, 'GET /rpc/event_kinds: the 100,000 events') or diag($r->{raw});
    $r = $get->('/rpc/order_tags?order_id=1');
    is_deeply(eval { $JSON->decode($r->{body}) }, ['red', "\x{5e9}\x{5dc}\x{5d5}\x{5dd}"],
        'GET /rpc/order_tags?order_id=1: from the mixed-case table "OrderTags"') or diag($r && $r->{raw});
}

done_testing;
