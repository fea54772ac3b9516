// End to end: the Fastify example (and the plugin's fixture for close-with-grace and
// 'localhost') as real processes, upgraded with SIGUSR2 under keep-alive load and asserted
// only from outside, as a client and an operator see them.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { request, startLoad } from './helpers/load.mjs';
import { isAlive, startFixture, waitFor } from './helpers/process.mjs';

const EXAMPLE = fileURLToPath(new URL('../examples/fastify/dist/server.js', import.meta.url));
const PLUGIN_FIXTURE = fileURLToPath(new URL('../packages/fastify/test/fixtures/app.mjs', import.meta.url));
const tempDir = () => mkdtempSync(join(tmpdir(), 'grace-fastify-test-'));

/** Starts `script` with PORT=0; resolves once it is ready, with the port it reported. */
async function start(t, script, env = {}) {
  const fixture = startFixture(script, { env: { PORT: '0', ...env } });
  t.after(() => fixture.cleanup());
  const listening = await fixture.waitForEvent((e) => e.event === 'listening' && e.pid === fixture.pid);
  await fixture.waitForEvent((e) => e.msg === 'ready' && e.pid === fixture.pid);
  return { fixture, port: listening.port ?? listening.addresses[0].port };
}

/** SIGUSR2 to `pid`; waits for its successor to be ready and for `pid` to be gone. */
async function upgrade(fixture, pid) {
  const after = fixture.events.length;
  process.kill(pid, 'SIGUSR2');
  const ready = await fixture.waitForEvent((e) => e.msg === 'ready' && e.name === 'grace-restart' && e.pid !== pid, { after });
  await waitFor(() => !isAlive(pid), { what: `old process ${pid} to exit` });
  return ready.pid;
}

/** Keeps load flowing until `count` more requests succeeded: proof the new process serves. */
const flows = (load, count = 200) => {
  const target = load.stats.ok + count;
  return waitFor(() => load.stats.ok >= target, { what: `${count} more requests` });
};

const drains = (fixture) => fixture.events.filter((e) => e.msg === 'drained');

test('example: three upgrades under keep-alive load fail no request', async (t) => {
  const pidFile = join(tempDir(), 'app.pid');
  const { fixture, port } = await start(t, EXAMPLE, { PID_FILE: pidFile, APP_VERSION: 'v1' });
  assert.equal(readFileSync(pidFile, 'utf8').trim(), String(fixture.pid));
  const load = startLoad({ port, connections: 20 });
  await flows(load);

  let pid = fixture.pid;
  for (let generation = 2; generation <= 4; generation++) {
    const next = await upgrade(fixture, pid);
    assert.notEqual(next, pid);
    await flows(load);
    pid = next;
    const res = await request({ port });
    assert.deepEqual(res.json, { framework: 'fastify', pid, version: 'v1', generation });
  }
  const result = await load.stop();
  t.diagnostic(`load over 3 upgrades: ${JSON.stringify(result)}`);
  assert.equal(result.failed, 0, `failed requests: ${JSON.stringify(result.errors)}`);
  assert.ok(result.pids[pid] > 0, 'the last generation served the load');
  assert.equal(readFileSync(pidFile, 'utf8').trim(), String(pid));
  assert.deepEqual(
    drains(fixture).map((d) => [d.reason, d.forced]),
    [
      ['upgrade', 0],
      ['upgrade', 0],
      ['upgrade', 0],
    ],
  );
  const closed = fixture.events.filter((e) => e.event === 'closed').map((e) => e.generation);
  assert.deepEqual(closed, [1, 2, 3], 'each old process ran its onClose hooks');
});

