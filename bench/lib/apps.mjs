// Where each app variant lives. The adapter variants are the project's own examples (built by
// `npm run build`); the bare variants are bench/apps/*.mjs. A missing build is reported, not fatal.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const FRAMEWORKS = ['express', 'fastify', 'koa', 'node'];
export const CLI_BIN = join(ROOT, 'packages', 'cli', 'dist', 'bin.js');
export const PM2_BIN = join(ROOT, 'node_modules', '.bin', 'pm2');

/** The grace-restart variant of a framework's app: { path } or { missing: reason }. */
export function adapterApp(framework) {
  const path =
    framework === 'node' ? join(ROOT, 'bench', 'apps', 'grace-node.mjs') : join(ROOT, 'examples', framework, 'dist', 'server.js');
  if (!existsSync(join(ROOT, 'packages', 'core', 'dist', 'index.js'))) return { missing: 'packages/core is not built (run npm run build)' };
  if (!existsSync(path)) return { missing: `examples/${framework}/dist/server.js is missing (run npm run build)` };
  return { path };
}

/** The same app without grace-restart. */
export function bareApp(framework) {
  return { path: join(ROOT, 'bench', 'apps', `${framework}.mjs`) };
}

/** The `grace-restart` CLI: { path } or { missing }. */
export function cliBin() {
  return existsSync(CLI_BIN)
    ? { path: CLI_BIN }
    : { missing: 'skipped: supervisor not built (packages/cli/dist/bin.js is missing; run npm run build)' };
}
