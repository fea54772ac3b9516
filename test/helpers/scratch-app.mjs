// A scratch app outside the repository, as a user has one: the packed packages (`npm pack`)
// and the stack's own dependencies, at the versions the monorepo uses, installed with npm from
// its cache. The guides' end-to-end tests run their code there, so a guide that works only
// inside the monorepo (a dependency hoisted there, a workspace link) fails.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { installApp, packAll } from './consumer.mjs';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const require = createRequire(join(ROOT, 'package.json'));

/** `name@version` as the monorepo's root resolves it. */
export function monorepoVersion(name) {
  let dir = require.resolve(name).replace(/\\/g, '/');
  const at = dir.lastIndexOf(`/node_modules/${name}/`);
  dir = dir.slice(0, at + `/node_modules/${name}`.length);
  return `${name}@${JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).version}`;
}

let tarballs;

/** The packed packages, once per test file. */
function packed() {
  if (tarballs === undefined) {
    const dest = mkdtempSync(join(tmpdir(), 'grace-tarballs-'));
    process.once('exit', () => rmSync(dest, { recursive: true, force: true }));
    tarballs = packAll(ROOT, ['core', 'cli'], dest);
  }
  return tarballs;
}

/**
 * A directory under the temp dir with `packages` (default core) packed and installed, and
 * `deps` (names) at the monorepo's versions; removed after the test. Resolves its path.
 */
export async function scratchApp(t, { packages = ['core'], deps = [] } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'grace-stack-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify({ name: 'stack-app', private: true, type: 'module' }, null, 2)}\n`);
  const files = await packed();
  await installApp(dir, [...packages.map((name) => files[name]), ...deps.map(monorepoVersion)]);
  return dir;
}
