// The packages as a user gets them: `npm pack` every package, install the tarballs into
// scratch apps outside the monorepo (test/consumer/*, copied under os.tmpdir()), and run
// them: CommonJS JavaScript (Express), ES module JavaScript (Fastify), strict TypeScript
// NodeNext (Koa), TypeScript in CommonJS mode, and the supervisor of the installed CLI.
// Frameworks come from npm's cache (filled by `npm ci`) at the versions the monorepo uses.
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startLoad, request } from './helpers/load.mjs';
import { isAlive, startFixture, waitFor } from './helpers/process.mjs';
import { installApp, packAll, run, spawnJson } from './helpers/consumer.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIXTURES = join(ROOT, 'test', 'consumer');
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const PACKAGES = ['core', 'cli', 'express', 'fastify', 'koa'];

/** `name@version` of a dependency as the monorepo's package `from` resolves it. */
function installed(name, from = 'core') {
  const require = createRequire(join(ROOT, 'packages', from, 'package.json'));
  return `${name}@${JSON.parse(readFileSync(require.resolve(`${name}/package.json`), 'utf8')).version}`;
}

const APPS = {
  'express-cjs': {
    packages: ['core', 'express', 'cli'],
    deps: () => [installed('express', 'express'), installed('@types/express', 'express'), installed('@types/node')],
  },
  'fastify-esm': { packages: ['core', 'fastify', 'cli'], deps: () => [installed('fastify', 'fastify')] },
  'koa-ts': { packages: ['core', 'koa'], deps: () => [installed('koa', 'koa'), installed('@types/koa', 'koa'), installed('@types/node')] },
};

const work = mkdtempSync(join(tmpdir(), 'grace-consumer-'));
const dirs = {};
after(() => rmSync(work, { recursive: true, force: true }));

before(
  async () => {
    for (const name of PACKAGES) {
      assert.ok(existsSync(join(ROOT, 'packages', name, 'dist', 'index.js')), `packages/${name}/dist is missing: run npm run build`);
    }
    const tarballs = await packAll(ROOT, PACKAGES, join(work, 'tarballs'));
    for (const [app, spec] of Object.entries(APPS)) {
      dirs[app] = join(work, app);
      cpSync(join(FIXTURES, app), dirs[app], { recursive: true });
      const how = await installApp(dirs[app], [...spec.packages.map((p) => tarballs[p]), ...spec.deps()]);
      if (how !== 'offline') process.stdout.write(`${app}: not every package was in npm's cache; installed with --prefer-offline\n`);
    }
  },
  { timeout: 240_000 },
);

