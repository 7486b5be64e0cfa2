// The PostgREST JavaScript client (@supabase/postgrest-js, as used by
// supabase-js) against a running apiary: RPC calls over POST and GET, a
// composite result, and the error for a function that does not exist.
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