test('example: a slow request and a 20 MiB upload in flight complete across an upgrade', async (t) => {
  const { fixture, port } = await start(t, EXAMPLE);
  // Longer than the successor's boot plus its 1 s probation: still running when the drain starts.
  const slow = request({ port, path: '/slow?ms=3000' });
  const size = 20 * 1024 * 1024;
  const chunk = Buffer.alloc(64 * 1024, 1);
  let uploading;
  const started = new Promise((resolve) => (uploading = resolve));
  const upload = request({
    port,
    path: '/echo',
    method: 'POST',
    body: (req) => {
      let sent = 0;
      // Paced, so that the upgrade happens while the body is still arriving.
      const pump = () => {
        if (sent >= size) return req.end();
        sent += chunk.length;
        if (sent > size / 4) uploading();
        if (req.write(chunk)) setTimeout(pump, 1);
        else req.once('drain', pump);
      };
      pump();
    },
  });
  await started;
  const next = await upgrade(fixture, fixture.pid);
  const [slowRes, uploadRes] = await Promise.all([slow, upload]);
  assert.equal(slowRes.status, 200);
  assert.equal(slowRes.json.pid, fixture.pid, 'the old process answered its slow request');
  assert.equal(slowRes.headers.connection, 'close');
  assert.equal(uploadRes.status, 200);
  assert.deepEqual(uploadRes.json, { bytes: size });
  assert.equal((await request({ port })).json.pid, next);
});

test('example: a release that fails at boot is rolled back and no request fails', async (t) => {
  const failFile = join(tempDir(), 'fail');
  const { fixture, port } = await start(t, EXAMPLE, { BOOT_FAIL_FILE: failFile });
  const load = startLoad({ port, connections: 20 });
  await flows(load);

  writeFileSync(failFile, '');
  const after = fixture.events.length;
  process.kill(fixture.pid, 'SIGUSR2');
  // Only the old process logs this line (its `pid` field names the failed successor).
  const failed = await fixture.waitForEvent((e) => /^upgrade failed, still serving/.test(e.msg ?? ''), { after });
  assert.equal(failed.reason, 'exited');
  assert.equal(failed.exitCode, 1);
  await flows(load);
  assert.equal(isAlive(fixture.pid), true);
  assert.equal((await request({ port, path: '/health' })).status, 200);

  rmSync(failFile);
  const next = await upgrade(fixture, fixture.pid);
  await flows(load);
  const result = await load.stop();
  t.diagnostic(`load over a rollback and an upgrade: ${JSON.stringify(result)}`);
  assert.equal(result.failed, 0, `failed requests: ${JSON.stringify(result.errors)}`);
  assert.equal((await request({ port })).json.generation, 2, 'the generation failed at boot is not counted');
  assert.ok(result.pids[next] > 0);
});

test('close-with-grace with its defaults (SIGUSR2 included): upgrades still fail no request', async (t) => {
  const { fixture, port } = await start(t, PLUGIN_FIXTURE, { CLOSE_WITH_GRACE: 'default' });
  const load = startLoad({ port, connections: 20 });
  await flows(load);
  let pid = fixture.pid;
  for (let i = 0; i < 2; i++) {
    const next = await upgrade(fixture, pid);
    const closeCalls = fixture.events.filter((e) => e.event === 'close-with-grace' && e.pid === pid);
    assert.equal(closeCalls.length, 1, 'close-with-grace called app.close() on SIGUSR2');
    await flows(load);
    pid = next;
  }
  const result = await load.stop();
  t.diagnostic(`load over 2 upgrades beside close-with-grace: ${JSON.stringify(result)}`);
  assert.equal(result.failed, 0, `failed requests: ${JSON.stringify(result.errors)}`);
  assert.deepEqual(
    drains(fixture).map((d) => d.reason),
    ['upgrade', 'upgrade'],
    'app.close() joined the handoff drain',
  );
});

