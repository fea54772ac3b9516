// Upgrades of a plain node:http server under load, asserted from outside the processes.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { request, startLoad } from '../../../test/helpers/load.mjs';
import { fdCount, isAlive, isZombie, waitFor } from '../../../test/helpers/process.mjs';
import { servingPid, startServer, upgrade } from './helpers.mjs';

const tempDir = () => mkdtempSync(join(tmpdir(), 'grace-core-test-'));

test('upgrades under keep-alive load fail no request, change the pid and end the old process', async (t) => {
  const pidFile = join(tempDir(), 'app.pid');
  const { fixture, port } = await startServer(t, { PID_FILE: pidFile });
  assert.equal(readFileSync(pidFile, 'utf8').trim(), String(fixture.pid));
  const load = startLoad({ port, connections: 20 });
  await waitFor(() => load.stats.ok > 200, { what: 'load to flow' });

  let pid = fixture.pid;
  const pids = [pid];
  for (let i = 0; i < 3; i++) {
    const next = await upgrade(fixture, pid);
    assert.notEqual(next, pid);
    assert.equal(isAlive(pid), false, `old process ${pid} still alive`);
    const okBefore = load.stats.ok;
    await waitFor(() => load.stats.ok > okBefore + 200, { what: 'load to flow on the successor' });
    pid = next;
    pids.push(pid);
  }
  const result = await load.stop();
  assert.deepEqual(result.errors, {}, `failed requests: ${JSON.stringify(result)}`);
  assert.equal(result.failed, 0);
  assert.ok(result.pids[pid] > 0, 'the last generation served requests');
  assert.equal(await servingPid({ port }), pid);
  assert.equal(readFileSync(pidFile, 'utf8').trim(), String(pid), 'PID file names the current process');
  const generations = fixture.events.filter((e) => e.event === 'ready').map((e) => e.generation);
  assert.deepEqual(generations, [1, 2, 3, 4]);
  const drains = fixture.events.filter((e) => e.event === 'drain-end');
  assert.equal(drains.length, 3);
  for (const d of drains) assert.equal(d.forced, 0, `drain forced connections: ${JSON.stringify(d)}`);
});

test('a slow request and a large upload in flight across an upgrade complete on the old process', async (t) => {
  const { fixture, port } = await startServer(t);
  // Longer than the successor's boot plus its 1 s probation: still running when the drain starts.
  const slow = request({ port, path: '/slow?ms=3000' });
  const size = 32 * 1024 * 1024;
  const chunk = Buffer.alloc(64 * 1024, 7);
  let sent = 0;
  let uploadStarted;
  const started = new Promise((resolve) => (uploadStarted = resolve));
  const upload = request({
    port,
    path: '/echo',
    method: 'POST',
    body: (req) => {
      // Stream the body slowly enough that the upgrade happens in the middle of it.
      const pump = () => {
        if (sent >= size) return req.end();
        sent += chunk.length;
        if (sent > size / 4) uploadStarted();
        if (req.write(chunk)) setTimeout(pump, 1);
        else req.once('drain', pump);
      };
      pump();
    },
  });
  await started;
  const next = await upgrade(fixture, fixture.pid).catch((e) => e);
  const [slowRes, uploadRes] = await Promise.all([slow, upload]);
  assert.equal(typeof next, 'number', String(next));
  assert.equal(slowRes.status, 200);
  assert.equal(slowRes.json.pid, fixture.pid, 'the slow request was answered by the old process');
  assert.equal(slowRes.headers.connection, 'close');
  assert.equal(uploadRes.status, 200);
  assert.equal(uploadRes.json.bytes, size, 'the whole body arrived');
  assert.equal(await servingPid({ port }), next);
});

