// grace-restart in a real Docker engine (issue #26): the Dockerfile docs/operations.md shows,
// built from the packed packages and run with the supervisor as PID 1 (and under `--init`),
// asserted from the host: `docker stop` under keep-alive load drains with 0 failed and exit 0,
// `docker kill -s USR2` upgrades a release on a mounted volume with 0 failed.
//
// dockerd is started by this file (test/helpers/docker-engine.mjs). It is skipped, with the
// reason printed, only where no engine can start (not root, docker.io or debootstrap missing);
// `.ci/run` installs both and sets GRACE_RESTART_REQUIRE_DOCKER=1, which turns a skip into a failure.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { installApp, packAll } from './helpers/consumer.mjs';
import { buildNodeImage, startEngine, whyNoEngine, writeTree } from './helpers/docker-engine.mjs';
import { request, startDrainingLoad, startLoad } from './helpers/load.mjs';
import { freePort, waitFor } from './helpers/process.mjs';
import { childrenOf, threadNices } from './helpers/proc.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const APP_IMAGE = 'grace-restart-test/app';

/** The Dockerfile under "## Docker" in docs/operations.md, as shown there. */
function documentedDockerfile() {
  const docs = readFileSync(join(ROOT, 'docs/operations.md'), 'utf8');
  const match = /## Docker\s+```dockerfile\n([\s\S]*?)```/.exec(docs);
  assert.ok(match, 'docs/operations.md shows a Dockerfile under "## Docker"');
  return match[1];
}

/** The app the image runs: plain node:http on createGrace, answering its pid and VERSION. */
const serverSource = (version) => `import http from 'node:http';
import { createGrace } from '@grace-restart/core';

const VERSION = ${version};
const grace = createGrace();
const server = http.createServer((req, res) => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ pid: process.pid, version: VERSION }));
});
await grace.listen(server, { port: Number(process.env.PORT), host: '127.0.0.1' });
`;

const skipReason = await whyNoEngine();
if (skipReason !== undefined && process.env.GRACE_RESTART_REQUIRE_DOCKER === '1')
  throw new Error(`GRACE_RESTART_REQUIRE_DOCKER=1 but no Docker engine can start here: ${skipReason}`);
if (skipReason !== undefined) console.log(`# docker tests skipped: ${skipReason}`);

const cleanups = [];
let docker;
let appDir;

before(async () => {
  if (skipReason !== undefined) return;
  const engine = await startEngine({ after: (fn) => cleanups.push(fn) });
  docker = engine.docker;
  const dockerfile = documentedDockerfile();
  const base = /^FROM\s+(\S+)/m.exec(dockerfile)?.[1];
  assert.ok(base, 'the Dockerfile has a FROM line');
  await buildNodeImage(docker, base);
  appDir = mkdtempSync(join(tmpdir(), 'grace-docker-app-'));
  cleanups.push(() => rmSync(appDir, { recursive: true, force: true }));
  const tarballs = await packAll(ROOT, ['core', 'cli'], join(appDir, 'vendor'));
  writeTree(appDir, {
    'package.json': JSON.stringify({ name: 'docker-app', private: true, type: 'module' }, null, 2),
    'dist/server.js': serverSource(1),
    '.dockerignore': 'node_modules\n',
    Dockerfile: dockerfile,
  });
  // The lockfile `npm ci` needs in the image, with the packages as tarballs beside the app.
  await installApp(
    appDir,
    [tarballs.core, tarballs.cli].map((file) => `./vendor/${file.split('/').pop()}`),
  );
  // Host network: no bridge here, and npm ci may ask the registry (audit).
  const built = await docker(['build', '--network', 'host', '-q', '-t', APP_IMAGE, appDir], { timeout: 600_000 });
  assert.equal(built.code, 0, `docker build of the docs' Dockerfile: ${built.stderr}`);
});

after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

