// Shared steps of the adapters' in-process tests (express, koa): a grace-restart instance in
// the test runner itself, a real framework app, real sockets, supertest as the client.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import request from 'supertest';

/** Options for an instance living in the test runner: no signal handlers, no process.exit. */
export const IN_PROCESS = Object.freeze({ stopSignals: false, upgradeSignal: false, exit: false });

/** A request handler that reports when it is entered and answers only once released. */
export function gated() {
  let entered;
  let release;
  const enteredP = new Promise((resolve) => (entered = resolve));
  const released = new Promise((resolve) => (release = resolve));
  return {
    /** Called by the route: resolves when the test releases it. */
    enter: () => {
      entered();
      return released;
    },
    entered: enteredP,
    release: () => release(),
  };
}

/** Closes a server and its connections, whether or not grace-restart already did. */
export function closeServer(server) {
  server.close();
  server.closeAllConnections?.();
}

/** Resolves once `grace` reported ready; rejects after `timeout` ms instead of hanging. */
export async function whenReady(grace, timeout = 5000) {
  if (!grace.isReady) await once(grace, 'ready', { signal: AbortSignal.timeout(timeout) });
}

/**
 * The drain as a client sees it: `server` serves `GET /health` (503 while
 * `isDraining`) and `GET /gated` (held by `gate`); the instance needs a long `idleGrace`
 * so the idle keep-alive socket is still open when the test sends on it again.
 */
export async function assertDrainOverKeepAlive(t, { server, grace, gate }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const slowAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => {
    agent.destroy();
    slowAgent.destroy();
  });

  const before = await request(server).get('/health').agent(agent).expect(200);
  assert.equal(before.headers.connection, 'keep-alive');
  const inFlight = request(server)
    .get('/gated')
    .agent(slowAgent)
    .then((res) => res);
  await gate.entered;

  const closed = grace.close();
  const during = await request(server).get('/health').agent(agent);
  assert.equal(during.status, 503, '/health reads isDraining from the handle');
  assert.equal(during.headers.connection, 'close', 'a request on a kept-alive socket is told to reconnect');
  gate.release();
  const slow = await inFlight;
  assert.equal(slow.status, 200);
  assert.equal(slow.headers.connection, 'close', 'a response still in progress when the drain starts closes its socket');
  await closed;
  assert.equal(grace.state, 'closed');
  assert.equal(server.listening, false);
}

/**
 * `healthCheck: '/healthz'` through an adapter: `start(status)` builds the app whose /healthz
 * answers `status` and returns its Grace once the app listens. A 2xx makes it ready; a 503 stops
 * it (in process: no exit) with the answer in an error line, and the app never reports ready.
 */
export async function assertHealthCheckThroughAdapter(start) {
  for (const [status, expected] of [
    [503, 'closed'],
    [200, 'ready'],
  ]) {
    const errors = [];
    const logger = { debug() {}, info() {}, warn() {}, error: (_fields, message) => errors.push(message) };
    const grace = await start(status, { ...IN_PROCESS, controlDir: false, healthCheck: '/healthz', logger });
    let readyEvents = 0;
    grace.on('ready', () => readyEvents++);
    await waitForState(grace, expected);
    if (expected === 'closed') {
      assert.equal(readyEvents, 0);
      assert.match(errors.join('\n'), /health check failed, stopping with exit code 1: GET \/healthz answered 503/);
    } else await grace.close();
  }
}

async function waitForState(grace, state, timeout = 5_000) {
  const deadline = Date.now() + timeout;
  while (grace.state !== state) {
    if (Date.now() > deadline) throw new Error(`state ${grace.state}, expected ${state} within ${timeout} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
