// The lifecycle outside the happy path, one reproduction per test, each a real process
// asserted from outside (issue #10): a stop during a drain, crashes under the supervisor,
// SIGHUP, unix sockets under the supervisor, hook deadlines, a dropped listener, the CLI
// against a self-upgrading app, and the control socket's life.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startApp } from './helpers/app-process.mjs';
import { request } from './helpers/load.mjs';
import { freePort, isAlive, runCli as cli, startFixture, waitFor } from './helpers/process.mjs';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const BIN = join(ROOT, 'packages/cli/dist/bin.js');
const APP = join(ROOT, 'packages/core/test/fixtures/server.mjs');
const EXPRESS = join(ROOT, 'examples/express/dist/server.js');
const CONTROL_DIR = join(tmpdir(), `grace-restart-${process.getuid()}`);
const tempDir = () => mkdtempSync(join(tmpdir(), 'grace-lifecycle-'));

/** Whether something accepts connections on 127.0.0.1:port. */
function accepts(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => socket.destroy() && resolve(true));
    socket.once('error', () => resolve(false));
  });
}

/** Starts `grace-restart run` on the core fixture; resolves once it serves. */
async function startSupervisor(t, { workers = 1, env = {}, runArgs = [] } = {}) {
  const dir = tempDir();
  const pidFile = join(dir, 'sup.pid');
  const supervisor = startFixture(BIN, {
    args: ['run', '--workers', String(workers), '--pid-file', pidFile, ...runArgs, '--', 'node', APP],
    env: { PORT: '0', ...env },
  });
  t.after(() => supervisor.cleanup());
  const listening = await supervisor.waitForEvent({ event: 'listening' });
  await waitFor(() => existsSync(pidFile), { what: 'the supervisor PID file' });
  return { supervisor, port: listening.address?.port, pidFile, dir };
}

const status = async (pidFile) => JSON.parse((await cli(['status', '--pid-file', pidFile, '--json'])).stdout);
const readyWorkers = async (pidFile) => (await status(pidFile)).workers.filter((w) => w.state === 'ready').map((w) => w.pid);

test('a stop during the drain after an upgrade is not forgotten: both processes exit 0 and nothing serves', async (t) => {
  // One keep-alive connection keeps the old process draining for idleGrace: it must not move
  // to the successor, or the drain could end before the stop arrives.
  const { app, port, pid: old } = await startApp(t, EXPRESS, { GRACE_RESTART_MOVE_CONNECTIONS: '0' });
  const agent = new http.Agent({ keepAlive: true });
  t.after(() => agent.destroy());
  await new Promise((resolve) => http.get({ port, host: '127.0.0.1', agent }, (res) => res.resume().on('end', resolve)));
  process.kill(old, 'SIGUSR2');
  const handoff = await app.waitForEvent({ event: 'upgrade-ready', pid: old });
  await app.waitForEvent({ event: 'drain-start', pid: old });
  // What systemctl stop and Ctrl-C do: every process of the group gets SIGTERM.
  process.kill(old, 'SIGTERM');
  process.kill(handoff.successorPid, 'SIGTERM');
  const exit = await app.exited;
  assert.deepEqual(exit, { code: 0, signal: null }, `old process: ${app.stderr}`);
  await waitFor(() => !isAlive(handoff.successorPid), { what: 'the successor to exit' });
  assert.equal(await accepts(port), false, 'nothing serves after a stop');
  assert.equal(app.events.filter((e) => e.event === 'ready').length, 2, 'no process became ready again');
});

test('SIGTERM to the successor alone during its probation stops the service: the old process does not serve again', async (t) => {
  const { app, port, pid: old } = await startApp(t, EXPRESS, {});
  process.kill(old, 'SIGUSR2');
  const { successorPid } = await app.waitForEvent({ event: 'upgrade-ready', pid: old });
  // `kill -TERM $(cat app.pid)` right after the upgrade: the PID file names the successor.
  process.kill(successorPid, 'SIGTERM');
  assert.deepEqual(await app.exited, { code: 0, signal: null }, `old process: ${app.stderr}`);
  await waitFor(() => !isAlive(successorPid), { what: 'the successor to exit' });
  assert.equal(await accepts(port), false, 'nothing serves after a stop');
});

