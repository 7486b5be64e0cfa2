// The PostgREST JavaScript client (@supabase/postgrest-js, as used by
// supabase-js) against a running apiary: table reads (filters, or, order,
// range, count, single, maybeSingle, CSV), RPC calls over POST and GET, a
// composite result, and the errors for a table or function that does not
// exist. The example data is generated the same at every load: task N
// belongs to user (N - 1) % 100 + 1.
//
// Usage: APIARY_URL=http://127.0.0.1:PORT node t/js/postgrest-js.mjs
// (APIARY_URL is where the API is mounted: RPC is at APIARY_URL/rpc/fn.)
// The database must hold sql/apiary.sql and sql/migrations (the example application).
// Prints TAP; exits 0 if every test passed, 1 if one failed, 2 if it could
// not run. Run by t/50-postgrest-js.t.

import { PostgrestClient } from '@supabase/postgrest-js';

const url = process.env.APIARY_URL;
if (!url) {
    console.log('Bail out! APIARY_URL is not set (e.g. http://127.0.0.1:8080)');
    process.exit(2);
}

// No retries: a 503 must show up as what apiary answered, not be retried
// away. Every call is bounded by the client's timeout.
const client = new PostgrestClient(url.replace(/\/+$/, ''), { retry: false, timeout: 10000 });

const tests = [];
function test(name, fn) {
    tests.push({ name, fn });
}

// One line per value, for diagnostics.
function show(v) {
    try {
        return JSON.stringify(v);
    } catch {
        return String(v);
    }
}

function check(cond, what, res) {
    if (!cond) {
        const e = new Error(what);
        e.res = res;
        throw e;
    }
}

function okResponse(res, status = 200) {
    check(res.error === null, `no error expected, got ${show(res.error)}`, res);
    check(res.status === status, `status ${status} expected, got ${res.status}`, res);
}

function isTaskOne(res) {
    okResponse(res);
    check(res.data !== null && typeof res.data === 'object' && !Array.isArray(res.data),
        `a JSON object expected (a composite result), got ${show(res.data)}`, res);
    check(res.data.id === 1, `id 1 expected, got ${show(res.data.id)}`, res);
    check(typeof res.data.title === 'string', `a string title expected, got ${show(res.data.title)}`, res);
}

function isMissingFunction(res) {
    check(res.data === null, `no data expected, got ${show(res.data)}`, res);
    check(res.error !== null && typeof res.error === 'object', `an error expected, got ${show(res.error)}`, res);
    check(res.error.code === 'PGRST202', `error code PGRST202 expected, got ${show(res.error.code)}`, res);
    check(res.status === 404, `status 404 expected, got ${res.status}`, res);
    check(typeof res.error.message === 'string' && res.error.message.length > 0,
        `an error message expected, got ${show(res.error.message)}`, res);
    for (const k of ['details', 'hint']) {
        check(k in res.error, `error has no "${k}" member: ${show(res.error)}`, res);
    }
}

test("rpc('add_them', {a: 1, b: 2}) gives 3", async () => {
    const res = await client.rpc('add_them', { a: 1, b: 2 });
    okResponse(res);
    check(res.data === 3, `3 expected, got ${show(res.data)}`, res);
});

test("rpc('task', {id: 1}) gives the task with id 1 as an object", async () => {
    isTaskOne(await client.rpc('task', { id: 1 }));
});

test("rpc('task', {id: 1}, {get: true}) (GET /rpc/task?id=1) gives the same", async () => {
    isTaskOne(await client.rpc('task', { id: 1 }, { get: true }));
});

test("rpc('task', {id: 2}) gives a different task", async () => {
    const res = await client.rpc('task', { id: 2 });
    okResponse(res);
    check(res.data !== null && res.data.id === 2, `id 2 expected, got ${show(res.data)}`, res);
});

test('a missing function gives error PGRST202 (404)', async () => {
    isMissingFunction(await client.rpc('no_such_function_apiary_test', { a: 1 }));
});

test('a missing function over GET gives error PGRST202 (404)', async () => {
    isMissingFunction(await client.rpc('no_such_function_apiary_test', {}, { get: true }));
});

// --- Table reads ---------------------------------------------------------

function ids(res) {
    check(Array.isArray(res.data), `an array expected, got ${show(res.data)}`, res);
    return res.data.map((r) => r.id).join(',');
}

test("from('tasks').select('id').eq('user_id', 7).order('id').limit(3)", async () => {
    const res = await client.from('tasks').select('id').eq('user_id', 7).order('id').limit(3);
    okResponse(res);
    check(ids(res) === '7,107,207', `ids 7,107,207 expected, got ${ids(res)}`, res);
});

test("order('id', {ascending: false}) with in() and gt()", async () => {
    const res = await client.from('tasks').select('id,user_id').in('id', [1, 2, 3, 50]).gt('id', 1)
        .order('id', { ascending: false });
    okResponse(res);
    check(ids(res) === '50,3,2', `50,3,2 expected, got ${ids(res)}`, res);
    check(res.data[0].user_id === 50, `user_id 50 expected, got ${show(res.data[0])}`, res);
});

test("or('id.eq.1,and(id.gt.9998,user_id.eq.100)')", async () => {
    const res = await client.from('tasks').select('id').or('id.eq.1,and(id.gt.9998,user_id.eq.100)').order('id');
    okResponse(res);
    check(ids(res) === '1,10000', `1,10000 expected, got ${ids(res)}`, res);
});

