/**
 * Example: a Fastify app that upgrades without dropping a request.
 *
 *   PORT=3000 PID_FILE=app.pid node dist/server.js
 *   kill -USR2 $(cat app.pid)   # start the new version, hand it the socket, drain this one
 *   kill -TERM $(cat app.pid)   # drain and stop
 *
 * Logs one JSON line per lifecycle event on stdout (Fastify's pino logger).
 */
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import graceRestart from '@grace-restart/fastify';
import Fastify, { LogController } from 'fastify';
import { readConfig } from './config.js';
import { ECHO_LIMIT, registerRoutes } from './routes.js';

const config = readConfig();
const app = Fastify({
  logger: { level: config.logLevel },
  // Lifecycle lines only: no line per request (the top-level disableRequestLogging is deprecated in 5.12).
  logController: new LogController({ disableRequestLogging: true }),
  bodyLimit: ECHO_LIMIT,
});

// A release that cannot boot: the predecessor sees this exit and keeps serving.
if (config.bootFailFile !== undefined && existsSync(config.bootFailFile)) {
  app.log.error({ event: 'boot-failed', bootFailFile: config.bootFailFile }, 'refusing to boot');
  process.exit(1);
}

await app.register(graceRestart, {
  pidFile: config.pidFile,
  drainTimeout: config.drainTimeout,
  readyTimeout: config.readyTimeout,
  idleGrace: config.idleGrace,
});
registerRoutes(app, config.version);
// Runs once, after the drain: in-flight requests are done, so pools can close safely.
app.addHook('onClose', async () => {
  app.log.info({ event: 'closed', generation: app.graceRestart.generation }, 'onClose: resources released');
});

try {
  await app.listen({ port: config.port, host: config.host });
} catch (err) {
  app.log.error({ event: 'listen-failed', err }, 'cannot listen');
  process.exit(1);
}
const { port } = app.server.address() as AddressInfo;
// With PORT=0 this line is how clients learn the port (it is kept across upgrades).
app.log.info({ event: 'listening', port, generation: app.graceRestart.generation, version: config.version }, 'listening');
