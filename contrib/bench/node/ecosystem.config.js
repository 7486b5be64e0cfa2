// PM2 ecosystem file for contrib/bench/bench-api: server.js in cluster mode.
// bench-api sets the environment below when it runs `pm2 start` (the file is
// read by the pm2 command, so process.env here is the caller's).
//   BENCH_INSTANCES  number of processes (default 2)
//   BENCH_PORT, BENCH_DATABASE_URL, BENCH_POOL_SIZE  passed to server.js
//   BENCH_API_DATABASE_URL, BENCH_ANON_ROLE, BENCH_JWT_SECRET_FILE,
//   BENCH_TX_MODE    passed to server.js (optional; see server.js)
//   BENCH_LOG_DIR    where PM2 writes the processes' stdout/stderr
'use strict';

const path = require('path');
const logDir = process.env.BENCH_LOG_DIR || path.join(__dirname, 'logs');

module.exports = {
    apps: [
        {
            name: 'apiary-bench-express',
            script: path.join(__dirname, 'server.js'),
            cwd: __dirname,
            exec_mode: 'cluster',
            instances: Number(process.env.BENCH_INSTANCES || 2),
            // A crash during a run must show up as a failure, not be
            // hidden by a restart.
            autorestart: false,
            watch: false,
            merge_logs: true,
            out_file: path.join(logDir, 'express-out.log'),
            error_file: path.join(logDir, 'express-err.log'),
            pid_file: path.join(logDir, 'express.pid'),
            kill_timeout: 3000,
            env: {
                NODE_ENV: 'production',
                PORT: process.env.BENCH_PORT,
                DATABASE_URL: process.env.BENCH_DATABASE_URL,
                POOL_SIZE: process.env.BENCH_POOL_SIZE || '8',
                API_DATABASE_URL: process.env.BENCH_API_DATABASE_URL || '',
                ANON_ROLE: process.env.BENCH_ANON_ROLE || 'anon',
                JWT_SECRET_FILE: process.env.BENCH_JWT_SECRET_FILE || '',
                TX_MODE: process.env.BENCH_TX_MODE || 'single',
            },
        },
    ],
};
