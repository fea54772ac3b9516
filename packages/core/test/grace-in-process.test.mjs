// The lifecycle of a real Grace instance, in this process, against a fake environment
// (grace-environment.ts): signals arrive on an EventEmitter, the successor is a stand-in that
// reports ready or dies on cue, and exit records its code instead of exiting. The servers and
// sockets are real. The same paths run end to end, against real processes, in
// test/lifecycle.test.mjs and the randomized driver; here each is a few milliseconds.
import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import http from 'node:http';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { Grace, UpgradeError } from '@grace-restart/core';
import { waitFor } from '../../../test/helpers/process.mjs';
import { request } from '../../../test/helpers/load.mjs';
import { inheritedNothing } from './fake-environment.mjs';

/** A stand-in for the successor process: `exit(code, signal)` ends it. */
function fakeSuccessor(pid) {
  const child = new EventEmitter();
  child.connected = false;
  child.disconnect = () => undefined;
  return { child, pid, adopts: [], exit: (code, signal = null) => child.emit('exit', code, signal) };
}

/** A process around the instance, and what happened to it. */
function fakeEnvironment() {
  const attempts = [];
  const exits = [];
  const kills = [];
  const environment = {
    inherited: inheritedNothing,
    signals: new EventEmitter(),
    // The attempt stays pending until the test says how it ends.
    spawnSuccessor: (options) =>
      new Promise((resolve, reject) => {
        attempts.push({ options, resolve, reject });
      }),
    kill: (pid, signal) => kills.push([pid, signal]),
    exit: (code) => exits.push(code),
  };
  return { environment, attempts, exits, kills, signal: (name) => environment.signals.emit(name, name) };
}

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

async function serving(t, options = {}) {
  const fake = fakeEnvironment();
  // A 1 s probation, whatever the environment says: the tests below time their negatives by it.
  const grace = new Grace({ controlDir: false, logger: quiet, drainTimeout: 2_000, probation: 1_000, ...options }, fake.environment);
  const server = http.createServer((_req, res) => res.end(String(grace.state)));
  await grace.listen(server, { port: 0, host: '127.0.0.1' });
  await waitFor(() => grace.state === 'ready', { what: 'autoReady' });
  t.after(() => server.close());
  return { grace, fake, port: server.address().port };
}

async function closeIfOpen(grace) {
  if (grace.state !== 'closed') await grace.close();
}

test('a successor that dies in its probation: this process serves on, its listener never closed', async (t) => {
  const { grace, fake, port } = await serving(t);
  const failed = once(grace, 'upgrade-failed');
  const upgrade = grace.upgrade();
  await waitFor(() => fake.attempts.length === 1, { what: 'the spawn' });
  const successor = fakeSuccessor(999_001);
  fake.attempts[0].resolve(successor);
  assert.equal((await upgrade).pid, 999_001);
  assert.equal(grace.state, 'draining');
  successor.exit(1);
  const [error] = await failed;
  assert.match(error.message, /successor 999001 exited \(exit code 1\) after it was ready/);
  assert.equal(grace.state, 'ready');
  assert.equal((await request({ port })).status, 200);
  // What must not happen would happen when the probation (1 s) ends: the handover letting go
  // of the listener. A negative needs its window: 1.5 probations.
  let drains = 0;
  grace.on('drain-start', () => drains++);
  await delay(1_500);
  assert.equal(drains, 0, 'the cancelled handover does not go on to drain');
  assert.equal((await request({ port })).status, 200);
  await closeIfOpen(grace);
  assert.deepEqual(fake.exits, [], 'close() never exits');
});

test('a successor that dies after the handover: this process binds again and serves', async (t) => {
  const { grace, fake, port } = await serving(t);
  grace.upgrade();
  await waitFor(() => fake.attempts.length === 1, { what: 'the spawn' });
  const successor = fakeSuccessor(999_002);
  fake.attempts[0].resolve(successor);
  // Past the probation this process stops accepting: its drain starts.
  await once(grace, 'drain-start');
  const failed = once(grace, 'upgrade-failed');
  successor.exit(null, 'SIGKILL');
  await failed;
  assert.equal(grace.state, 'ready');
  assert.equal((await request({ port })).status, 200);
  await closeIfOpen(grace);
});

test('a successor that never gets ready is a rollback; the next upgrade starts afresh', async (t) => {
  const { grace, fake } = await serving(t);
  const first = grace.upgrade();
  const joined = grace.upgrade();
  await waitFor(() => fake.attempts.length === 1, { what: 'the spawn' });
  fake.attempts[0].reject(new UpgradeError('timeout', 'successor 1 was not ready within 1 ms', { pid: 1, durationMs: 1 }));
  await assert.rejects(first, { reason: 'timeout' });
  await assert.rejects(joined, { reason: 'timeout' }, 'a second call joins the first');
  assert.equal(grace.state, 'ready');
  grace.upgrade().catch(() => undefined);
  await waitFor(() => fake.attempts.length === 2, { what: 'a second spawn' });
  fake.attempts[1].reject(new UpgradeError('exited', 'gone', { durationMs: 1 }));
  await closeIfOpen(grace);
});

test('a stop while a successor starts aborts the attempt, drains and exits 0', async (t) => {
  const { grace, fake } = await serving(t);
  const upgrade = grace.upgrade();
  await waitFor(() => fake.attempts.length === 1, { what: 'the spawn' });
  const { signal } = fake.attempts[0].options;
  fake.signal('SIGTERM');
  assert.equal(signal.aborted, true, 'the attempt is aborted at once');
  assert.equal(grace.state, 'draining');
  fake.attempts[0].reject(new UpgradeError('aborted', 'upgrade aborted: the process is shutting down', { durationMs: 1 }));
  await assert.rejects(upgrade, { reason: 'aborted' });
  await waitFor(() => fake.exits.length === 1, { what: 'the exit' });
  assert.deepEqual(fake.exits, [0]);
  assert.equal(grace.state, 'closed');
});