test("range(10, 19) with count: 'exact' gives 206 and the total", async () => {
    const res = await client.from('tasks').select('id', { count: 'exact' }).order('id').range(10, 19);
    okResponse(res, 206);
    check(res.count === 10000, `count 10000 expected, got ${res.count}`, res);
    check(ids(res) === '11,12,13,14,15,16,17,18,19,20', `ids 11..20 expected, got ${ids(res)}`, res);
});

test("count: 'exact', head: true gives the count and no rows", async () => {
    const res = await client.from('tasks').select('*', { count: 'exact', head: true }).eq('user_id', 3);
    check(res.error === null, `no error expected, got ${show(res.error)}`, res);
    check(res.count === 100, `count 100 expected, got ${res.count}`, res);
    check(res.data === null, `no data expected, got ${show(res.data)}`, res);
});

test("count: 'planned' gives a number", async () => {
    const res = await client.from('tasks').select('id', { count: 'planned' }).limit(1);
    check(res.error === null, `no error expected, got ${show(res.error)}`, res);
    check(Number.isInteger(res.count) && res.count > 0, `a positive count expected, got ${res.count}`, res);
});

test("like(), ilike(), not() and neq() filter the titles", async () => {
    const res = await client.from('tasks').select('id,title,status').like('title', 'Write*')
        .ilike('title', '*REPORT*').not('status', 'eq', 'done').neq('status', 'doing').limit(20);
    okResponse(res);
    check(res.data.length > 0, `some rows expected, got none`, res);
    for (const r of res.data) {
        check(r.title.startsWith('Write') && /report/i.test(r.title) && r.status === 'todo',
            `a todo "Write ... report" task expected, got ${show(r)}`, res);
    }
});

test("textSearch('title', 'invoice', {config: 'english'})", async () => {
    const res = await client.from('tasks').select('title').textSearch('title', 'invoice', { config: 'english' }).limit(5);
    okResponse(res);
    check(res.data.length === 5 && res.data.every((r) => /invoice/.test(r.title)),
        `5 invoice titles expected, got ${show(res.data)}`, res);
});

// tags is jsonb: the client turns a JS array into {a,b} (for PostgreSQL
// arrays), so a jsonb containment goes as JSON text, as with PostgREST.
test("contains('tags', '[\"work\"]') on a jsonb column", async () => {
    const res = await client.from('tasks').select('tags').contains('tags', '["work"]').limit(10);
    okResponse(res);
    check(res.data.length === 10 && res.data.every((r) => r.tags.includes('work')),
        `10 rows tagged work expected, got ${show(res.data)}`, res);
});

test("select with an alias and a cast", async () => {
    const res = await client.from('tasks').select('task:id,p:priority::text').eq('id', 1);
    okResponse(res);
    check(res.data.length === 1 && res.data[0].task === 1 && typeof res.data[0].p === 'string',
        `[{task: 1, p: "..."}] expected, got ${show(res.data)}`, res);
});

test("single() gives one object", async () => {
    const res = await client.from('users').select('id,email').eq('id', 5).single();
    okResponse(res);
    check(res.data && res.data.id === 5 && res.data.email === 'user5@example.com',
        `{id: 5, email: user5@example.com} expected, got ${show(res.data)}`, res);
});

test("single() on several rows gives PGRST116", async () => {
    const res = await client.from('users').select('id').lt('id', 3).single();
    check(res.error !== null && res.error.code === 'PGRST116' && res.status === 406,
        `PGRST116 (406) expected, got ${res.status} ${show(res.error)}`, res);
});

test("maybeSingle() on no row gives null and no error", async () => {
    const res = await client.from('users').select('id').eq('id', 999999).maybeSingle();
    check(res.error === null && res.data === null, `null and no error expected, got ${show(res)}`, res);
});

test("csv() gives a header and rows", async () => {
    const res = await client.from('users').select('id,email').in('id', [1, 2]).order('id').csv();
    okResponse(res);
    check(res.data === 'id,email\n1,user1@example.com\n2,user2@example.com',
        `CSV expected, got ${show(res.data)}`, res);
});

test('a missing table gives PGRST205 (404)', async () => {
    const res = await client.from('no_such_table_apiary_test').select('*');
    check(res.error !== null && res.error.code === 'PGRST205' && res.status === 404,
        `PGRST205 (404) expected, got ${res.status} ${show(res.error)}`, res);
});

test('a missing column gives 42703 (400)', async () => {
    const res = await client.from('tasks').select('nope');
    check(res.error !== null && res.error.code === '42703' && res.status === 400,
        `42703 (400) expected, got ${res.status} ${show(res.error)}`, res);
});

console.log(`1..${tests.length}`);
console.log(`# @supabase/postgrest-js against ${url}`);
let failed = 0;
let n = 0;
for (const t of tests) {
    n++;
    try {
        await t.fn();
        console.log(`ok ${n} - ${t.name}`);
    } catch (e) {
        failed++;
        console.log(`not ok ${n} - ${t.name}`);
        console.log(`#   ${e.message}`);
        if (e.res) {
            const { status, statusText, data, error } = e.res;
            console.log(`#   response: ${show({ status, statusText, data, error })}`);
        } else if (e.stack) {
            for (const line of e.stack.split('\n')) console.log(`#   ${line}`);
        }
    }
}
if (failed) console.log(`# failed ${failed} of ${tests.length}`);
process.exit(failed ? 1 : 0);