test('close-with-grace skipping SIGUSR2: upgrade, then SIGTERM drains and runs onClose once', async (t) => {
  const { fixture, port } = await start(t, PLUGIN_FIXTURE, { CLOSE_WITH_GRACE: 'skip' });
  const next = await upgrade(fixture, fixture.pid);
  assert.equal(
    fixture.events.some((e) => e.event === 'close-with-grace' && e.pid === fixture.pid),
    false,
  );

  const slow = request({ port, path: '/slow?ms=800' });
  await fixture.waitForEvent({ event: 'slow-start', pid: next });
  process.kill(next, 'SIGTERM');
  const slowRes = await slow;
  assert.equal(slowRes.status, 200);
  assert.equal(slowRes.json.pid, next);
  await waitFor(() => !isAlive(next), { what: 'the successor to exit' });
  const mine = fixture.events.filter((e) => e.pid === next && e.event);
  const closed = mine.filter((e) => e.event === 'closed');
  assert.equal(closed.length, 1, 'onClose ran once although both handlers caught SIGTERM');
  assert.equal(closed[0].inFlight, 0);
  assert.ok(mine.some((e) => e.event === 'close-with-grace' && e.signal === 'SIGTERM'));
});

test("host 'localhost': every address Fastify binds is inherited across upgrades", async (t) => {
  const { fixture, port } = await start(t, PLUGIN_FIXTURE, {
    HOST: 'localhost',
    LOCALHOST_ADDRESSES: '127.0.0.1,::1',
    READY_TIMEOUT: '10000',
  });
  const first = fixture.events.find((e) => e.event === 'listening');
  assert.deepEqual(first.addresses.map((a) => a.address).sort(), ['127.0.0.1', '::1']);
  const v4 = startLoad({ port, host: '127.0.0.1', connections: 10 });
  const v6 = startLoad({ port, host: '::1', connections: 10 });
  await Promise.all([flows(v4, 100), flows(v6, 100)]);
  let pid = fixture.pid;
  for (let i = 0; i < 2; i++) {
    pid = await upgrade(fixture, pid);
    await Promise.all([flows(v4, 100), flows(v6, 100)]);
  }
  const results = [await v4.stop(), await v6.stop()];
  t.diagnostic(`load on 127.0.0.1 and ::1 over 2 upgrades: ${JSON.stringify(results)}`);
  for (const result of results) {
    assert.equal(result.failed, 0, `failed requests: ${JSON.stringify(result.errors)}`);
    assert.ok(result.pids[pid] > 0, 'the last generation served this address');
  }
  assert.equal((await request({ port, host: '::1' })).json.pid, pid);
});

for (const [how, env] of [
  ["without a logger (Fastify's default, NestJS's FastifyAdapter)", {}],
  ["with its logger at level 'silent'", { FASTIFY_LOG_LEVEL: 'silent' }],
]) {
  test(`a Fastify ${how} does not silence grace-restart: its warnings reach stderr`, async (t) => {
    const fixture = startFixture(fileURLToPath(new URL('../packages/fastify/test/fixtures/no-logger.mjs', import.meta.url)), { env });
    t.after(() => fixture.cleanup());
    await fixture.waitForEvent({ event: 'listening' });
    process.kill(fixture.pid, 'SIGHUP');
    await waitFor(() => /"level":40,.*ignoring SIGHUP: no onReload hook/.test(fixture.stderr), { what: 'the SIGHUP warning on stderr' });
    process.kill(fixture.pid, 'SIGTERM');
    assert.deepEqual(await fixture.exited, { code: 0, signal: null });
  });
}

test('app.close() from an onShutdown hook (as NestJS on Fastify closes itself): SIGTERM stops at once, no hook waits for its deadline, onClose runs once', async (t) => {
  const { fixture } = await start(t, PLUGIN_FIXTURE, { CLOSE_IN_ON_SHUTDOWN: '1' });
  process.kill(fixture.pid, 'SIGTERM');
  assert.deepEqual(await fixture.exited, { code: 0, signal: null });
  assert.equal(fixture.events.filter((e) => e.event === 'closed').length, 1, 'onClose ran once');
  assert.ok(!fixture.events.some((e) => /hook still running/.test(e.msg ?? '')), 'no hook ran into its deadline');
});
