// Shared steps of the plugin tests: an in-process app that never exits nor takes signals,
// the fixture app as a real process, and keep-alive clients pinned to one socket.
import http from 'node:http';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import Fastify from 'fastify';
import graceRestart from '@grace-restart/fastify';
import { startFixture } from '../../../test/helpers/process.mjs';

export const FIXTURE = fileURLToPath(new URL('./fixtures/app.mjs', import.meta.url));

/** Options that keep an in-process instance away from the test runner's signals and exit. */
export const inProcess = { exit: false, stopSignals: false, upgradeSignal: false };

/**
 * A Fastify app with the plugin and routes / (identity), /slow?ms=N and /health, whose
 * `order` array records when slow requests start and end and when onClose hooks run.
 */
export async function buildApp(t, { fastify = {}, grace = {} } = {}) {
  const app = Fastify(fastify);
  await app.register(graceRestart, { ...inProcess, ...grace });
  const order = [];
  app.get('/', async () => ({ pid: process.pid, draining: app.graceRestart.isDraining }));
  app.get('/slow', async (request) => {
    order.push('slow-start');
    await new Promise((resolve) => setTimeout(resolve, Number(request.query.ms ?? 300)));
    order.push('slow-done');
    return { pid: process.pid };
  });
  app.get('/health', async (_request, reply) =>
    app.graceRestart.isDraining ? reply.code(503).send({ status: 'draining' }) : { status: 'ok' },
  );
  app.addHook('onClose', async () => order.push('onClose'));
  t.after(() => app.close());
  return { app, order };
}

/** Listens on 127.0.0.1 and waits until the process reported ready; returns the port. */
export async function listen(app, options = {}) {
  await app.listen({ port: 0, host: '127.0.0.1', ...options });
  if (!app.graceRestart.isReady) await once(app.graceRestart.grace, 'ready');
  return app.server.address().port;
}

/** An agent with one keep-alive socket, so consecutive requests reuse the same connection. */
export function pinnedAgent(t) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  return agent;
}

/** Starts the fixture app; resolves once its first generation is ready. */
export async function startApp(t, env = {}) {
  const fixture = startFixture(FIXTURE, { env: { PORT: '0', ...env } });
  t.after(() => fixture.cleanup());
  const listening = await fixture.waitForEvent({ event: 'listening' });
  await fixture.waitForEvent({ event: 'ready', pid: fixture.pid });
  return { fixture, port: listening.addresses[0].port };
}
