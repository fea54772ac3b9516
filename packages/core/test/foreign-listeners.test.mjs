// A server grace-restart never saw (issue #26): an app that installs grace-restart and then
// listens around it (NestJS's app.listen(), Hono's serve()) is told so at error level, with
// the fix, by default; SIGUSR2 says the same; and a stop signal does not make the app's own
// graceful stop lossy.
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { request } from '../../../test/helpers/load.mjs';
import { isAlive, startFixture, waitFor } from '../../../test/helpers/process.mjs';
import { foreignListeners } from '../dist/foreign-listeners.js';

const MISWIRED = fileURLToPath(new URL('./fixtures/miswired.mjs', import.meta.url));

async function startMiswired(t, env = {}) {
  const fixture = startFixture(MISWIRED, { env });
  t.after(() => fixture.cleanup());
  const { address } = await fixture.waitForEvent({ event: 'listening' });
  return { fixture, port: address.port };
}

/** The JSON lines the default logger wrote to stderr. */
const logLines = (fixture) =>
  fixture.stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l));

test('foreignListeners: every listening socket but its own, its inherited ones and its control socket (by absolute or relative path)', () => {
  const listening = new Map([
    [10, { kind: 'tcp', family: 'IPv4', address: '127.0.0.1', port: 3000 }],
    [11, { kind: 'tcp', family: 'IPv6', address: '::1', port: 3001 }],
    [12, { kind: 'unix', path: '/tmp/grace-restart-0/42.sock' }],
    [13, { kind: 'unix', path: '/run/app.sock' }],
  ]);
  const owned = { serving: false, fds: new Set([11]), controlSocket: '/tmp/grace-restart-0/42.sock' };
  assert.deepEqual(foreignListeners(listening, owned), [
    { fd: 10, address: '127.0.0.1:3000' },
    { fd: 13, address: 'unix socket /run/app.sock' },
  ]);
});

test("the inspector's socket (node --inspect) is not the app's: no error line while an app boots slowly under it", async (t) => {
  const fixture = startFixture(MISWIRED, { env: { WIRED_AFTER: '1500', NODE_OPTIONS: '--inspect=127.0.0.1:0' } });
  t.after(() => fixture.cleanup());
  await fixture.waitForEvent({ event: 'ready' });
  assert.match(fixture.stderr, /Debugger listening on ws:\/\/127\.0\.0\.1:\d+/, 'the inspector listened all along');
  assert.deepEqual(
    logLines(fixture).filter((l) => /never saw/.test(l.msg)),
    [],
  );
});

test('an app listening around grace-restart gets an error line by default naming where it listens and the fix; SIGUSR2 repeats it and the app serves on', async (t) => {
  const { fixture, port } = await startMiswired(t);
  const found = await waitFor(() => logLines(fixture).find((l) => /never saw/.test(l.msg)), {
    what: 'the error line about the server grace-restart never saw',
  });
  assert.equal(found.level, 50, 'at error level');
  assert.match(found.msg, new RegExp(`listens on 127\\.0\\.0\\.1:${port} through a server grace-restart never saw`));
  assert.match(found.msg, /grace\.adopt\(app\.getHttpServer\(\)\) before app\.listen\(\)/, 'the NestJS fix');
  assert.match(found.msg, /createAdaptorServer\(\) then grace\.listen\(\)/, 'the Hono fix');

  process.kill(fixture.pid, 'SIGUSR2');
  const refused = await waitFor(() => logLines(fixture).find((l) => /^ignoring SIGUSR2: .*never saw/.test(l.msg)), {
    what: 'the SIGUSR2 refusal',
  });
  assert.equal(refused.level, 50);
  assert.equal((await request({ port })).status, 200, 'the app serves on');
});

test("SIGTERM to such an app that stops itself gracefully (NestJS's enableShutdownHooks): left to the app, the request in flight is answered, exit 0", async (t) => {
  const { fixture, port } = await startMiswired(t, { OWN_STOP: '1' });
  const inFlight = request({ port, path: '/slow?ms=800' });
  // The request is in the server once a later one on another connection has been answered.
  await request({ port });
  process.kill(fixture.pid, 'SIGTERM');
  const res = await inFlight;
  assert.equal(res.status, 200, 'the request in flight is answered');
  const { code, signal } = await fixture.exited;
  assert.deepEqual({ code, signal }, { code: 0, signal: null });
  assert.ok(
    fixture.events.some((e) => e.event === 'app-closed'),
    "the app's own stop ran",
  );
  assert.ok(!fixture.events.some((e) => e.event === 'shutdown'), 'grace-restart did not stop it');
  const line = logLines(fixture).find((l) => /^SIGTERM: left to the app's own handler/.test(l.msg));
  assert.ok(line, fixture.stderr);
  assert.equal(line.level, 50);
});

test('SIGTERM to such an app without a stop of its own: an error line says so, the servers seen answering requests drain, the onShutdown hooks run, the process exits', async (t) => {
  const { fixture } = await startMiswired(t);
  process.kill(fixture.pid, 'SIGTERM');
  await fixture.exited;
  assert.equal(isAlive(fixture.pid), false);
  assert.ok(
    fixture.events.some((e) => e.event === 'shutdown'),
    'onShutdown ran',
  );
  assert.ok(
    logLines(fixture).some(
      (l) =>
        l.level === 50 && /^SIGTERM: draining the servers seen answering requests, then the onShutdown hooks\. .*never saw/.test(l.msg),
    ),
    fixture.stderr,
  );
});
