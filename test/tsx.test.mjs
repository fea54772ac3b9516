// docs/guides/typescript.md: a TypeScript app run from source by tsx, in a scratch app outside
// the repository (packed core and CLI, tsx from npm). Started as the guide says
// (`node --import tsx src/server.ts`: node itself is the process, and each new generation
// inherits `--import tsx`), it upgrades twice under keep-alive load and stops with 0 failed.
// Started by `npx tsx`, whose CLI process exits when the app hands over, it says so at once.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { upgradeAndStopUnderLoad } from './helpers/guide-app.mjs';
import { request, startLoad } from './helpers/load.mjs';
import { followJsonEvents, freePort, startFixture, waitFor } from './helpers/process.mjs';
import { scratchApp } from './helpers/scratch-app.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIXTURE = fileURLToPath(new URL('./fixtures/tsx-app.ts', import.meta.url));
const GUIDE = readFileSync(join(ROOT, 'docs/guides/typescript.md'), 'utf8');

/** A scratch app outside the repository (packed core and CLI, tsx) with the fixture as src/server.ts. */
async function tsxApp(t) {
  const dir = await scratchApp(t, { packages: ['core', 'cli'], deps: ['tsx'] });
  mkdirSync(join(dir, 'src'));
  copyFileSync(FIXTURE, join(dir, 'src/server.ts'));
  return dir;
}

test('node --import tsx, as the guide says: 2 upgrades under keep-alive load and a stop, 0 failed, every generation from TypeScript source', async (t) => {
  assert.match(GUIDE, /node --import tsx src\/server\.ts/);
  const dir = await tsxApp(t);
  const port = await freePort();
  const app = startFixture('src/server.ts', { nodeArgs: ['--import', 'tsx'], env: { PORT: String(port) }, cwd: dir });
  t.after(() => app.cleanup());
  await app.waitForEvent({ event: 'listening' }, { timeout: 30_000 });
  const { stats, pid } = await upgradeAndStopUnderLoad({ pidFile: join(dir, 'app.pid'), firstPid: app.pid, port });
  assert.equal(stats.failed, 0, JSON.stringify(stats));
  assert.ok(stats.pids[pid] > 0, 'the last generation (TypeScript, through tsx) answered');
  assert.doesNotMatch(app.stderr, /started by/, 'no wrapper to warn about');
});

test('npx tsx: the app says at its first ready that tsx exits at the handover, and what to run instead', async (t) => {
  const dir = await tsxApp(t);
  const port = await freePort();
  const child = spawn('npx', ['--no-install', 'tsx', 'src/server.ts'], {
    cwd: dir,
    env: { ...process.env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  t.after(() => {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  });
  const output = followJsonEvents(child);
  const { pid } = await output.waitForEvent({ event: 'listening' }, { timeout: 30_000 });
  await waitFor(() => /started by `[^`]*tsx[^`]*` \(pid \d+\), which exits when this process hands over/.test(output.stderr), {
    what: 'the wrapper warning',
  });
  assert.match(output.stderr, /Start the app with node itself/);
  process.kill(pid, 'SIGTERM');
  await new Promise((resolve) => child.once('exit', resolve));
});

test('npm start as the guide shows it: grace-restart run -- node --import tsx, 2 upgrades under keep-alive load and a stop, 0 failed', async (t) => {
  const start = JSON.parse(/```json\n([\s\S]*?)```/.exec(GUIDE)[1]).scripts.start;
  assert.equal(start, 'grace-restart run -- node --import tsx src/server.ts');
  const dir = await tsxApp(t);
  const port = await freePort();
  // The bin npm linked from the packed CLI, with the script's arguments as written.
  const supervisor = spawn(join(dir, 'node_modules/.bin/grace-restart'), start.split(' ').slice(1), {
    cwd: dir,
    env: { ...process.env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  supervisor.stderr.on('data', (d) => (stderr += d));
  supervisor.stdout.resume();
  const exited = new Promise((resolve) => supervisor.once('exit', (code, signal) => resolve({ code, signal })));
  t.after(() => supervisor.kill('SIGKILL'));
  const pidOf = () =>
    request({ port }).then(
      (r) => JSON.parse(r.body).pid,
      () => undefined,
    );
  const first = await waitFor(pidOf, { timeout: 30_000, what: 'the worker to answer' });
  const load = startLoad({ port, connections: 10 });
  await waitFor(() => load.stats.ok > 200, { what: 'load to flow' });
  let last = first;
  for (let i = 1; i <= 2; i++) {
    const before = last;
    supervisor.kill('SIGUSR2');
    last = await waitFor(
      async () => {
        const pid = await pidOf();
        return pid !== before && pid;
      },
      { timeout: 30_000, what: `upgrade ${i}: a new worker, loaded through tsx, to answer` },
    );
  }
  const stats = await load.stop();
  supervisor.kill('SIGTERM');
  assert.deepEqual(await exited, { code: 0, signal: null }, stderr);
  assert.equal(stats.failed, 0, JSON.stringify(stats));
});
