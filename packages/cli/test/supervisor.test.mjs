// grace-restart run / upgrade / status, as real processes on 127.0.0.1.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, statSync, mkdtempSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { request, startLoad } from '../../../test/helpers/load.mjs';
import { isAlive, runCli as cli, startFixture, waitFor } from '../../../test/helpers/process.mjs';

const BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const APP = fileURLToPath(new URL('../../core/test/fixtures/server.mjs', import.meta.url));
const tempDir = () => mkdtempSync(join(tmpdir(), 'grace-cli-test-'));

/** Starts `grace-restart run`, waits until it serves; returns the supervisor, its port and PID file. */
async function startSupervisor(t, { workers = 2, env = {}, runArgs = [], app = APP, cwd } = {}) {
  const dir = tempDir();
  const pidFile = join(dir, 'sup.pid');
  const supervisor = startFixture(BIN, {
    args: ['run', '--workers', String(workers), '--pid-file', pidFile, ...runArgs, '--', 'node', app],
    env: { PORT: '0', ...env },
    cwd,
  });
  t.after(() => supervisor.cleanup());
  const listening = await supervisor.waitForEvent({ event: 'listening' });
  await waitFor(() => existsSync(pidFile), { what: 'the supervisor PID file' });
  return { supervisor, port: listening.address.port, pidFile, dir };
}

const workerPids = async (pidFile) => JSON.parse((await cli(['status', '--pid-file', pidFile, '--json'])).stdout).workers.map((w) => w.pid);

test('10 rolling upgrades of 2 workers under keep-alive load: no failed request, the supervisor keeps its pid', async (t) => {
  const { supervisor, port, pidFile } = await startSupervisor(t, { workers: 2 });
  const load = startLoad({ port, connections: 20 });
  await waitFor(() => load.stats.ok > 300, { what: 'load to flow' });
  const seen = new Set(await workerPids(pidFile));
  for (let i = 0; i < 10; i++) {
    const result = await cli(['upgrade', '--pid-file', pidFile]);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(result.stdout, new RegExp(`upgraded to generation ${i + 2}`));
    const ok = load.stats.ok;
    await waitFor(() => load.stats.ok > ok + 100, { what: 'load to flow after the upgrade' });
  }
  const stats = await load.stop();
  assert.equal(stats.failed, 0, JSON.stringify(stats));
  // The worker the last upgrade retired may still be draining for a moment.
  const now = await waitFor(
    async () => {
      const pids = await workerPids(pidFile);
      return pids.length === 2 ? pids : undefined;
    },
    { what: 'the retired worker to finish its drain' },
  );
  assert.equal(now.length, 2);
  for (const pid of now) assert.ok(!seen.has(pid), 'workers were replaced');
  assert.ok(isAlive(supervisor.pid), 'the supervisor still runs, same pid');
  assert.equal((await request({ port })).status, 200);
});

test('a watched symlink switched to a new release makes the workers serve it', async (t) => {
  const root = tempDir();
  for (const version of ['v1', 'v2']) {
    mkdirSync(join(root, 'releases', version), { recursive: true });
    writeFileSync(
      join(root, 'releases', version, 'server.mjs'),
      `process.env.APP_VERSION = '${version}';\nawait import(${JSON.stringify(APP)});\n`,
    );
  }
  const current = join(root, 'current');
  symlinkSync(join(root, 'releases', 'v1'), current);
  const { supervisor, port } = await startSupervisor(t, {
    workers: 1,
    app: 'server.mjs',
    cwd: current,
    env: { PWD: current },
    runArgs: ['--watch', current, '--watch-interval', '100'],
  });
  assert.equal((await request({ port })).json.version, 'v1');
  symlinkSync(join(root, 'releases', 'v2'), join(root, 'next'));
  renameSync(join(root, 'next'), current);
  await waitFor(async () => (await request({ port })).json.version === 'v2', { what: 'v2 to serve' });
  assert.ok(isAlive(supervisor.pid));
});

