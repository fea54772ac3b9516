// Replacing the supervisor process itself (`grace-restart upgrade --supervisor`, SIGUSR1): a
// new supervisor from the code on disk takes the listening sockets, starts its workers, and
// the old one drains and exits. Real processes on 127.0.0.1, asserted from outside: pids, the
// PID file, responses under keep-alive load, exit codes, who holds the listening socket.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, readlinkSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { request, startLoad } from '../../../test/helpers/load.mjs';
import { freePort, isAlive, runCli, startFixture, waitFor } from '../../../test/helpers/process.mjs';

const BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const APP = fileURLToPath(new URL('../../core/test/fixtures/server.mjs', import.meta.url));
const TWO_LISTENERS = fileURLToPath(new URL('../../../test/fixtures/two-listeners.mjs', import.meta.url));

const cli = (args, options) => runCli(args, { timeout: 90_000, ...options });

const readPid = (pidFile) => Number(readFileSync(pidFile, 'utf8'));
const status = async (pidFile) => JSON.parse((await cli(['status', '--pid-file', pidFile, '--json'])).stdout);

/**
 * `grace-restart run` on a fixed port (a port-0 listener gets a new port from a new supervisor),
 * 2 workers. Every supervisor and worker seen is SIGKILLed at the end.
 */
async function startSupervisor(t, { app = APP, env = {}, workers = 2, listen = false } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'grace-sup-upgrade-'));
  const pidFile = join(dir, 'sup.pid');
  const port = await freePort();
  const held = listen ? ['--listen', `127.0.0.1:${port}`] : [];
  const sup = startFixture(BIN, {
    args: ['run', '--workers', String(workers), '--pid-file', pidFile, ...held, '--', 'node', app],
    env: { PORT: String(port), HOST: '127.0.0.1', ...env },
  });
  const supervisors = new Set([sup.pid]);
  t.after(async () => {
    for (const pid of supervisors) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    sup.cleanup();
  });
  await waitFor(() => existsSync(pidFile), { what: `the supervisor to serve: ${sup.stderr}` });
  return { sup, pidFile, port, dir, supervisors };
}