test('a successor that crashes at boot is rolled back and no request fails', async (t) => {
  const behaviour = join(tempDir(), 'behaviour');
  writeFileSync(behaviour, 'ok');
  const { fixture, port } = await startServer(t, { BEHAVIOUR_FILE: behaviour });
  const load = startLoad({ port, connections: 10 });
  await waitFor(() => load.stats.ok > 100, { what: 'load to flow' });
  writeFileSync(behaviour, 'crash-at-boot');
  process.kill(fixture.pid, 'SIGUSR2');
  const failed = await fixture.waitForEvent({ event: 'upgrade-failed' });
  assert.equal(failed.reason, 'exited');
  assert.match(failed.message, /exited \(exit code 3\) before it was ready/);
  const okAfter = load.stats.ok;
  await waitFor(() => load.stats.ok > okAfter + 100, { what: 'old process to keep serving' });
  const result = await load.stop();
  assert.equal(result.failed, 0, JSON.stringify(result));
  assert.deepEqual(Object.keys(result.pids), [String(fixture.pid)]);
  assert.match(fixture.stderr, /upgrade failed, still serving/);

  // A later upgrade, once the release is fixed, succeeds.
  writeFileSync(behaviour, 'ok');
  const next = await upgrade(fixture, fixture.pid);
  assert.equal(await servingPid({ port }), next);
});

test('a successor that never becomes ready is stopped after readyTimeout and the old process keeps serving', async (t) => {
  const behaviour = join(tempDir(), 'behaviour');
  writeFileSync(behaviour, 'ok');
  const { fixture, port } = await startServer(t, { BEHAVIOUR_FILE: behaviour, READY_TIMEOUT: '1000' });
  writeFileSync(behaviour, 'never-ready');
  process.kill(fixture.pid, 'SIGUSR2');
  const stuck = await fixture.waitForEvent((e) => e.event === 'listening' && e.pid !== fixture.pid);
  const failed = await fixture.waitForEvent({ event: 'upgrade-failed' });
  assert.equal(failed.reason, 'timeout');
  await waitFor(() => !isAlive(stuck.pid), { what: 'the stuck successor to be stopped' });
  assert.equal(await servingPid({ port }), fixture.pid);
  assert.ok(isAlive(fixture.pid));
});

test('20 upgrades in a row leak no fd and leave no zombie', async (t) => {
  const { fixture, port } = await startServer(t, { IDLE_GRACE: '50' });
  const firstFds = fdCount(fixture.pid);
  let pid = fixture.pid;
  const pids = [pid];
  for (let i = 0; i < 20; i++) {
    // One keep-alive request per generation so each drain has a connection to close.
    await request({ port, path: '/' });
    pid = await upgrade(fixture, pid);
    pids.push(pid);
  }
  assert.equal(await servingPid({ port }), pid);
  // The test's own last connection may still be closing: poll, with a deadline, for the count to settle.
  let lastFds = fdCount(pid);
  await waitFor(() => (lastFds = fdCount(pid)) <= firstFds, { timeout: 5000, what: 'fd count to settle' }).catch(() => undefined);
  assert.ok(lastFds <= firstFds, `fds grew from ${firstFds} to ${lastFds}`);
  for (const old of pids.slice(0, -1)) {
    assert.equal(isAlive(old), false, `${old} still alive`);
    await waitFor(() => !isZombie(old), { what: `${old} to be reaped` });
  }
});

test("a successor's child processes inherit none of its sockets", async (t) => {
  const { fixture, port } = await startServer(t);
  const pid = await upgrade(fixture, fixture.pid);
  const res = await request({ port, path: '/child-fds' });
  assert.equal(res.json.pid, pid, 'answered by the successor');
  // The inherited listener and readiness socket sit at fds 3… in the successor; a child of it
  // (a shell here) must not get them, or it would keep the port open after the service stops.
  const sockets = res.json.fds.filter((line) => line.includes('socket:'));
  assert.deepEqual(sockets, [], `the child holds ${JSON.stringify(res.json.fds)}`);
});

