'use strict';
// The peer for contrib/bench/bench-api: what a Node developer would write
// instead of apiary. Express 5 + node-postgres, pg.Pools through pgBouncer,
// run by PM2 in cluster mode (see ecosystem.config.js). Bodies are
// PostgreSQL's JSON text, sent without parsing and re-serialising it: the
// plain, fast way to write it by hand.
//
//   GET /rpc/task?id=N   calls api.task(id), as the database's owner, the
//                        least it can do (no role switch, no settings)
//   GET /tasks?status=eq.S&order=id.desc|id.asc&limit=N
//   GET /tasks?id=eq.N   what apiary does for these reads: the JWT
//                        verified (HS256, node's crypto), then in one
//                        transaction the settings apiary sends (role,
//                        request.jwt.claims, ...) and the statement apiary
//                        builds (json_agg), as "authenticator"; a
//                        Content-Range header as apiary sends
//   GET /live            {"status":"ok"} (for bench-reload)
//
// Environment: PORT (required), DATABASE_URL (required: the owner's
// connection, for /rpc/task), API_DATABASE_URL (the authenticator's, for
// /tasks; default DATABASE_URL), POOL_SIZE (connections per pool and
// process, default 8), HOST (default 127.0.0.1), ANON_ROLE (the role
// without a token, default anon), JWT_SECRET_FILE (the HS256 secret; unset:
// a request with a token gets 500 PGRST300, as apiary without
// jwt_secret_file), TX_MODE (how /tasks runs its transaction: "single",
// the default, sends the settings and the statement in one simple-protocol
// Query message, one round trip and one implicit transaction as apiary's
// pipeline, values escaped with pg.escapeLiteral; "begin" checks a client
// out and runs BEGIN, the settings, the statement and COMMIT with bind
// parameters, four round trips, as most hand-written code does).

const crypto = require('crypto');
const fs = require('fs');
const express = require('express');
const { Pool, types, escapeLiteral } = require('pg');

const port = Number(process.env.PORT);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    console.error('server.js: PORT must be a TCP port number');
    process.exit(2);
}
if (!process.env.DATABASE_URL) {
    console.error('server.js: DATABASE_URL is not set');
    process.exit(2);
}
const poolSize = Number(process.env.POOL_SIZE || 8);
const anonRole = process.env.ANON_ROLE || 'anon';
const txMode = process.env.TX_MODE || 'single';
if (txMode !== 'single' && txMode !== 'begin') {
    console.error('server.js: TX_MODE must be single or begin');
    process.exit(2);
}
// The secret as apiary reads [api] jwt_secret_file: the bytes of the file,
// less one trailing newline.
let jwtSecret = null;
if (process.env.JWT_SECRET_FILE) {
    try {
        let b = fs.readFileSync(process.env.JWT_SECRET_FILE);
        if (b.length && b[b.length - 1] === 0x0a) b = b.subarray(0, b.length - 1);
        if (b.length && b[b.length - 1] === 0x0d) b = b.subarray(0, b.length - 1);
        if (b.length < 32) throw new Error(`the secret is ${b.length} bytes long; at least 32 are needed`);
        jwtSecret = b;
    } catch (err) {
        console.error(`server.js: JWT_SECRET_FILE: ${err.message}`);
        process.exit(2);
    }
}

// Hand json values over as the text PostgreSQL produced.
types.setTypeParser(types.builtins.JSON, (text) => text);

function newPool(uri) {
    const p = new Pool({
        connectionString: uri,
        max: poolSize,
        idleTimeoutMillis: 0,
        connectionTimeoutMillis: 5000,
    });
    // An idle client losing its connection must not kill the process.
    p.on('error', (err) => console.error('pg pool error:', err.message));
    return p;
}
// Pools connect on their first query: a run uses one of them per route.
const pool = newPool(process.env.DATABASE_URL);
const apiPool = process.env.API_DATABASE_URL ? newPool(process.env.API_DATABASE_URL) : pool;

const TASK_SQL = 'select to_json(api.task($1)) as body';

function jsonError(res, status, code, message, details = null) {
    res.status(status).json({ code, message, details, hint: null });
}

// --- JWT (HS256), as apiary checks it: three base64url parts, alg HS256,
// the HMAC, exp and nbf (30 s leeway); the role from the "role" claim, the
// anonymous role without one. The claims go to the database as signed.