test('a release that crashes at boot: old workers keep serving and upgrade exits non-zero', async (t) => {
  const behaviour = join(tempDir(), 'behaviour');
  writeFileSync(behaviour, 'ok');
  const { port, pidFile } = await startSupervisor(t, { workers: 2, env: { BEHAVIOUR_FILE: behaviour } });
  const before = await workerPids(pidFile);
  const load = startLoad({ port, connections: 10 });
  await waitFor(() => load.stats.ok > 100, { what: 'load to flow' });
  writeFileSync(behaviour, 'crash-at-boot');
  const result = await cli(['upgrade', '--pid-file', pidFile]);
  assert.equal(result.code, 1);
  assert.match(result.stdout, /upgrade failed .* exited \(exit code 3\) before it was ready/);
  const ok = load.stats.ok;
  await waitFor(() => load.stats.ok > ok + 100, { what: 'old workers to keep serving' });
  const stats = await load.stop();
  assert.equal(stats.failed, 0, JSON.stringify(stats));
  assert.deepEqual((await workerPids(pidFile)).sort(), before.sort());
});

test('an upgrade cut short by a stop of the supervisor: exit 1, or 0 under systemd (INVOCATION_ID), whose stop it was', async (t) => {
  for (const [env, expected] of [
    [{}, 1],
    [{ INVOCATION_ID: 'f00d' }, 0],
  ]) {
    const behaviour = join(tempDir(), 'behaviour');
    writeFileSync(behaviour, 'ok');
    const { supervisor, pidFile } = await startSupervisor(t, { workers: 1, env: { BEHAVIOUR_FILE: behaviour } });
    writeFileSync(behaviour, 'slow-boot:4000');
    const after = supervisor.stderr.length;
    const upgrading = cli(['upgrade', '--pid-file', pidFile], { env: { ...process.env, ...env } });
    await waitFor(() => supervisor.stderr.slice(after).includes('upgrade started'), { what: 'the upgrade to start' });
    process.kill(supervisor.pid, 'SIGTERM');
    const result = await upgrading;
    assert.equal(result.code, expected, result.stdout + result.stderr);
    assert.match(result.stdout, /upgrade failed after \d+ ms, still serving generation 1: .*the supervisor is stopping/);
    assert.deepEqual(await supervisor.exited, { code: 0, signal: null });
  }
});

