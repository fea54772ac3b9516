// A CommonJS Express app, as most Express apps are: require() loads the ES module package
// through Node's require(esm) (Node >= 20.19).
'use strict';
const express = require('express');
const { graceRestart } = require('@grace-restart/express');

const restart = graceRestart({ pidFile: process.env.PID_FILE, idleGrace: Number(process.env.IDLE_GRACE ?? 3000) });
const app = express();
app.use(restart);
app.get('/', (req, res) => res.json({ pid: process.pid, generation: req.graceRestart.generation }));

const log = (event, fields) => process.stdout.write(`${JSON.stringify({ event, pid: process.pid, ...fields })}\n`);
process.on('exit', (code) => log('exit', { code }));
const server = app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => log('listening', { address: server.address() }));