test('two upgrade triggers at once start one upgrade', async (t) => {
  const { fixture, port } = await startServer(t);
  process.kill(fixture.pid, 'SIGUSR2');
  process.kill(fixture.pid, 'SIGUSR2');
  await fixture.waitForEvent({ event: 'upgrade-ready' });
  await waitFor(() => !isAlive(fixture.pid), { what: 'old process to exit' });
  const starts = fixture.events.filter((e) => e.event === 'upgrade-start');
  const successors = fixture.events.filter((e) => e.event === 'ready' && e.pid !== fixture.pid);
  assert.equal(starts.length, 1);
  assert.equal(successors.length, 1);
  assert.equal(await servingPid({ port }), successors[0].pid);
});

test('SIGTERM drains: the in-flight request completes, the PID file is removed, exit code 0', async (t) => {
  const pidFile = join(tempDir(), 'app.pid');
  const { fixture, port } = await startServer(t, { PID_FILE: pidFile });
  const slow = request({ port, path: '/slow?ms=800' });
  // A request sent after the slow one and answered proves the slow one reached the server.
  await request({ port, path: '/' });
  process.kill(fixture.pid, 'SIGTERM');
  const res = await slow;
  assert.equal(res.status, 200);
  assert.equal(res.headers.connection, 'close');
  const { code } = await fixture.exited;
  assert.equal(code, 0);
  assert.equal(existsSync(pidFile), false, 'PID file removed');
  const end = fixture.events.find((e) => e.event === 'drain-end');
  assert.equal(end.reason, 'stop');
  assert.equal(end.forced, 0);
  await assert.rejects(request({ port, path: '/' }), /ECONNREFUSED/);
});

test('a request longer than drainTimeout is cut at the deadline and the process exits', async (t) => {
  const { fixture, port } = await startServer(t, { DRAIN_TIMEOUT: '300' });
  const slow = request({ port, path: '/slow?ms=60000' }).then(
    () => 'answered',
    (error) => error.code ?? error.message,
  );
  await request({ port, path: '/' });
  process.kill(fixture.pid, 'SIGTERM');
  const { code } = await fixture.exited;
  assert.equal(code, 0);
  assert.equal(await slow, 'ECONNRESET');
  const end = fixture.events.find((e) => e.event === 'drain-end');
  assert.equal(end.forced, 1);
});

test('a unix socket listener survives upgrades, its file kept, and is removed at the final stop', async (t) => {
  const socketPath = join(tempDir(), 'app.sock');
  const { fixture } = await startServer(t, { SOCKET_PATH: socketPath });
  assert.equal(await servingPid({ socketPath }), fixture.pid);
  const second = await upgrade(fixture, fixture.pid);
  assert.ok(existsSync(socketPath), 'socket file kept after the handoff');
  assert.equal(await servingPid({ socketPath }), second);
  const third = await upgrade(fixture, second);
  assert.equal(await servingPid({ socketPath }), third);
  process.kill(third, 'SIGTERM');
  await waitFor(() => !isAlive(third), { what: 'final stop' });
  assert.equal(existsSync(socketPath), false, 'socket file removed at the final stop');
});

test('an upgrade follows a switched `current` symlink to the new release', async (t) => {
  const root = tempDir();
  const { mkdirSync, renameSync, symlinkSync } = await import('node:fs');
  const { FIXTURE } = await import('./helpers.mjs');
  for (const version of ['v1', 'v2']) {
    mkdirSync(join(root, 'releases', version), { recursive: true });
    // Each release's entry point sets its version, then runs the shared fixture.
    writeFileSync(
      join(root, 'releases', version, 'server.mjs'),
      `process.env.APP_VERSION = '${version}';\nawait import(${JSON.stringify(FIXTURE)});\n`,
    );
  }
  const current = join(root, 'current');
  symlinkSync(join(root, 'releases', 'v1'), current);
  // Started as an operator would: `cd /srv/app/current && node server.mjs` (the shell sets PWD).
  const { fixture, port } = await startServer(t, { PWD: current }, { script: 'server.mjs', cwd: current });
  assert.equal((await request({ port })).json.version, 'v1');
  // A deploy switches the symlink atomically.
  symlinkSync(join(root, 'releases', 'v2'), join(root, 'current.next'));
  renameSync(join(root, 'current.next'), current);
  const next = await upgrade(fixture, fixture.pid);
  const res = await request({ port });
  assert.equal(res.json.pid, next);
  assert.equal(res.json.version, 'v2');
});