/** `docker run -d` of the app image on `port`, host network; removed after the test. */
async function runContainer(t, port, extra = []) {
  const name = `grace-test-${port}`;
  const started = await docker(['run', '-d', '--network', 'host', '--name', name, '-e', `PORT=${port}`, ...extra, APP_IMAGE]);
  assert.equal(started.code, 0, `docker run: ${started.stderr}`);
  t.after(async () => {
    const logs = await docker(['logs', name]);
    t.diagnostic(`${name} log (last lines):\n${(logs.stdout + logs.stderr).slice(-1500)}`);
    await docker(['rm', '-f', name]);
  });
  const serving = async () => {
    if (
      await request({ port, timeout: 2_000 }).then(
        (r) => r.status === 200,
        () => false,
      )
    )
      return true;
    const state = (await docker(['inspect', '-f', '{{.State.Status}}', name])).stdout.trim();
    if (state === 'exited' || state === 'dead') {
      const logs = await docker(['logs', name]);
      throw new Error(`the container ${state} before it served:\n${(logs.stdout + logs.stderr).slice(-2000)}`);
    }
    return false;
  };
  await waitFor(serving, { timeout: 60_000, interval: 200, what: 'the container to serve' });
  return name;
}

/** The host pid of the container's PID 1, and its command line. */
async function pidOne(name) {
  const pid = Number((await docker(['inspect', '-f', '{{.State.Pid}}', name])).stdout.trim());
  return { pid, cmdline: readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ') };
}

/** Exit code of a stopped container, and whether Docker had to kill it (OOM or timeout). */
async function exitOf(name) {
  const [code, status] = (await docker(['inspect', '-f', '{{.State.ExitCode}} {{.State.Status}}', name])).stdout.trim().split(' ');
  return { code: Number(code), status };
}

/** `docker stop` under keep-alive load: every request answered, every client told to close. */
async function stopUnderLoad(t, name, port) {
  const load = startDrainingLoad({ port, connections: 16 });
  await waitFor(() => load.stats.ok > 500 || load.stats.failed > 0, { timeout: 30_000, what: 'load to flow' });
  const stopAt = performance.now();
  const stopped = await docker(['stop', name], { timeout: 60_000 });
  const stopMs = Math.round(performance.now() - stopAt);
  assert.equal(stopped.code, 0, `docker stop: ${stopped.stderr}`);
  await load.done;
  t.diagnostic(`docker stop under load (${stopMs} ms): ${JSON.stringify(load.stats)}`);
  assert.equal(load.stats.failed, 0, `failed requests: ${JSON.stringify(load.stats.errors)}`);
  assert.equal(load.stats.closed + load.stats.refused, 16);
  assert.deepEqual(await exitOf(name), { code: 0, status: 'exited' }, 'the supervisor exits 0 before docker stop would kill it');
}

/** `docker kill -s USR2` after the release on the volume changed: answers from version 2 only, 0 failed. */
async function upgradeUnderLoad(t, name, port, releaseDir) {
  const load = startLoad({ port, connections: 16 });
  try {
    await waitFor(() => load.stats.ok > 500 || load.stats.failed > 0, { timeout: 30_000, what: 'load to flow' });
    writeFileSync(join(releaseDir, 'server.js'), serverSource(2));
    const killed = await docker(['kill', '-s', 'USR2', name]);
    assert.equal(killed.code, 0, `docker kill -s USR2: ${killed.stderr}`);
    // Every worker replaced: 20 fresh connections in a row all answered by version 2.
    await waitFor(
      async () => {
        for (let i = 0; i < 20; i++) if (JSON.parse((await request({ port })).body).version !== 2) return false;
        return true;
      },
      { timeout: 60_000, interval: 100, what: 'every answer to come from version 2' },
    );
    const ok = load.stats.ok;
    await waitFor(() => load.stats.ok > ok + 500, { timeout: 30_000, what: 'load to flow on version 2' });
  } finally {
    const stats = await load.stop();
    t.diagnostic(`docker kill -s USR2 under load: ${JSON.stringify(stats)}`);
    assert.equal(stats.failed, 0, `failed requests: ${JSON.stringify(stats.errors)}`);
  }
}

/** A copy of the app's dist/ on the host, to mount as the release. */
function releaseVolume(t) {
  const dir = mkdtempSync(join(tmpdir(), 'grace-release-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'server.js'), serverSource(1));
  return dir;
}

test("the docs' Dockerfile: the supervisor is PID 1, and docker stop under keep-alive load drains with 0 failed and exits 0", {
  skip: skipReason,
  timeout: 300_000,
}, async (t) => {
  const port = await freePort();
  const name = await runContainer(t, port);
  const { cmdline } = await pidOne(name);
  assert.match(cmdline, /grace-restart run --workers 2/, 'PID 1 is the supervisor');
  // Docker's default capabilities lack SYS_NICE and its RLIMIT_NICE is 0: no boot priority, and the log says what to set.
  const logs = await docker(['logs', name]);
  assert.match(logs.stdout + logs.stderr, /"bootPriority":"off: it could not return to nice 0 [^"]*docker --ulimit nice=20\)"/);
  // The docs' other way in: the CLI inside the container, against PID 1.
  const upgraded = await docker(['exec', name, 'node_modules/.bin/grace-restart', 'upgrade', '--pid', '1']);
  assert.equal(upgraded.code, 0, `grace-restart upgrade --pid 1: ${upgraded.stdout}${upgraded.stderr}`);
  assert.match(upgraded.stdout + upgraded.stderr, /generation 2/);
  // Replacing the supervisor itself would end the container: refused, with the reason, exit not 0.
  const refused = await docker(['exec', name, 'node_modules/.bin/grace-restart', 'upgrade', '--supervisor', '--pid', '1']);
  assert.equal(refused.code, 1);
  assert.match(refused.stdout + refused.stderr, /container|PID 1/);
  await stopUnderLoad(t, name, port);
});

test('docker kill -s USR2 upgrades the release on a mounted volume under keep-alive load with 0 failed, new workers booting niced under --cap-add SYS_NICE; then docker stop drains', {
  skip: skipReason,
  timeout: 300_000,
}, async (t) => {
  const port = await freePort();
  const release = releaseVolume(t);
  // docs/operations.md's one-liner for boot priority in Docker (whose default capabilities lack
  // SYS_NICE) for an app that runs as root in its container. Its other one, --ulimit nice=20,
  // cannot run here: this machine's root lacks CAP_SYS_RESOURCE, so runc may not raise RLIMIT_NICE.
  const name = await runContainer(t, port, ['--cap-add', 'SYS_NICE', '-v', `${release}:/app/dist`]);
  await upgradeUnderLoad(t, name, port, release);
  const logs = await docker(['logs', name]);
  assert.match(logs.stdout + logs.stderr, /"bootPriority":"nice 10 until ready \(CAP_SYS_NICE\)"/);
  const workers = childrenOf((await pidOne(name)).pid);
  assert.equal(workers.length, 2);
  for (const pid of workers)
    assert.ok(
      threadNices(pid)?.every((n) => n === 0),
      `worker ${pid} serves niced: ${threadNices(pid)}`,
    );
  await stopUnderLoad(t, name, port);
});

test('under docker run --init (tini as PID 1): USR2 upgrades and docker stop drains, 0 failed', {
  skip: skipReason,
  timeout: 300_000,
}, async (t) => {
  const port = await freePort();
  const release = releaseVolume(t);
  const name = await runContainer(t, port, ['--init', '-v', `${release}:/app/dist`]);
  const { cmdline } = await pidOne(name);
  assert.match(cmdline, /init|tini/, 'PID 1 is the init Docker adds');
  await upgradeUnderLoad(t, name, port, release);
  await stopUnderLoad(t, name, port);
});
