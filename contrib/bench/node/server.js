'use strict';
// The peer for contrib/bench/bench-api: what a Node developer would write
// instead of apiary for GET /rpc/task?id=N. Express 5 + node-postgres, one
// pg.Pool per process through pgBouncer, run by PM2 in cluster mode (see
// ecosystem.config.js). It calls the function apiary calls for that RPC,
// api.task(id), and sends PostgreSQL's JSON text as the body without
// parsing and re-serialising it: the plain, fast way to write it by hand.
//
// Environment: PORT (required), DATABASE_URL (required), POOL_SIZE
// (connections per process, default 8), HOST (default 127.0.0.1).

const express = require('express');
const { Pool, types } = require('pg');

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

// Hand json values over as the text PostgreSQL produced.
types.setTypeParser(types.builtins.JSON, (text) => text);

const pool = new Pool({
    connectionString: process.env.DATABASE_URL,
    max: poolSize,
    idleTimeoutMillis: 0,
    connectionTimeoutMillis: 5000,
});
// An idle client losing its connection must not kill the process.
pool.on('error', (err) => console.error('pg pool error:', err.message));

const TASK_SQL = 'select to_json(api.task($1)) as body';

function jsonError(res, status, code, message) {
    res.status(status).json({ code, message, details: null, hint: null });
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
    pool.end().finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 3000).unref();
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