test('a successor that crashes during the old process drain: the old process binds again and serves', async (t) => {
  const behaviour = join(tempDir(), 'behaviour');
  writeFileSync(behaviour, 'ok');
  const pidFile = join(tempDir(), 'app.pid');
  // A 1 s probation, whatever the runner sets: the crash below must come after it.
  const { fixture, port } = await startServer(t, { BEHAVIOUR_FILE: behaviour, PID_FILE: pidFile, GRACE_RESTART_PROBATION: '1000' });
  // A slow request keeps the old process draining while its successor dies, after the
  // successor's 1 s probation (during which the old process does not drain yet).
  const slow = request({ port, path: '/slow?ms=4000' });
  await request({ port });
  writeFileSync(behaviour, 'crash-after-ready:1500');
  process.kill(fixture.pid, 'SIGUSR2');
  const successor = await fixture.waitForEvent((e) => e.event === 'ready' && e.pid !== fixture.pid);
  await fixture.waitForEvent({ event: 'drain-start', pid: fixture.pid });
  await waitFor(() => !isAlive(successor.pid), { what: 'the successor to crash' });
  const failed = await fixture.waitForEvent({ event: 'upgrade-failed' });
  assert.match(failed.message, /exited \(exit code 7\) after it was ready/);
  assert.equal(await servingPid({ port }), fixture.pid, 'the old process serves again');
  assert.equal((await slow).json.pid, fixture.pid);
  assert.ok(isAlive(fixture.pid));
  assert.equal(readFileSync(pidFile, 'utf8').trim(), String(fixture.pid), 'PID file names the serving process again');
  // And it can still be upgraded once the release is fixed.
  writeFileSync(behaviour, 'ok');
  const next = await upgrade(fixture, fixture.pid);
  assert.equal(await servingPid({ port }), next);
});

test('a successor that crashes within its probation: the old process never stopped serving, no connect is refused', async (t) => {
  const behaviour = join(tempDir(), 'behaviour');
  writeFileSync(behaviour, 'ok');
  const { fixture, port } = await startServer(t, { BEHAVIOUR_FILE: behaviour });
  const load = startLoad({ port, connections: 10 });
  t.after(() => load.stop());
  await waitFor(() => load.stats.ok > 200, { what: 'load to flow' });
  writeFileSync(behaviour, 'crash-after-ready:200');
  const after = fixture.events.length;
  process.kill(fixture.pid, 'SIGUSR2');
  const failed = await fixture.waitForEvent({ event: 'upgrade-failed' }, { after });
  assert.match(failed.message, /exited \(exit code 7\) after it was ready/);
  assert.equal(
    fixture.events.slice(after).some((e) => e.event === 'drain-start'),
    false,
    'the old process had not started to drain',
  );
  const ok = load.stats.ok;
  await waitFor(() => load.stats.ok > ok + 200, { what: 'load to flow on the old process' });
  const result = await load.stop();
  // Only requests the successor itself had accepted can fail (reset); never a refused connect.
  assert.equal(result.errors.ECONNREFUSED ?? 0, 0, JSON.stringify(result.errors));
  assert.deepEqual(
    Object.keys(result.errors).filter((k) => k !== 'ECONNRESET'),
    [],
    JSON.stringify(result.errors),
  );
  assert.equal(await servingPid({ port }), fixture.pid);
});