test('a stop signal to a waiting `grace-restart upgrade` ends the wait, not the upgrade: exit 143, or 0 for SIGTERM under systemd (INVOCATION_ID), which is stopping the unit', async (t) => {
  const behaviour = join(tempDir(), 'behaviour');
  writeFileSync(behaviour, 'ok');
  const { supervisor, pidFile } = await startSupervisor(t, { workers: 1, env: { BEHAVIOUR_FILE: behaviour } });
  writeFileSync(behaviour, 'slow-boot:4000');
  for (const [env, expected] of [
    [{}, 143],
    [{ INVOCATION_ID: 'f00d' }, 0],
  ]) {
    const after = supervisor.stderr.length;
    const waiting = spawn(process.execPath, [BIN, 'upgrade', '--pid-file', pidFile], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    waiting.stdout.on('data', (d) => (stdout += d));
    const exited = new Promise((resolve) => waiting.once('exit', (code, signal) => resolve({ code, signal })));
    await waitFor(() => supervisor.stderr.slice(after).includes('upgrade started'), { what: 'the upgrade to start' });
    waiting.kill('SIGTERM');
    assert.deepEqual(await exited, { code: expected, signal: null }, stdout);
    assert.match(stdout, /stopped waiting \(SIGTERM\); the upgrade of [0-9]+ is the service's to finish or abort/);
    // The upgrade itself goes on and lands.
    const generation = expected === 143 ? 2 : 3;
    await waitFor(async () => JSON.parse((await cli(['status', '--pid-file', pidFile, '--json'])).stdout).generation === generation, {
      timeout: 30_000,
      what: `generation ${generation} to serve`,
    });
  }
});

test('a killed worker is restarted', async (t) => {
  const { pidFile, port } = await startSupervisor(t, { workers: 2 });
  const [victim, survivor] = await workerPids(pidFile);
  process.kill(victim, 'SIGKILL');
  const now = await waitFor(
    async () => {
      const pids = await workerPids(pidFile);
      return pids.length === 2 && !pids.includes(victim) ? pids : undefined;
    },
    { what: 'a replacement worker' },
  );
  assert.ok(now.includes(survivor));
  assert.equal((await request({ port })).status, 200);
});

test('SIGTERM drains every worker, removes the PID file and exits 0', async (t) => {
  const { supervisor, pidFile, port } = await startSupervisor(t, { workers: 2 });
  const workers = await workerPids(pidFile);
  const slow = request({ port, path: '/slow?ms=700' });
  await request({ port });
  process.kill(supervisor.pid, 'SIGTERM');
  const res = await slow;
  assert.equal(res.status, 200);
  assert.equal((await supervisor.exited).code, 0);
  for (const pid of workers) assert.equal(isAlive(pid), false);
  assert.equal(existsSync(pidFile), false);
});

test('status prints the generation and each worker', async (t) => {
  const { supervisor, pidFile } = await startSupervisor(t, { workers: 2 });
  const result = await cli(['status', '--pid', String(supervisor.pid)]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, new RegExp(`supervisor ${supervisor.pid}: running, generation 1`));
  for (const pid of await workerPids(pidFile)) assert.match(result.stdout, new RegExp(`\\n  ${pid} +\\d +1 +ready`));
  // The control socket is private: 0600 in a 0700 directory owned by us.
  const socket = join(tmpdir(), `grace-restart-${process.getuid()}`, `${supervisor.pid}.sock`);
  assert.equal(statSync(socket).mode & 0o777, 0o600);
  assert.equal(statSync(join(socket, '..')).mode & 0o777, 0o700);
});

test('a control directory that others can enter is refused', async () => {
  const dir = tempDir();
  chmodSync(dir, 0o755);
  const result = await cli(['status', '--pid', String(process.pid), '--control-dir', dir]);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /must be a directory owned by this user with mode 0700/);
});

test('upgrade against a self-upgrading process reports the new pid', async (t) => {
  const pidFile = join(tempDir(), 'app.pid');
  const app = startFixture(APP, { env: { PID_FILE: pidFile } });
  t.after(() => app.cleanup());
  await app.waitForEvent({ event: 'ready' });
  const result = await cli(['upgrade', '--pid-file', pidFile]);
  assert.equal(result.code, 0, result.stdout + result.stderr);
  const successor = await app.waitForEvent((e) => e.event === 'ready' && e.pid !== app.pid);
  // Answered on the process's own control socket, like a supervisor's.
  assert.match(
    result.stdout,
    new RegExp(`upgraded to generation 2 in \\d+ ms, and served through its \\d+ ms probation\n  slot 0: ${app.pid} -> ${successor.pid}`),
  );
});

test('upgrade against a process without a control socket falls back to SIGUSR2 and the PID file', async (t) => {
  const pidFile = join(tempDir(), 'app.pid');
  const app = startFixture(APP, { env: { PID_FILE: pidFile, CONTROL_DIR: 'off' } });
  t.after(() => app.cleanup());
  await app.waitForEvent({ event: 'ready' });
  const result = await cli(['upgrade', '--pid-file', pidFile]);
  assert.equal(result.code, 0, result.stdout + result.stderr);
  const successor = await app.waitForEvent((e) => e.event === 'ready' && e.pid !== app.pid);
  assert.match(result.stdout, new RegExp(`upgraded: ${app.pid} -> ${successor.pid}`));
});

// Seen in CI: a test process SIGKILLed earlier left <pid>.sock, and the app started later with
// the same pid made upgrade fail with ECONNREFUSED instead of falling back to SIGUSR2.
test('a stale control socket (left by a SIGKILLed process that had the same pid) counts as none', async (t) => {
  const dir = tempDir();
  const pidFile = join(dir, 'app.pid');
  const app = startFixture(APP, { env: { PID_FILE: pidFile, CONTROL_DIR: 'off' } });
  t.after(() => app.cleanup());
  await app.waitForEvent({ event: 'ready' });
  // What the SIGKILLed process leaves: the socket file, with nobody accepting on it.
  const stale = join(dir, `${app.pid}.sock`);
  spawnSync(process.execPath, [
    '-e',
    `require('node:net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`,
  ]);
  assert.ok(existsSync(stale), 'the stale socket file is there');
  const status = await cli(['status', '--pid', String(app.pid), '--control-dir', dir]);
  assert.equal(status.code, 0, status.stdout + status.stderr);
  assert.match(status.stdout, /running, without a control socket/);
  const supervisorUpgrade = await cli(['upgrade', '--supervisor', '--pid', String(app.pid), '--control-dir', dir]);
  assert.equal(supervisorUpgrade.code, 1);
  assert.match(supervisorUpgrade.stderr, /has no control socket at .* that answers: it is not a grace-restart run supervisor/);
  const result = await cli(['upgrade', '--pid-file', pidFile, '--control-dir', dir]);
  assert.equal(result.code, 0, result.stdout + result.stderr);
  const successor = await app.waitForEvent((e) => e.event === 'ready' && e.pid !== app.pid);
  assert.match(result.stdout, new RegExp(`upgraded: ${app.pid} -> ${successor.pid}`));
});

test('bad input gets a clear message and a non-zero exit', async () => {
  const dir = tempDir();
  // A pid that certainly belonged to a process that is gone.
  const deadPid = spawnSync(process.execPath, ['-e', '']).pid;
  const cases = [
    [[], 2, /Usage:/],
    [['launch'], 2, /unknown command "launch"/],
    [['run', '--wrokers', '2', '--', 'node', APP], 2, /unknown option --wrokers for "run"; its options are --workers, /],
    [['run', '--', 'python3', 'app.py'], 2, /starts Node\.js apps: give "-- node \[node options\] <script>".*not "python3"/],
    [['--version'], 0, /^\d+\.\d+\.\d+\n$/],
    [['run', '--workers', 'two', '--', 'node', APP], 2, /--workers must be a whole number/],
    [['run'], 2, /missing the app to run/],
    // No target given: looked up in the control directory (an empty one here: nothing answers).
    [['upgrade', '--control-dir', dir], 2, /give --pid-file PATH or --pid N: no grace-restart process of this user answers in /],
    [['upgrade', '--pid-file', join(dir, 'nope.pid')], 1, /cannot read a pid from .*nope\.pid/],
    [['status', '--pid', String(deadPid)], 1, new RegExp(`no process ${deadPid} is running`)],
    [['status', '--pid', '999999999'], 2, /--pid must be a whole number from 0 to/],
    [['upgrade', '--pid', '0'], 2, /--pid 0 cannot name a grace-restart process/],
    // PID 1 is the supervisor in a container, but init here: not signalled, refused with the reason.
    [
      ['upgrade', '--pid', '1', '--control-dir', dir],
      2,
      /--pid 1 has no grace-restart control socket .*: it is this machine's or container's init/,
    ],
    [['run', '--ready-timeout', '3000000000', '--', 'node', APP], 2, /--ready-timeout must be a whole number from 0 to 2147483647/],
    [['run', '--', 'node', join(dir, 'missing.mjs')], 2, /cannot find the app to run/],
  ];
  for (const [args, code, message] of cases) {
    const result = await cli(args);
    assert.equal(result.code, code, `${args.join(' ')}: ${result.stderr}`);
    assert.match(result.stdout + result.stderr, message, args.join(' '));
    assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
  }
  writeFileSync(join(dir, 'garbage.pid'), 'not a pid');
  const garbage = await cli(['status', '--pid-file', join(dir, 'garbage.pid')]);
  assert.equal(garbage.code, 1);
  assert.match(garbage.stderr, /cannot read a pid/);
});

/** Runs the CLI as uid nobody through setpriv; why it cannot, when it cannot (not root, or the checkout unreadable to nobody). */
function cliAsNobody(args) {
  if (process.getuid?.() !== 0) return { cannot: 'not root: setpriv cannot change the uid' };
  const asNobody = (nodeArgs) =>
    spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, ...nodeArgs], {
      encoding: 'utf8',
      timeout: 30_000,
    });
  const probe = asNobody(['-e', `require('fs').accessSync(${JSON.stringify(BIN)}, require('fs').constants.R_OK)`]);
  if (probe.error || probe.status !== 0) return { cannot: `nobody cannot read ${BIN}: ${probe.stderr || probe.error?.message}` };
  const result = asNobody([BIN, ...args]);
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

