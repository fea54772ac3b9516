// Packaging check of every published workspace package (not private ones), on the built dist/:
//   publint --strict   package.json fields, exports and files against what npm would pack;
//   attw --pack        "Are the types wrong?": the types each resolution mode finds;
//   README defaults    every option default a README's table states equals core's.
// attw ignores one rule, cjs-resolves-to-esm, on purpose: the packages are ESM only and
// CommonJS apps load them with require(esm) (Node >= 20.19, our engines floor), so one module
// instance serves both (core keeps per-process state: signal handlers, the LISTEN_FDS it took).
// attw's bundled TypeScript (5.6) predates require(esm) in `module: nodenext` (TS 5.8), so it
// still reports that shape as "dynamic import only"; test/consumer.test.mjs compiles and runs a
// CommonJS TypeScript app against the packed packages to show that it works.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveOptions } from '../packages/core/dist/options.js';

const checks = [
  { tool: 'publint', args: (dir) => ['publint', '--strict', dir], ok: (out) => out.includes('All good') },
  {
    tool: 'attw',
    args: (dir) => ['attw', '--pack', dir, '--ignore-rules', 'cjs-resolves-to-esm', '--format', 'ascii', '--no-color'],
    ok: (out) => /No problems found/.test(out),
  },
];

let failed = 0;
for (const dir of readdirSync('packages')) {
  const manifest = JSON.parse(readFileSync(join('packages', dir, 'package.json'), 'utf8'));
  if (manifest.private) continue;
  for (const check of checks) {
    try {
      const out = execFileSync('npx', ['--no-install', ...check.args(join('packages', dir))], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      if (!check.ok(out)) throw Object.assign(new Error('unexpected output'), { stdout: out });
      process.stdout.write(`${manifest.name}: ${check.tool} ok\n`);
    } catch (error) {
      failed += 1;
      process.stdout.write(`${manifest.name}: ${check.tool} failed\n${error.stdout ?? ''}${error.stderr ?? ''}\n`);
    }
  }
}

// Rows such as "| `idleGrace` | `3000` | ..." in the package READMEs, the root README and docs/.
// An empty environment: the defaults as documented, whatever this shell sets.
const defaults = resolveOptions({}, {});
let rows = 0;
const docs = readdirSync('docs')
  .filter((name) => name.endsWith('.md'))
  .map((name) => join('docs', name));
for (const readme of ['README.md', ...docs, ...readdirSync('packages').map((dir) => join('packages', dir, 'README.md'))]) {
  for (const [, name, stated] of readFileSync(readme, 'utf8').matchAll(/^\| `(\w+)` *\| `([^`]+)` *\|/gm)) {
    if (!(name in defaults) || typeof defaults[name] === 'function' || typeof defaults[name] === 'object') continue;
    rows += 1;
    const actual = JSON.stringify(defaults[name]).replaceAll('"', "'");
    // A default that depends on the machine is stated symbolically: `$TMPDIR/grace-restart-<uid>`.
    const expanded = stated.replace('$TMPDIR', tmpdir()).replace('<uid>', String(process.getuid?.() ?? 'user'));
    if (stated !== actual && expanded !== defaults[name]) {
      failed += 1;
      process.stdout.write(`${readme}: ${name} default is ${actual} in core, the README says ${stated}\n`);
    }
  }
}
// A check that finds no row checks nothing (a table's layout changed): that is a failure too.
if (rows === 0) failed += 1;
process.stdout.write(`documented option defaults: ${rows} stated, ${failed === 0 ? 'ok' : 'see above'}\n`);
process.exit(failed === 0 ? 0 : 1);
