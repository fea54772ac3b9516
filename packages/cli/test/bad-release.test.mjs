// A release that crash-loops after its promotion under `grace-restart run` (issue #28): the
// supervisor goes back to the previous release instead of giving up. Real processes on 127.0.0.1.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, realpathSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { request, startLoad } from '../../../test/helpers/load.mjs';
import { freePort, isAlive, runCli as cli, startFixture, waitFor } from '../../../test/helpers/process.mjs';

const BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const APP = fileURLToPath(new URL('../../core/test/fixtures/server.mjs', import.meta.url));
const LOAD_CONNECTIONS = 10;

/** releases/<version>/server.mjs, each setting its version (and behaviour) before the shared fixture runs. */
function writeReleases(root, behaviours) {
  for (const [version, behaviour] of Object.entries(behaviours)) {
    const dir = join(root, 'releases', version);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'behaviour'), behaviour);
    writeFileSync(
      join(dir, 'server.mjs'),
      `process.env.APP_VERSION = '${version}';\nprocess.env.BEHAVIOUR_FILE = ${JSON.stringify(join(dir, 'behaviour'))};\nawait import(${JSON.stringify(APP)});\n`,
    );
  }
}

function switchCurrent(root, version) {
  symlinkSync(join(root, 'releases', version), join(root, 'next'));
  renameSync(join(root, 'next'), join(root, 'current'));
}

async function startSupervisor(t, { cwd, workers, runArgs = [], port = 0 }) {
  const pidFile = join(mkdtempSync(join(tmpdir(), 'grace-cli-bad-')), 'sup.pid');
  const supervisor = startFixture(BIN, {
    args: ['run', '--workers', String(workers), '--pid-file', pidFile, ...runArgs, '--', 'node', 'server.mjs'],
    env: { PORT: String(port), PWD: cwd },
    cwd,
  });
  t.after(() => supervisor.cleanup());
  const listening = await supervisor.waitForEvent({ event: 'listening' });
  await waitFor(() => existsSync(pidFile), { what: 'the supervisor PID file' });
  return { supervisor, port: listening.address.port, pidFile };
}

/**
 * releases/v1 (good) and v2 (`bad`) under `current` → v1, a supervisor running v1 and keep-alive
 * load flowing; `upgrade()` switches `current` to v2 and runs `grace-restart upgrade`.
 */
async function deployedUnderLoad(t, { bad, workers = 2, runArgs = [], port = 0 }) {
  const root = mkdtempSync(join(tmpdir(), 'grace-cli-releases-'));
  writeReleases(root, { v1: 'ok', v2: bad });
  switchCurrent(root, 'v1');
  const started = await startSupervisor(t, { cwd: join(root, 'current'), workers, runArgs, port });
  const load = startLoad({ port: started.port, connections: LOAD_CONNECTIONS });
  t.after(() => load.stop());
  await waitFor(() => load.stats.ok > 200, { what: 'load to flow' });
  const upgrade = () => {
    switchCurrent(root, 'v2');
    return cli(['upgrade', '--pid-file', started.pidFile]);
  };
  return { ...started, root, load, upgrade };
}

const status = async (pidFile) => JSON.parse((await cli(['status', '--pid-file', pidFile, '--json'])).stdout);
const count = (text, phrase) => text.split(phrase).length - 1;