class AuthError extends Error {
    constructor(status, code, message, details = null) {
        super(message);
        this.status = status;
        this.code = code;
        this.details = details;
    }
}

const B64URL = /^[A-Za-z0-9_-]*$/;
const LEEWAY_S = 30;

function decodePart(part) {
    if (!B64URL.test(part)) throw new AuthError(401, 'PGRST301', "JWT couldn't be decoded");
    const text = Buffer.from(part, 'base64url').toString('utf8');
    let v;
    try {
        v = JSON.parse(text);
    } catch {
        throw new AuthError(401, 'PGRST301', "JWT couldn't be decoded");
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v))
        throw new AuthError(401, 'PGRST301', "JWT couldn't be decoded");
    return { v, text };
}

// { role, claims }: claims is JSON text for request.jwt.claims.
function authenticate(req) {
    const h = req.headers.authorization;
    const m = h === undefined ? null : /^\s*bearer(?:[ \t]+(.*?))?[ \t]*$/i.exec(h);
    if (m === null) return { role: anonRole, claims: JSON.stringify({ role: anonRole }) };
    if (jwtSecret === null) throw new AuthError(500, 'PGRST300', 'Server lacks JWT secret');
    const parts = (m[1] || '').split('.');
    if (parts.length !== 3)
        throw new AuthError(401, 'PGRST301', `Expected 3 parts in JWT; got ${parts.length}`);
    const header = decodePart(parts[0]).v;
    if (header.alg !== 'HS256')
        throw new AuthError(401, 'PGRST301', 'Wrong or unsupported encoding algorithm');
    const mac = crypto.createHmac('sha256', jwtSecret).update(`${parts[0]}.${parts[1]}`).digest();
    const sig = B64URL.test(parts[2]) ? Buffer.from(parts[2], 'base64url') : Buffer.alloc(0);
    if (sig.length !== mac.length || !crypto.timingSafeEqual(sig, mac))
        throw new AuthError(401, 'PGRST301', 'JWT cryptographic operation failed');
    const { v: claims, text } = decodePart(parts[1]);
    const now = Date.now() / 1000;
    if (claims.exp !== undefined && (typeof claims.exp !== 'number' || now > claims.exp + LEEWAY_S))
        throw new AuthError(401, 'PGRST303', 'JWT expired');
    if (claims.nbf !== undefined && (typeof claims.nbf !== 'number' || now < claims.nbf - LEEWAY_S))
        throw new AuthError(401, 'PGRST303', 'JWT not yet valid');
    if (typeof claims.role === 'string') return { role: claims.role, claims: text };
    return { role: anonRole, claims: JSON.stringify({ ...claims, role: anonRole }) };
}

// --- /tasks: the settings apiary sends, then apiary's statement for the
// two shapes of request the benchmark makes.

const SETTINGS_SQL =
    "select set_config('role', $1, true), set_config('request.jwt.claims', $2, true), " +
    "set_config('request.method', $3, true), set_config('request.path', $4, true), " +
    "set_config('request.headers', $5, true), set_config('request.cookies', $6, true), " +
    "set_config('statement_timeout', $7, true), set_config('transaction_read_only', $8, true)";

function settingsValues(req, auth) {
    const headers = { ...req.headers };
    delete headers.cookie;
    return [auth.role, auth.claims, req.method, req.path, JSON.stringify(headers), '{}', '30000', 'on'];
}

// $n -> the values as literals, for the one-message (simple protocol) form.
function inline(sql, values) {
    return sql.replace(/\$([0-9]+)/g, (_, n) => escapeLiteral(String(values[Number(n) - 1])));
}

async function runRead(req, auth, sql, values) {
    const settings = settingsValues(req, auth);
    if (txMode === 'single') {
        const r = await apiPool.query(`${inline(SETTINGS_SQL, settings)}; ${inline(sql, values)}`);
        return r[1].rows[0];
    }
    const client = await apiPool.connect();
    try {
        await client.query('begin');
        await client.query({ text: SETTINGS_SQL, values: settings });
        const r = await client.query({ text: sql, values });
        await client.query('commit');
        client.release();
        return r.rows[0];
    } catch (err) {
        // A broken transaction: drop the connection rather than reuse it.
        client.release(err);
        throw err;
    }
}