test('a target that runs as another user is named so, not called gone (EPERM is not ESRCH)', (t) => {
  // This test process runs as root: uid nobody may not signal it.
  const result = cliAsNobody(['status', '--pid', String(process.pid), '--json']);
  if (result.cannot) return t.skip(result.cannot);
  assert.equal(result.code, 1, result.stderr);
  assert.match(result.stderr, new RegExp(`process ${process.pid} runs as another user: run this command as its user \\(or root\\)`));
  assert.equal(JSON.parse(result.stdout).code, 'GRACE_ERR_PERMISSION');
});

test('SIGUSR2 sent to a worker is passed on to the supervisor: a rolling upgrade, no crash, no failed request', async (t) => {
  const { supervisor, port, pidFile } = await startSupervisor(t, { workers: 2 });
  const load = startLoad({ port, connections: 10 });
  t.after(() => load.stop());
  await waitFor(() => load.stats.ok > 200, { what: 'load to flow' });
  const before = await workerPids(pidFile);
  process.kill(before[0], 'SIGUSR2');
  await waitFor(async () => (await workerPids(pidFile)).every((pid) => !before.includes(pid)), {
    what: 'both workers replaced',
    timeout: 30_000,
  });
  const okBefore = load.stats.ok;
  await waitFor(() => load.stats.ok > okBefore + 200, { what: 'load to flow on the new workers' });
  const stats = await load.stop();
  assert.equal(stats.failed, 0, JSON.stringify(stats));
  assert.match(supervisor.stderr, /SIGUSR2 reached a worker of grace-restart run: passed on to its supervisor/);
  assert.doesNotMatch(supervisor.stderr, /worker crashed/);
});