test('each tarball ships LICENSE, a README with absolute links only, and source maps that resolve', () => {
  const seen = new Set();
  for (const [app, spec] of Object.entries(APPS)) {
    for (const name of spec.packages) {
      if (seen.has(name)) continue;
      seen.add(name);
      const dir = join(dirs[app], 'node_modules', '@grace-restart', name);
      assert.match(readFileSync(join(dir, 'LICENSE'), 'utf8'), /MIT License\s+Copyright \(c\) 2026 grace-restart contributors/, name);
      const links = [...readFileSync(join(dir, 'README.md'), 'utf8').matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]);
      assert.deepEqual(
        links.filter((l) => !/^(https:\/\/|#)/.test(l)),
        [],
        `${name}: README links that break on the registry`,
      );
      const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
      assert.equal(manifest.repository.directory, `packages/${name}`);
      if (manifest.dependencies?.['@grace-restart/core'])
        assert.match(manifest.dependencies['@grace-restart/core'], /^\^/, `${name}: a caret range on core`);
      assertSourceMapsResolve(name, join(dir, 'dist'));
    }
  }
  assert.equal(seen.size, PACKAGES.length);
});

test('every package loads with require() and with import, as one module instance, without a warning', async () => {
  const check = `
    const name = process.argv[1];
    const required = require(name);
    import(name).then((imported) => {
      const core = require('@grace-restart/core');
      process.stdout.write(JSON.stringify({
        // require() of a module with a default export gets a copy of the namespace that adds
        // __esModule; every export must still be the very same value.
        name, keys: Object.keys(required).sort(),
        same: Object.keys(imported).every((key) => required[key] === imported[key]),
        oneCore: !('Grace' in imported) || imported.Grace === core.Grace,
      }) + '\\n');
    });`;
  for (const [app, spec] of Object.entries(APPS)) {
    for (const name of spec.packages) {
      const result = await run(process.execPath, ['-e', check, `@grace-restart/${name}`], { cwd: dirs[app] });
      assert.equal(result.code, 0, `${app} ${name}: ${result.stderr}`);
      assert.equal(result.stderr, '', 'no warning either');
      const loaded = JSON.parse(result.stdout);
      assert.ok(loaded.keys.length > 0, `${name} exports something`);
      assert.equal(loaded.same, true, `${name}: require() and import give the same module`);
      assert.equal(loaded.oneCore, true, `${name}: re-exports the very Grace class of @grace-restart/core`);
    }
  }
});

test('Express app in CommonJS JavaScript: starts, upgrades on SIGUSR2, stops on SIGTERM', async (t) => {
  await upgradeAndStop(t, join(dirs['express-cjs'], 'server.js'));
});

test('TypeScript in CommonJS mode (strict, module nodenext) compiles require() of the packages and runs', async () => {
  const dir = dirs['express-cjs'];
  const compiled = await run(process.execPath, [TSC, '-p', 'tsconfig.json'], { cwd: dir });
  assert.equal(compiled.code, 0, compiled.stdout + compiled.stderr);
  assert.match(readFileSync(join(dir, 'dist', 'types.js'), 'utf8'), /require\("@grace-restart\/core"\)/, 'compiled to CommonJS');
  const result = await run(process.execPath, ['dist/types.js'], { cwd: dir });
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(JSON.parse(result.stdout), {
    createGrace: 'function',
    GraceError: 'function',
    graceRestart: 'function',
    grace: 'function',
    Supervisor: 'function',
    moduleSystem: 'commonjs',
  });
});

test('Fastify app in ES module JavaScript: starts, upgrades on SIGUSR2, stops on SIGTERM', async (t) => {
  await upgradeAndStop(t, join(dirs['fastify-esm'], 'server.js'));
});

test('Koa app in strict TypeScript (NodeNext): tsc passes, then it starts, upgrades, stops', async (t) => {
  const dir = dirs['koa-ts'];
  const compiled = await run(process.execPath, [TSC, '-p', 'tsconfig.json'], { cwd: dir });
  assert.equal(compiled.code, 0, compiled.stdout + compiled.stderr);
  await upgradeAndStop(t, join(dir, 'dist', 'server.js'));
});

test('the installed CLI (node_modules/.bin/grace-restart, npx grace-restart) supervises the Fastify app: run, upgrade, status, SIGTERM', async (t) => {
  const dir = dirs['fastify-esm'];
  const bin = join(dir, 'node_modules', '.bin', 'grace-restart');
  const pidFile = join(dir, 'sup.pid');
  const supervisor = spawnJson(bin, ['run', '--workers', '2', '--pid-file', pidFile, '--', 'node', 'server.js'], {
    cwd: dir,
    env: { PORT: '0', IDLE_GRACE: '200' },
  });
  t.after(() => supervisor.cleanup());
  const { address } = await supervisor.waitForEvent({ event: 'listening' });
  await waitFor(() => existsSync(pidFile), { what: 'the supervisor PID file' });
  assert.equal(readFileSync(pidFile, 'utf8').trim(), String(supervisor.pid));
  const before = (await request({ port: address.port })).json;
  assert.equal(before.generation, 1);

  const upgraded = await run(bin, ['upgrade', '--pid-file', pidFile], { cwd: dir });
  assert.equal(upgraded.code, 0, upgraded.stdout + upgraded.stderr);
  assert.match(upgraded.stdout, /upgraded to generation 2/);
  // npx finds the app's own bin (npm_config_yes=false: never a registry package instead).
  const status = await run('npx', ['grace-restart', 'status', '--pid-file', pidFile, '--json'], {
    cwd: dir,
    env: { npm_config_yes: 'false' },
  });
  assert.equal(status.code, 0, status.stderr);
  const workers = JSON.parse(status.stdout).workers.map((w) => w.pid);
  assert.equal(workers.length, 2);
  assert.ok(!workers.includes(before.pid), 'the workers were replaced');
  assert.ok(workers.includes((await request({ port: address.port })).json.pid), 'a new worker answers');

  process.kill(supervisor.pid, 'SIGTERM');
  assert.deepEqual(await supervisor.exited, { code: 0, signal: null });
  assert.equal(existsSync(pidFile), false, 'the PID file is removed');
  for (const pid of workers) assert.equal(isAlive(pid), false, `worker ${pid} is gone`);
});

/**
 * Starts `script` with a PID file, upgrades it with SIGUSR2 under keep-alive load (the pid
 * changes, no request fails), then stops it with SIGTERM (exit 0, PID file removed).
 */
async function upgradeAndStop(t, script) {
  const pidFile = join(dirname(script), 'app.pid');
  const app = startFixture(script, { cwd: dirname(script), env: { PORT: '0', PID_FILE: pidFile, IDLE_GRACE: '200' } });
  t.after(() => app.cleanup());
  const { address } = await app.waitForEvent({ event: 'listening', pid: app.pid });
  const port = address.port;
  await waitFor(() => readPid(pidFile) === app.pid, { what: 'the PID file' });
  assert.deepEqual((await request({ port })).json, { pid: app.pid, generation: 1 });

  const load = startLoad({ port, connections: 5 });
  t.after(() => load.stop());
  await waitFor(() => load.stats.ok > 50, { what: 'load to flow' });
  process.kill(app.pid, 'SIGUSR2');
  const next = await waitFor(() => (readPid(pidFile) !== app.pid ? readPid(pidFile) : undefined), { what: 'a successor in the PID file' });
  assert.deepEqual(await app.exited, { code: 0, signal: null }, 'the old process exits 0 after its drain');
  const okBefore = load.stats.ok;
  await waitFor(() => load.stats.ok > okBefore + 50, { what: 'load to flow after the upgrade' });
  const stats = await load.stop();
  assert.equal(stats.failed, 0, JSON.stringify(stats.errors));
  assert.deepEqual((await request({ port })).json, { pid: next, generation: 2 });

  process.kill(next, 'SIGTERM');
  const exit = await app.waitForEvent({ event: 'exit', pid: next });
  assert.equal(exit.code, 0);
  await waitFor(() => !isAlive(next), { what: `process ${next} to exit` });
  assert.equal(existsSync(pidFile), false, 'the PID file is removed at the final stop');
}

function readPid(pidFile) {
  try {
    return Number(readFileSync(pidFile, 'utf8').trim()) || undefined;
  } catch {
    return undefined;
  }
}

/** Every `sourceMappingURL` in `dir` names a shipped map whose sources are shipped too. */
function assertSourceMapsResolve(name, dir) {
  let maps = 0;
  for (const file of readdirSync(dir)) {
    if (!/\.(js|d\.ts)$/.test(file)) continue;
    const url = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(readFileSync(join(dir, file), 'utf8'))?.[1];
    if (url === undefined) continue;
    const mapPath = join(dir, url);
    assert.ok(existsSync(mapPath), `${name}: ${file} points to ${url}, which is not shipped`);
    for (const source of JSON.parse(readFileSync(mapPath, 'utf8')).sources) {
      assert.ok(
        existsSync(join(dirname(mapPath), source)),
        `${name}: ${url} names ${source}, which is not shipped (stale dist? npm run clean && npm run build)`,
      );
    }
    maps += 1;
  }
  assert.ok(maps > 0, `${name}: no source map comment found at all`);
}