/** Holds the listening socket of `port`: the pid's fds include the inode /proc/net/tcp lists as LISTEN there. */
function listensOn(pid, port) {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const inodes = readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((c) => c[1]?.endsWith(`:${hex}`) && c[3] === '0A')
    .map((c) => c[9]);
  return readdirSync(`/proc/${pid}/fd`).some((fd) => {
    try {
      return inodes.some((inode) => readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`);
    } catch {
      return false;
    }
  });
}

/**
 * Nothing holds the socket any more. /proc shows a process as a zombie while its other threads
 * still close its fds: a connect in that moment is accepted and reset, so wait for the refusal.
 */
function refusedAfterStop(port) {
  return waitFor(
    () =>
      request({ port, timeout: 2_000 }).then(
        () => false,
        (error) => error.code === 'ECONNREFUSED',
      ),
    { what: 'connects to be refused after the final stop' },
  );
}

test('3 supervisor upgrades under keep-alive load: no failed request; each time the PID file names the new supervisor, which holds the socket, and the old one exits', async (t) => {
  const { sup, pidFile, port, supervisors } = await startSupervisor(t);
  const load = startLoad({ port, connections: 20 });
  t.after(() => load.stop());
  await waitFor(() => load.stats.ok > 300, { what: 'load to flow' });
  let old = sup.pid;
  for (let i = 0; i < 3; i++) {
    const result = await cli(['upgrade', '--supervisor', '--pid-file', pidFile]);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const now = readPid(pidFile);
    supervisors.add(now);
    assert.notEqual(now, old);
    assert.match(result.stdout, new RegExp(`supervisor upgraded: ${old} -> ${now} in [0-9]+ ms, serving generation ${i + 2}`));
    assert.ok(listensOn(now, port), 'the new supervisor holds the listening socket');
    await waitFor(() => !isAlive(old), { what: `old supervisor ${old} to drain and exit` });
    if (old === sup.pid) assert.deepEqual(await sup.exited, { code: 0, signal: null }, sup.stderr.slice(-2000));
    const s = await status(pidFile);
    assert.equal(s.pid, now);
    assert.equal(s.generation, i + 2);
    assert.deepEqual(
      s.workers.map((w) => w.generation),
      [i + 2, i + 2],
    );
    const ok = load.stats.ok;
    await waitFor(() => load.stats.ok > ok + 200, { what: 'load to flow after the supervisor upgrade' });
    old = now;
  }
  // The new supervisor upgrades its workers as ever.
  const rolling = await cli(['upgrade', '--pid-file', pidFile]);
  assert.equal(rolling.code, 0, rolling.stdout + rolling.stderr);
  const stats = await load.stop();
  t.diagnostic(`${stats.ok} requests over 3 supervisor upgrades and 1 rolling upgrade, ${stats.failed} failed`);
  assert.equal(stats.failed, 0, JSON.stringify(stats.errors));
  process.kill(old, 'SIGTERM');
  await waitFor(() => !isAlive(old), { what: 'the last supervisor to stop' });
  assert.equal(existsSync(pidFile), false, 'the PID file is removed at the final stop');
  await refusedAfterStop(port);
});

test('--listen: the supervisor holds the socket from the start; a supervisor upgrade under load hands it on (the new one inherits it, --listen is not bound twice), 0 failed, and the final stop closes it', async (t) => {
  const { sup, pidFile, port, supervisors } = await startSupervisor(t, { listen: true });
  assert.ok(listensOn(sup.pid, port), 'the first supervisor holds the listening socket');
  const load = startLoad({ port, connections: 20 });
  t.after(() => load.stop());
  await waitFor(() => load.stats.ok > 300, { what: 'load to flow' });
  const result = await cli(['upgrade', '--supervisor', '--pid-file', pidFile]);
  assert.equal(result.code, 0, result.stdout + result.stderr);
  const now = readPid(pidFile);
  supervisors.add(now);
  assert.ok(listensOn(now, port), 'the new supervisor holds the listening socket');
  await waitFor(() => !isAlive(sup.pid), { what: 'the old supervisor to exit' });
  const ok = load.stats.ok;
  await waitFor(() => load.stats.ok > ok + 200, { what: 'load to flow after the supervisor upgrade' });
  const stats = await load.stop();
  assert.equal(stats.failed, 0, JSON.stringify(stats.errors));
  process.kill(now, 'SIGTERM');
  await waitFor(() => !isAlive(now), { what: 'the new supervisor to stop' });
  await refusedAfterStop(port);
});

test('SIGUSR1 upgrades the supervisor too', async (t) => {
  const { sup, pidFile, port, supervisors } = await startSupervisor(t, { workers: 1 });
  process.kill(sup.pid, 'SIGUSR1');
  await waitFor(() => existsSync(pidFile) && readPid(pidFile) !== sup.pid, { what: `a new supervisor: ${sup.stderr.slice(-1500)}` });
  supervisors.add(readPid(pidFile));
  assert.deepEqual(await sup.exited, { code: 0, signal: null });
  assert.equal((await request({ port })).json.generation, 2);
});

test('a new supervisor whose workers crash at boot: the upgrade exits 1 with the reason, the old supervisor serves on and still upgrades its workers', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'grace-sup-upgrade-'));
  const behaviour = join(dir, 'behaviour');
  writeFileSync(behaviour, 'ok');
  const { sup, pidFile, port } = await startSupervisor(t, { env: { BEHAVIOUR_FILE: behaviour } });
  const load = startLoad({ port, connections: 10 });
  t.after(() => load.stop());
  await waitFor(() => load.stats.ok > 100, { what: 'load to flow' });
  writeFileSync(behaviour, 'crash-at-boot');
  const failed = await cli(['upgrade', '--supervisor', '--pid-file', pidFile]);
  assert.equal(failed.code, 1, failed.stdout + failed.stderr);
  assert.match(
    failed.stdout,
    new RegExp(
      `supervisor upgrade failed, ${sup.pid} serves on: the successor [0-9]+ exited \\(exit code 1\\) before it was ready|supervisor upgrade failed, ${sup.pid} serves on: successor [0-9]+ exited \\(exit code 1\\) before it was ready`,
    ),
  );
  assert.equal(readPid(pidFile), sup.pid, 'the PID file still names the old supervisor');
  assert.equal((await status(pidFile)).state, 'running');
  writeFileSync(behaviour, 'ok');
  const rolling = await cli(['upgrade', '--pid-file', pidFile]);
  assert.equal(rolling.code, 0, rolling.stdout + rolling.stderr);
  const stats = await load.stop();
  assert.equal(stats.failed, 0, JSON.stringify(stats.errors));
  assert.ok(isAlive(sup.pid));
});

test('SIGTERM to the old supervisor while the new one starts: the new one is stopped, the old one drains and exits 0, the PID file goes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'grace-sup-upgrade-'));
  const behaviour = join(dir, 'behaviour');
  writeFileSync(behaviour, 'ok');
  const { sup, pidFile } = await startSupervisor(t, { env: { BEHAVIOUR_FILE: behaviour } });
  writeFileSync(behaviour, 'slow-boot:3000');
  const upgrading = cli(['upgrade', '--supervisor', '--pid-file', pidFile]);
  // The new supervisor's workers are booting: they print nothing before they listen.
  await waitFor(() => /supervisor upgrade started/.test(sup.stderr), { what: 'the supervisor upgrade to start' });
  process.kill(sup.pid, 'SIGTERM');
  assert.deepEqual(await sup.exited, { code: 0, signal: null }, sup.stderr.slice(-2000));
  const result = await upgrading;
  assert.notEqual(result.code, 0, 'the upgrade did not land');
  assert.equal(existsSync(pidFile), false, 'no PID file names a process that is gone');
  await waitFor(() => !/\bgrace-restart|bin\.js run/.test(childrenOf(sup.pid)), { what: 'nothing of the service to be left' });
});

/** Command lines of the processes whose parent is `pid` (or were, before it died: re-parented ones are found by their command line). */
function childrenOf(_pid) {
  return readdirSync('/proc')
    .filter((d) => /^[0-9]+$/.test(d))
    .map((d) => {
      try {
        return readFileSync(`/proc/${d}/cmdline`, 'utf8').replace(/\0/g, ' ');
      } catch {
        return '';
      }
    })
    .filter((cmd) => cmd.includes(BIN) && cmd.includes(`sup-upgrade`))
    .join('\n');
}

test('a unix socket bound through cluster: the supervisor upgrade is refused with the reason (cluster would unlink the file), and the old supervisor serves on', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'grace-sup-upgrade-'));
  const socketPath = join(dir, 'admin.sock');
  const { sup, pidFile, port } = await startSupervisor(t, { app: TWO_LISTENERS, env: { SOCKET_PATH: socketPath }, workers: 1 });
  const result = await cli(['upgrade', '--supervisor', '--pid-file', pidFile]);
  assert.equal(result.code, 1, result.stdout + result.stderr);
  assert.match(result.stdout, new RegExp(`the workers listen on the unix socket ${socketPath}, which cluster bound .* socket activation`));
  assert.equal(readPid(pidFile), sup.pid);
  const [tcp, unix] = await Promise.all([request({ port }), request({ socketPath })]);
  assert.equal(unix.json.listener, 'unix');
  assert.equal(unix.json.pid, tcp.json.pid);
  const rolling = await cli(['upgrade', '--pid-file', pidFile]);
  assert.equal(rolling.code, 0, 'worker upgrades are not held after a refusal');
});

test('upgrade --supervisor against a self-upgrading app: a clear refusal, exit 1', async (t) => {
  const port = await freePort();
  const app = startFixture(APP, { env: { PORT: String(port) } });
  t.after(() => app.cleanup());
  await app.waitForEvent({ event: 'ready' });
  const result = await cli(['upgrade', '--supervisor', '--pid', String(app.pid)]);
  assert.equal(result.code, 1);
  assert.match(result.stdout, /this process upgrades itself, it has no supervisor/);
});

test('a supervisor whose parent is a container init (tini): upgrade --supervisor is refused, its exit would end the container', async (t) => {
  // /bin/sh under the name tini: /proc/<pid>/comm is what the refusal reads. `; :` keeps sh from exec'ing node.
  const dir = mkdtempSync(join(tmpdir(), 'grace-sup-upgrade-'));
  const tini = join(dir, 'tini');
  copyFileSync('/bin/sh', tini);
  chmodSync(tini, 0o755);
  const pidFile = join(dir, 'sup.pid');
  const port = await freePort();
  const init = spawn(tini, ['-c', `"${process.execPath}" "${BIN}" run --pid-file "${pidFile}" -- node "${APP}"; :`], {
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: 'ignore',
  });
  t.after(() => {
    if (existsSync(pidFile) && isAlive(readPid(pidFile))) process.kill(readPid(pidFile), 'SIGKILL');
    init.kill('SIGKILL');
  });
  await waitFor(() => existsSync(pidFile), { what: 'the supervisor to serve' });
  const result = await cli(['upgrade', '--supervisor', '--pid-file', pidFile]);
  assert.equal(result.code, 1, result.stdout + result.stderr);
  assert.match(result.stdout, /this supervisor's parent is tini, a container's init, which ends the container when the supervisor exits/);
  assert.equal((await request({ port })).json.generation, 1);
});