test('an app that sets its own pidFile under grace-restart run is told it is not written', async (t) => {
  const dir = tempDir();
  const appPidFile = join(dir, 'app.pid');
  const { supervisor } = await startSupervisor(t, { workers: 1, env: { PID_FILE: appPidFile } });
  await waitFor(
    () => /pidFile is not written under grace-restart run: the supervisor's --pid-file names the service/.test(supervisor.stderr),
    { what: 'the warning' },
  );
  assert.equal(existsSync(appPidFile), false);
});

test('with --json, a failure of the command line also prints its code on stdout', async () => {
  const dir = tempDir();
  const cases = [
    [['status', '--pid-file', join(dir, 'nope.pid'), '--json'], 1, 'GRACE_ERR_PID_FILE'],
    [['upgrade', '--control-dir', dir, '--json'], 2, 'GRACE_ERR_NO_TARGET'],
    [['upgrade', '--pid', '0', '--json'], 2, 'GRACE_ERR_USAGE'],
    [['status', '--pidd', '3', '--json'], 2, 'GRACE_ERR_USAGE'],
  ];
  for (const [args, code, errorCode] of cases) {
    const result = await cli(args);
    assert.equal(result.code, code, `${args.join(' ')}: ${result.stderr}`);
    const line = JSON.parse(result.stdout);
    assert.equal(line.ok, false);
    assert.equal(line.code, errorCode, args.join(' '));
    assert.equal(`grace-restart: ${line.error}`, result.stderr.split('\n')[0], 'the same message on stderr');
  }
});

test("--help states the defaults the flags use, core's for the options they share with createGrace", async () => {
  const { OPTION_DEFAULTS } = await import('@grace-restart/core/internal');
  const { stdout, code } = await cli(['--help']);
  assert.equal(code, 0);
  for (const [flag, option] of [
    ['--ready-timeout', 'readyTimeout'],
    ['--drain-timeout', 'drainTimeout'],
    ['--shutdown-delay', 'shutdownDelay'],
  ]) {
    assert.match(stdout, new RegExp(`${flag} MS .*\\(default ${OPTION_DEFAULTS[option]}\\)`), flag);
  }
  assert.match(stdout, new RegExp(`never got ready \\(default ${OPTION_DEFAULTS.killTimeout}\\)`), '--kill-timeout');
});