test('a successor that exits 0 after it was ready: the service is stopping, this process drains and exits 0', async (t) => {
  const { grace, fake } = await serving(t);
  grace.upgrade();
  await waitFor(() => fake.attempts.length === 1, { what: 'the spawn' });
  const successor = fakeSuccessor(999_003);
  fake.attempts[0].resolve(successor);
  await waitFor(() => grace.state === 'draining', { what: 'the handover' });
  successor.exit(0);
  await waitFor(() => fake.exits.length === 1, { what: 'the exit' });
  assert.deepEqual(fake.exits, [0]);
  assert.equal(grace.state, 'closed');
});

test('SIGHUP calls onReload while serving and is ignored once stopping; upgrades are refused while stopping', async (t) => {
  let reloads = 0;
  const { grace, fake } = await serving(t, { onReload: () => reloads++ });
  fake.signal('SIGHUP');
  await waitFor(() => reloads === 1, { what: 'onReload' });
  const closing = grace.close();
  fake.signal('SIGHUP');
  await assert.rejects(grace.upgrade(), { code: 'GRACE_ERR_CLOSING' });
  await closing;
  assert.equal(reloads, 1);
  assert.equal(fake.attempts.length, 0);
});

test('close() during a stop by signal: the stop goes on, and the process is not exited', async (t) => {
  const { grace, fake } = await serving(t);
  fake.signal('SIGTERM');
  await grace.close();
  assert.equal(grace.state, 'closed');
  assert.deepEqual(fake.exits, []);
});

test('an upgrade before the ready report is refused with GRACE_ERR_NOT_READY', async () => {
  const fake = fakeEnvironment();
  const grace = new Grace({ controlDir: false, logger: quiet, autoReady: false }, fake.environment);
  await assert.rejects(grace.upgrade(), { code: 'GRACE_ERR_NOT_READY' });
  await grace.close();
});

test('an upgrade signal during the probation is passed on to the successor, which serves; an API upgrade is refused', async (t) => {
  const { grace, fake } = await serving(t, { probation: 60_000 });
  const upgrade = grace.upgrade();
  await waitFor(() => fake.attempts.length === 1, { what: 'the spawn' });
  fake.attempts[0].resolve(fakeSuccessor(999_003));
  await upgrade;
  fake.signal('SIGUSR2');
  assert.deepEqual(fake.kills, [[999_003, 'SIGUSR2']]);
  assert.equal(fake.attempts.length, 1, 'no second successor of its own');
  await assert.rejects(grace.upgrade(), { code: 'GRACE_ERR_CLOSING', message: /handing over to its successor/ });
  assert.equal(fake.kills.length, 1);
  await closeIfOpen(grace);
});

/** A Grace whose server answers `status` on /healthz, with `healthCheck` among the options. */
async function checked(t, status, options) {
  const fake = fakeEnvironment();
  const grace = new Grace({ controlDir: false, logger: quiet, ...options }, fake.environment);
  const seen = [];
  const server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url} ${req.headers['user-agent']}`);
    res.statusCode = req.url === '/healthz' ? status : 200;
    res.end('body');
  });
  t.after(() => server.close());
  await grace.listen(server, { port: 0, host: '127.0.0.1' });
  return { grace, fake, seen };
}

test('healthCheck as a path: requested in process before the ready report; a 2xx makes the process ready', async (t) => {
  const { grace, seen } = await checked(t, 204, { healthCheck: '/healthz' });
  await waitFor(() => grace.state === 'ready', { what: 'ready after the check' });
  assert.deepEqual(seen, ['GET /healthz grace-restart-health-check']);
  await grace.close();
});

test('healthCheck failing (500, a throwing function, a timeout): never ready, stop with exit code 1 and the reason', async (t) => {
  const cases = [
    [{ healthCheck: '/healthz' }, 500],
    [{ healthCheck: () => Promise.reject(new Error('database unreachable')) }, 200],
    [{ healthCheck: () => new Promise(() => undefined), healthCheckTimeout: 50 }, 200],
  ];
  for (const [options, status] of cases) {
    const errors = [];
    const logger = { ...quiet, error: (_fields, message) => errors.push(message) };
    const { grace, fake } = await checked(t, status, { ...options, logger });
    let readyEvents = 0;
    grace.on('ready', () => readyEvents++);
    await waitFor(() => fake.exits.length > 0, { what: 'the exit' });
    assert.deepEqual(fake.exits, [1]);
    assert.equal(readyEvents, 0);
    assert.match(
      errors.join('\n'),
      /health check failed, stopping with exit code 1: (GET \/healthz answered 500|the healthCheck function failed: database unreachable|no answer within 50 ms)/,
    );
  }
});

// Last: the instance it leaves is never closed (the fake exit does not end this process).
test('a second stop signal exits at once with 128 + its number, in the middle of a drain', async (t) => {
  const { grace, fake, port } = await serving(t, { drainTimeout: 60_000 });
  // A request that never ends holds the drain open.
  const held = http.get({ port, host: '127.0.0.1', path: '/', agent: new http.Agent({ keepAlive: true }) });
  held.on('error', () => undefined);
  await once(held, 'response');
  fake.signal('SIGTERM');
  assert.equal(grace.state, 'draining');
  fake.signal('SIGINT');
  assert.deepEqual(fake.exits, [130]);
  held.destroy();
});