test('a release whose workers crash 3 s after the upgrade is replaced by the previous release: the service stays up, no connect refused (--listen)', async (t) => {
  // --listen: the supervisor holds the socket, so the moment every worker of the bad release has
  // crashed, connects wait in its backlog for the previous release's first worker.
  const port = await freePort();
  const { supervisor, pidFile, root, load, upgrade } = await deployedUnderLoad(t, {
    bad: 'crash-after-ready:3000',
    port,
    runArgs: ['--listen', `127.0.0.1:${port}`],
  });
  const result = await upgrade();
  // The upgrade itself succeeds: v2's workers are ready; they crash later.
  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.match(result.stdout, /upgraded to generation 2/);

  const rolledBack = await waitFor(
    async () => {
      const s = await status(pidFile);
      return s.lastUpgrade?.trigger === 'rollback' && s.lastUpgrade.ok && s.state === 'running' ? s : undefined;
    },
    { timeout: 60_000, what: 'the rollback to the previous release' },
  );
  assert.equal(rolledBack.generation, 3, 'the rollback is a generation of its own');
  assert.equal(rolledBack.rollbacks, 1);
  // Answers per generation: generation 1 served the load before the upgrade, all of it counted
  // (a retired worker reports its last answers when its drain ends).
  assert.ok(rolledBack.generations.find((g) => g.generation === 1)?.requests > 200, JSON.stringify(rolledBack.generations));
  assert.equal(rolledBack.release, realpathSync(join(root, 'releases', 'v1')));
  assert.equal((await request({ port })).json.version, 'v1');
  assert.match(supervisor.stderr, /bad release: the workers of generation 2 crashed 2 times within \d+ s of its promotion; rolling back/);
  assert.ok(isAlive(supervisor.pid), 'the supervisor serves on');

  const ok = load.stats.ok;
  await waitFor(() => load.stats.ok > ok + 200, { what: 'load to flow on the previous release' });
  const stats = await load.stop();
  // What may fail: per load connection and per crash, the request in flight on the crashing
  // worker (reset). Nothing is refused: the socket never closes.
  const crashes = count(supervisor.stderr, '"worker crashed');
  assert.ok(crashes >= 2, `crashes logged: ${crashes}`);
  t.diagnostic(`load: ${JSON.stringify(stats)}; ${crashes} crashes`);
  assert.deepEqual(
    Object.keys(stats.errors).filter((k) => k !== 'ECONNRESET'),
    [],
    JSON.stringify(stats.errors),
  );
  assert.ok((stats.errors.ECONNRESET ?? 0) <= LOAD_CONNECTIONS * crashes, `${JSON.stringify(stats.errors)} for ${crashes} crashes`);
});

test('--listen on an address the app does not listen on stops the supervisor at start with exit 1 and says why', async () => {
  const root = mkdtempSync(join(tmpdir(), 'grace-cli-listen-'));
  writeReleases(root, { v1: 'ok' });
  const port = await freePort();
  // The app listens on 127.0.0.1:0 (PORT unset); the held socket would never be accepted on.
  const cwd = join(root, 'releases', 'v1');
  const result = await cli(['run', '--listen', `127.0.0.1:${port}`, '--', 'node', 'server.mjs'], {
    cwd,
    env: { ...process.env, PWD: cwd, PORT: '0' },
  });
  assert.equal(result.code, 1, result.stdout + result.stderr);
  assert.match(result.stderr, new RegExp(`--listen 127\\.0\\.0\\.1:${port}: no worker listens there`));
});

test('--listen refuses what is not [HOST:]PORT with an IP host, with exit code 2', async () => {
  for (const value of ['localhost:3000', '3000x', '127.0.0.1:0', '[::1]:70000', '']) {
    const result = await cli(['run', '--listen', value, '--', 'node', APP]);
    assert.equal(result.code, 2, `${value}: ${result.stdout}${result.stderr}`);
    assert.match(result.stderr, /--listen must be PORT, IPV4:PORT or \[IPV6\]:PORT/);
  }
});

test('an upgrade that runs the same directory again warns that it cannot be rolled back to', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'grace-cli-inplace-'));
  writeReleases(root, { v1: 'ok' });
  const { supervisor, pidFile } = await startSupervisor(t, { cwd: join(root, 'releases', 'v1'), workers: 1 });
  const result = await cli(['upgrade', '--pid-file', pidFile]);
  assert.equal(result.code, 0, result.stdout + result.stderr);
  await waitFor(() => supervisor.stderr.includes('files replaced in place cannot be rolled back to'), { what: 'the warning' });
});