test('a supervisor whose only worker crashes restarts it, keeps its PID file and serves again', async (t) => {
  // A fixed port: once the only worker is gone the supervisor binds the address anew.
  const { supervisor, port, pidFile } = await startSupervisor(t, { workers: 1, env: { PORT: String(await freePort()) } });
  const [first] = await readyWorkers(pidFile);
  await request({ port, path: '/crash' }).catch(() => undefined);
  const [second] = await waitFor(
    async () => {
      const pids = await readyWorkers(pidFile);
      return pids.length === 1 && pids[0] !== first ? pids : undefined;
    },
    { what: 'a restarted worker' },
  );
  assert.ok(isAlive(supervisor.pid), 'the supervisor still runs');
  assert.equal(existsSync(pidFile), true);
  assert.equal((await request({ port })).json.pid, second);
});

test('a supervisor of two workers killed at once restarts both', async (t) => {
  const { supervisor, port, pidFile } = await startSupervisor(t, { workers: 2, env: { PORT: String(await freePort()) } });
  const before = await readyWorkers(pidFile);
  for (const pid of before) process.kill(pid, 'SIGKILL');
  const after = await waitFor(
    async () => {
      const pids = await readyWorkers(pidFile);
      return pids.length === 2 && pids.every((p) => !before.includes(p)) ? pids : undefined;
    },
    { what: 'two restarted workers' },
  );
  assert.equal(after.length, 2);
  assert.ok(isAlive(supervisor.pid));
  assert.equal((await request({ port })).status, 200);
});

test('a crash loop ends the supervisor with exit code 1, a clear line, and no PID file or worker left', async (t) => {
  const behaviour = join(tempDir(), 'behaviour');
  writeFileSync(behaviour, 'ok');
  const { supervisor, port, pidFile } = await startSupervisor(t, { workers: 1, env: { BEHAVIOUR_FILE: behaviour } });
  const [worker] = await readyWorkers(pidFile);
  writeFileSync(behaviour, 'crash-at-boot'); // every restart now fails at boot
  await request({ port, path: '/crash' }).catch(() => undefined);
  const exit = await supervisor.exited;
  assert.equal(exit.code, 1, supervisor.stderr);
  assert.match(supervisor.stderr, /crash loop: workers crashed 5 times within 60 s/);
  assert.equal(existsSync(pidFile), false, 'PID file removed');
  assert.equal(isAlive(worker), false);
  assert.equal(existsSync(join(CONTROL_DIR, `${supervisor.pid}.sock`)), false, 'control socket removed');
});

test('SIGHUP without onReload is logged and ignored: the process keeps serving, same pid', async (t) => {
  const { app, port, pid } = await startApp(t, APP, { GRACE_RESTART_LOG_LEVEL: 'warn' });
  process.kill(pid, 'SIGHUP');
  await waitFor(() => /ignoring SIGHUP: no onReload hook/.test(app.stderr), { what: 'the ignoring SIGHUP line' });
  assert.ok(isAlive(pid));
  assert.equal((await request({ port })).json.pid, pid);
});

test('SIGHUP to the supervisor reaches onReload in every worker and kills none', async (t) => {
  const { supervisor, pidFile } = await startSupervisor(t, { workers: 2, env: { ON_RELOAD: '1' } });
  const workers = await readyWorkers(pidFile);
  const after = supervisor.events.length;
  process.kill(supervisor.pid, 'SIGHUP');
  for (const pid of workers) await supervisor.waitForEvent({ event: 'reload', pid }, { after });
  assert.deepEqual((await readyWorkers(pidFile)).sort(), workers.sort());
});

test('SIGHUP to the supervisor of workers without onReload kills none', async (t) => {
  const { supervisor, pidFile, port } = await startSupervisor(t, { workers: 2, env: { GRACE_RESTART_LOG_LEVEL: 'warn' } });
  const workers = await readyWorkers(pidFile);
  process.kill(supervisor.pid, 'SIGHUP');
  await waitFor(() => (supervisor.stderr.match(/ignoring SIGHUP: no onReload hook/g) ?? []).length === 2, {
    what: 'both workers to ignore SIGHUP',
  });
  assert.deepEqual((await readyWorkers(pidFile)).sort(), workers.sort());
  assert.equal((await request({ port })).status, 200);
});

