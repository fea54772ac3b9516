// docs/guides/nestjs.md: its wiring (test/fixtures/nest-app.mjs, the same lines in plain
// JavaScript, run in a scratch app outside the repository with the packed core) upgraded twice under keep-alive load and stopped with 0 failed requests; and
// the miswiring it warns about: an error line naming the fix, and Nest's own graceful stop.
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { request } from './helpers/load.mjs';
import { upgradeAndStopUnderLoad } from './helpers/guide-app.mjs';
import { scratchApp } from './helpers/scratch-app.mjs';
import { freePort, startFixture, waitFor } from './helpers/process.mjs';

const FIXTURE = fileURLToPath(new URL('./fixtures/nest-app.mjs', import.meta.url));
const GUIDE = readFileSync(fileURLToPath(new URL('../docs/guides/nestjs.md', import.meta.url)), 'utf8');
/** The fixture in a scratch app outside the repository: packed core, Nest from npm. */
async function startNest(t, env = {}) {
  const dir = await scratchApp(t, {
    deps: ['@nestjs/core', '@nestjs/common', '@nestjs/platform-express', '@nestjs/platform-fastify', 'reflect-metadata', 'rxjs'],
  });
  copyFileSync(FIXTURE, join(dir, 'main.mjs'));
  const port = await freePort();
  const app = startFixture(join(dir, 'main.mjs'), { env: { PORT: String(port), ...env }, cwd: dir });
  t.after(() => app.cleanup());
  await app.waitForEvent({ event: 'listening' }, { timeout: 30_000 });
  return { app, port, dir };
}

test('the guide and the fixture wire Nest the same way', () => {
  const fixture = readFileSync(FIXTURE, 'utf8');
  for (const line of ["createGrace({ pidFile: 'app.pid', onShutdown: () => app.close() })", 'grace.adopt(app.getHttpServer())']) {
    assert.ok(GUIDE.includes(line) && fixture.includes(line), line);
  }
});

test('NestJS on Express, wired as the guide says: 2 upgrades under keep-alive load and a stop, 0 failed', async (t) => {
  const { app, port, dir } = await startNest(t);
  assert.equal((await request({ port })).headers['x-powered-by'], 'Express');
  const { stats, pid } = await upgradeAndStopUnderLoad({ pidFile: join(dir, 'app.pid'), firstPid: app.pid, port });
  assert.equal(stats.failed, 0, JSON.stringify(stats));
  assert.ok(stats.pids[pid] > 0, 'the last generation answered');
  assert.doesNotMatch(app.stderr, /never saw/);
});

test('NestJS on Fastify (FastifyAdapter), wired the same way: 2 upgrades under keep-alive load and a stop, 0 failed', async (t) => {
  const { app, port, dir } = await startNest(t, { ADAPTER: 'fastify' });
  assert.equal((await request({ port })).headers['x-powered-by'], undefined, 'served by Fastify (Express says X-Powered-By)');
  const { stats, pid } = await upgradeAndStopUnderLoad({ pidFile: join(dir, 'app.pid'), firstPid: app.pid, port });
  assert.equal(stats.failed, 0, JSON.stringify(stats));
  assert.ok(stats.pids[pid] > 0, 'the last generation answered');
  assert.doesNotMatch(app.stderr, /never saw/);
});

test("NestJS left out of grace-restart, with enableShutdownHooks(): an error line names the fix, and SIGTERM is Nest's: the request in flight is answered", async (t) => {
  const { app, port } = await startNest(t, { WIRING: 'none' });
  await waitFor(
    () =>
      /"level":50,.*through a server grace-restart never saw.*grace\.adopt\(app\.getHttpServer\(\)\) before app\.listen\(\)/.test(
        app.stderr,
      ),
    { what: 'the error line' },
  );
  const inFlight = request({ port, path: '/slow?ms=800' });
  await request({ port });
  process.kill(app.pid, 'SIGTERM');
  const res = await inFlight;
  assert.equal(res.status, 200, 'answered');
  await app.exited;
  assert.match(app.stderr, /SIGTERM: left to the app's own handler/);
});