test('--max-memory: a worker whose RSS stays above the limit is replaced with no failed request', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'grace-cli-memory-'));
  writeReleases(root, { v1: 'ok' });
  const cwd = join(root, 'releases', 'v1');
  const pidFile = join(root, 'sup.pid');
  const supervisor = startFixture(BIN, {
    args: ['run', '--workers', '1', '--pid-file', pidFile, '--max-memory', '200M', '--', 'node', 'server.mjs'],
    env: { PORT: '0', PWD: cwd },
    cwd,
  });
  t.after(() => supervisor.cleanup());
  const { address } = await supervisor.waitForEvent({ event: 'listening' });
  await waitFor(() => existsSync(pidFile), { what: 'the supervisor PID file' });
  const [before] = (await status(pidFile)).workers.map((w) => w.pid);
  const load = startLoad({ port: address.port, connections: LOAD_CONNECTIONS });
  t.after(() => load.stop());
  await waitFor(() => load.stats.ok > 200, { what: 'load to flow' });
  // One worker: the request lands on it. 300 MiB more puts it well above 200M.
  assert.equal((await request({ port: address.port, path: '/grow?mb=300' })).json.pid, before);
  await waitFor(
    async () => {
      const pids = (await status(pidFile)).workers.map((w) => w.pid);
      return pids.length === 1 && pids[0] !== before;
    },
    { timeout: 30_000, what: 'the worker over the limit to be replaced' },
  );
  assert.match(supervisor.stderr, new RegExp(`worker ${before} uses \\d+ MiB, above --max-memory: replacing it`));
  const ok = load.stats.ok;
  await waitFor(() => load.stats.ok > ok + 200, { what: 'load to flow on the new worker' });
  const stats = await load.stop();
  assert.equal(stats.failed, 0, JSON.stringify(stats.errors));
});

test('--max-memory refuses what it cannot read as a size, with exit code 2', async () => {
  for (const [value, message] of [
    ['lots', /--max-memory must be a size such as 512M or 1G, got "lots"/],
    ['1M', /--max-memory 1M is below 16M/],
  ]) {
    const result = await cli(['run', '--max-memory', value, '--', 'node', APP]);
    assert.equal(result.code, 2, result.stdout + result.stderr);
    assert.match(result.stderr, message);
  }
});

test('a canary answering 500 to one request in ten fails its window: the other workers are never replaced', async (t) => {
  const { port, pidFile, root, load, upgrade } = await deployedUnderLoad(t, {
    bad: 'status-500-tenth',
    runArgs: ['--canary-window', '3000'],
  });
  const result = await upgrade();
  assert.equal(result.code, 1, result.stdout + result.stderr);
  assert.match(
    result.stdout,
    /still serving generation 1: canary failed: \d+\.\d% \(\d+ of \d+\) errors against 0\.0% \(0 of \d+\) for the old generation/,
  );
  const after = await waitFor(
    async () => {
      const s = await status(pidFile);
      return s.workers.length === 2 && s.workers.every((w) => w.generation === 1 && w.state === 'ready') ? s : undefined;
    },
    { what: 'slot 0 back on the old release' },
  );
  assert.equal(after.release, realpathSync(join(root, 'releases', 'v1')));
  for (let i = 0; i < 10; i++) assert.equal((await request({ port })).json.version, 'v1');
  const stats = await load.stop();
  // What fails: the canary's own 500s during its window, one in ten of its answers, on its slot's
  // share of the connections. Nothing else: the rollback moves its connections back.
  assert.deepEqual(
    Object.keys(stats.errors).filter((k) => k !== 'http 500'),
    [],
    JSON.stringify(stats.errors),
  );
  assert.ok(stats.failed <= (stats.ok + stats.failed) / 10, `${stats.failed} of ${stats.ok + stats.failed}`);
});

test('a good release passes its canary window and replaces every worker, losing nothing', async (t) => {
  const { port, load, upgrade } = await deployedUnderLoad(t, { bad: 'ok', runArgs: ['--canary-window', '2000'] });
  const result = await upgrade();
  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.match(result.stdout, /upgraded to generation 2/);
  for (let i = 0; i < 10; i++) assert.equal((await request({ port })).json.version, 'v2');
  const stats = await load.stop();
  assert.equal(stats.failed, 0, JSON.stringify(stats.errors));
});