test('under the supervisor a unix socket keeps its file across upgrades, and the stop removes it', async (t) => {
  const socketPath = join(tempDir(), 'app.sock');
  const dir = tempDir();
  const pidFile = join(dir, 'sup.pid');
  const supervisor = startFixture(BIN, { args: ['run', '--pid-file', pidFile, '--', 'node', APP], env: { SOCKET_PATH: socketPath } });
  t.after(() => supervisor.cleanup());
  await waitFor(() => existsSync(pidFile), { what: 'the supervisor PID file' });
  for (let i = 0; i < 2; i++) {
    const result = await cli(['upgrade', '--pid-file', pidFile]);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.equal(existsSync(socketPath), true, `the socket file is there after upgrade ${i + 1}`);
    assert.equal((await request({ socketPath })).status, 200);
  }
  process.kill(supervisor.pid, 'SIGTERM');
  assert.equal((await supervisor.exited).code, 0);
  assert.equal(existsSync(socketPath), false, 'removed at the final stop');
});

test('a stop aborts a running rolling upgrade at once, and the upgrade reports why', async (t) => {
  const behaviour = join(tempDir(), 'behaviour');
  writeFileSync(behaviour, 'ok');
  const { supervisor, pidFile } = await startSupervisor(t, {
    workers: 1,
    env: { BEHAVIOUR_FILE: behaviour },
    runArgs: ['--ready-timeout', '120000'],
  });
  writeFileSync(behaviour, 'never-ready');
  const upgrading = cli(['upgrade', '--pid-file', pidFile]);
  await waitFor(async () => (await status(pidFile)).workers.some((w) => w.state === 'starting'), { what: 'the new worker to start' });
  process.kill(supervisor.pid, 'SIGTERM');
  const result = await upgrading;
  assert.equal(result.code, 1);
  assert.match(result.stdout, /was stopped before it was ready: the supervisor is stopping/);
  assert.equal((await supervisor.exited).code, 0);
});

test('a second stop signal ends the supervisor at once with 128 + the signal number, as core does', async (t) => {
  // An idle keep-alive connection keeps the worker's drain going for IDLE_GRACE.
  const { supervisor, port, pidFile } = await startSupervisor(t, { workers: 1, env: { IDLE_GRACE: '60000' } });
  const agent = new http.Agent({ keepAlive: true });
  t.after(() => agent.destroy());
  await new Promise((resolve) => http.get({ port, host: '127.0.0.1', agent }, (res) => res.resume().on('end', resolve)));
  process.kill(supervisor.pid, 'SIGTERM');
  await supervisor.waitForEvent({ event: 'drain-start' });
  process.kill(supervisor.pid, 'SIGTERM');
  assert.equal((await supervisor.exited).code, 143);
  assert.equal(existsSync(pidFile), false, 'no stale PID file (found by the lifecycle driver, supervisor seed 15)');
});

test('an onShutdown hook that never settles is left behind at hookTimeout: the process still exits 0', async (t) => {
  const { app, pid } = await startApp(t, APP, { HANG_SHUTDOWN: '1', HOOK_TIMEOUT: '300', GRACE_RESTART_LOG_LEVEL: 'warn' });
  process.kill(pid, 'SIGTERM');
  await app.waitForEvent({ event: 'shutdown', pid });
  assert.deepEqual(await app.exited, { code: 0, signal: null });
  assert.match(app.stderr, /onShutdown hook still running after 300 ms: going on without it/);
});

test('a logger with flush() is flushed before the process exits', async (t) => {
  const { app, pid } = await startApp(t, APP, { FLUSH_LOGGER: '1' });
  process.kill(pid, 'SIGTERM');
  await app.exited;
  assert.ok(
    app.events.some((e) => e.event === 'logger-flushed' && e.pid === pid),
    'flush() ran to its callback before exit',
  );
});