const STATUS = { '42501': 403, '22P02': 400, '57014': 504, '23505': 409, '42703': 400 };

function pgError(res, err) {
    // No SQLSTATE (ECONNREFUSED, a pool timeout ...): the database is not
    // reachable, a 503 as apiary answers.
    if (typeof err.code !== 'string' || !/^[0-9A-Z]{5}$/.test(err.code)) {
        jsonError(res, 503, 'PGRST001', 'Database client error. Retrying the connection.', err.message);
        return;
    }
    res.status(STATUS[err.code] || 500).json({
        code: err.code || 'PGRST000',
        message: err.message,
        details: err.detail ?? null,
        hint: err.hint ?? null,
    });
}

function eqValue(v) {
    return typeof v === 'string' && v.startsWith('eq.') ? v.slice(3) : null;
}

const app = express();
// apiary sends neither an ETag nor X-Powered-By; computing the ETag would
// hash every body.
app.set('etag', false);
app.disable('x-powered-by');

app.get('/live', (req, res) => {
    res.type('application/json').send('{"status":"ok"}');
});

app.get('/rpc/task', async (req, res) => {
    const id = req.query.id;
    if (typeof id !== 'string' || !/^-?[0-9]{1,18}$/.test(id)) {
        jsonError(res, 400, '22P02', 'invalid input syntax for type bigint');
        return;
    }
    try {
        const r = await pool.query({ text: TASK_SQL, values: [id] });
        res.type('application/json').send(r.rows[0].body ?? 'null');
    } catch (err) {
        jsonError(res, err.code === '57014' ? 504 : 500, err.code || 'PGRST000', err.message);
    }
});

app.get('/tasks', async (req, res) => {
    let auth;
    try {
        auth = authenticate(req);
    } catch (err) {
        if (!(err instanceof AuthError)) throw err;
        if (err.status === 401)
            res.set('WWW-Authenticate', `Bearer error="invalid_token", error_description="${err.message}"`);
        jsonError(res, err.status, err.code, err.message, err.details);
        return;
    }
    const q = req.query;
    const where = [];
    const values = [];
    for (const col of ['id', 'status']) {
        if (q[col] === undefined) continue;
        const v = eqValue(q[col]);
        if (v === null) {
            jsonError(res, 400, 'PGRST100', `"failed to parse filter (${q[col]})" (line 1, column 1)`);
            return;
        }
        values.push(v);
        where.push(`("${col}" = $${values.length})`);
    }
    let order = '';
    if (q.order !== undefined) {
        if (q.order !== 'id.desc' && q.order !== 'id.asc') {
            jsonError(res, 400, 'PGRST100', 'only order=id.desc or id.asc here');
            return;
        }
        order = q.order === 'id.desc' ? ' order by "id" desc' : ' order by "id" asc';
    }
    let limit = '';
    if (q.limit !== undefined) {
        if (typeof q.limit !== 'string' || !/^[0-9]{1,18}$/.test(q.limit)) {
            jsonError(res, 400, 'PGRST100', `"failed to parse limit (${q.limit})" (line 1, column 1)`);
            return;
        }
        values.push(q.limit);
        limit = ` limit $${values.length}::bigint`;
    }
    // apiary's statement: the rows as a JSON array, and how many.
    const sql =
        `select coalesce(json_agg(_r), '[]')::text as body, count(_r) as n from (select * from "api"."tasks"` +
        (where.length ? ` where ${where.join(' and ')}` : '') + `${order}${limit}) _r`;
    try {
        const row = await runRead(req, auth, sql, values);
        const n = Number(row.n);
        res.set('Content-Range', n > 0 ? `0-${n - 1}/*` : '*/*');
        res.type('application/json').send(row.body);
    } catch (err) {
        pgError(res, err);
    }
});

app.use((req, res) => jsonError(res, 404, 'PGRST125', 'Not Found'));

const server = app.listen(port, process.env.HOST || '127.0.0.1', (err) => {
    if (err) {
        console.error('server.js: listen:', err.message);
        process.exit(1);
    }
});
server.keepAliveTimeout = 75000;

let closing = false;
function shutdown() {
    if (closing) return;
    closing = true;
    server.close();
    server.closeIdleConnections?.();
    Promise.allSettled([pool.end(), apiPool === pool ? null : apiPool.end()]).finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 3000).unref();
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
