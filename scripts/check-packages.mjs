// Packaging check: publint --strict on every published workspace package (not private ones).
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

let failed = 0;
for (const dir of readdirSync('packages')) {
  const manifest = JSON.parse(readFileSync(join('packages', dir, 'package.json'), 'utf8'));
  if (manifest.private) continue;
  try {
    const out = execFileSync('npx', ['--no-install', 'publint', '--strict', join('packages', dir)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    process.stdout.write(`${manifest.name}: ${out.includes('All good') ? 'ok' : out}\n`);
  } catch (error) {
    failed += 1;
    process.stdout.write(`${manifest.name}: publint failed\n${error.stdout ?? ''}${error.stderr ?? ''}\n`);
  }
}
process.exit(failed === 0 ? 0 : 1);