test('a SIGTERM in the last moments of an old process, as it flushes its logs after a handoff, does not kill it: it exits 0', async (t) => {
  // systemd and Ctrl-C signal the whole group: an old process that has just finished its drain
  // can get the stop in its last moments, and a default SIGTERM would end it by the signal.
  const release = join(tempDir(), 'release');
  const { app, pid: old } = await startApp(t, APP, { FLUSH_LOGGER: 'hold', FLUSH_RELEASE_FILE: release });
  process.kill(old, 'SIGUSR2');
  await app.waitForEvent({ event: 'logger-flushing', pid: old });
  process.kill(old, 'SIGTERM');
  writeFileSync(release, '');
  assert.deepEqual(await app.exited, { code: 0, signal: null }, app.stderr);
  assert.ok(
    app.events.some((e) => e.event === 'logger-flushed' && e.pid === old),
    'the flush was not cut short',
  );
});

test('with autoReady, a release that drops a listener still gets ready; the dropped address is closed', async (t) => {
  const behaviour = join(tempDir(), 'behaviour');
  writeFileSync(behaviour, 'ok');
  const second = await freePort();
  const { app, port, pid } = await startApp(t, APP, { BEHAVIOUR_FILE: behaviour, SECOND_PORT: String(second) });
  assert.equal((await request({ port: second })).json.listener, 'second');
  writeFileSync(behaviour, 'drop-second');
  process.kill(pid, 'SIGUSR2');
  // (This fixture's upgrade-ready line carries the successor's pid.)
  const outcome = await app.waitForEvent((e) => e.event === 'upgrade-ready' || e.event === 'upgrade-failed');
  assert.equal(outcome.event, 'upgrade-ready', JSON.stringify(outcome));
  await app.exited;
  assert.equal((await request({ port })).json.pid, outcome.pid);
  assert.equal(await accepts(second), false, 'the dropped listener is closed');
});

test('grace-restart upgrade against a self-upgrading app reports a rollback with its reason and exit code 1', async (t) => {
  const behaviour = join(tempDir(), 'behaviour');
  writeFileSync(behaviour, 'ok');
  const pidFile = join(tempDir(), 'app.pid');
  const { port, pid } = await startApp(t, APP, { BEHAVIOUR_FILE: behaviour, PID_FILE: pidFile });
  writeFileSync(behaviour, 'crash-at-boot');
  const result = await cli(['upgrade', '--pid-file', pidFile]);
  assert.equal(result.code, 1, result.stdout + result.stderr);
  assert.match(
    result.stdout,
    /upgrade failed after \d+ ms, still serving generation 1: successor \d+ exited \(exit code 3\) before it was ready \(exited\)/,
  );
  assert.equal((await request({ port })).json.pid, pid);
  const self = await cli(['status', '--pid-file', pidFile]);
  assert.match(self.stdout, new RegExp(`process ${pid}: ready, generation 1`));
});

test('the control socket of a self-upgrading app is 0600 from the first sight and gone after a clean stop', async (t) => {
  const app = startFixture(APP, { env: { PORT: '0' } });
  t.after(() => app.cleanup());
  const socket = join(CONTROL_DIR, `${app.pid}.sock`);
  // Looked at as early as possible: there must be no window with the umask's mode.
  await waitFor(() => existsSync(socket), { interval: 1, what: 'the control socket' });
  assert.equal(statSync(socket).mode & 0o777, 0o600);
  await app.waitForEvent({ event: 'ready' });
  process.kill(app.pid, 'SIGTERM');
  assert.equal((await app.exited).code, 0);
  assert.equal(existsSync(socket), false);
});

test('the supervisor removes its control socket after a clean stop', async (t) => {
  const { supervisor } = await startSupervisor(t, { workers: 1 });
  const socket = join(CONTROL_DIR, `${supervisor.pid}.sock`);
  assert.equal(statSync(socket).mode & 0o777, 0o600);
  process.kill(supervisor.pid, 'SIGTERM');
  assert.equal((await supervisor.exited).code, 0);
  assert.equal(existsSync(socket), false);
});
