#!/usr/bin/env node
// The `grace-restart` command. This file is committed (dist/ is not) so that npm links the
// command when it installs the package, which in a fresh clone happens before the build:
// without a linked bin, `npx grace-restart` would ask the registry for someone else's package.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const build = new URL('../dist/bin.js', import.meta.url);
if (!existsSync(build)) {
  process.stderr.write(`grace-restart: ${fileURLToPath(build)} is missing: the CLI is not built yet; run npm run build\n`);
  process.exit(1);
}
await import(build.href);
