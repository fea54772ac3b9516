#!/usr/bin/env node
// Fault, soak and hostile-input suite: drives real processes through faults, counts every
// request as a client sees it, and prints one row per scenario.
//   node test/faults/run.mjs [--long] [--only name[,name…]] [--write]
// --only matches scenario names by substring; --write saves the table as markdown in
// bench/results/faults-<YYYY-MM-DD>[-long].md. Exit code 1 when any verdict is not pass.
import '../helpers/short-probation.mjs';
import '../helpers/short-slow-start.mjs';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT, runScenario } from './lib.mjs';
import { allScenarios } from './scenarios/index.mjs';

const { values } = parseArgs({
  options: { long: { type: 'boolean', default: false }, only: { type: 'string' }, write: { type: 'boolean', default: false } },
});
const filters = values.only?.split(',').filter(Boolean);
const selected = allScenarios.filter((s) => !filters || filters.some((f) => s.name.includes(f)));
if (selected.length === 0) {
  process.stderr.write(`no scenario matches --only ${values.only}; known: ${allScenarios.map((s) => s.name).join(', ')}\n`);
  process.exit(2);
}

const started = Date.now();
const rows = [];
for (const scenario of selected) {
  process.stderr.write(`[faults] ${scenario.name} …\n`);
  const row = await runScenario(scenario.name, scenario.run, { long: values.long });
  rows.push(row);
  process.stderr.write(`[faults] ${scenario.name}: ${row.verdict} (${(row.timeMs / 1000).toFixed(1)} s)\n`);
}
const totalMs = Date.now() - started;

const cols = ['scenario', 'requests', 'failed', 'fds before', 'fds after', 'time', 'verdict'];
const cells = rows.map((r) => [
  r.scenario,
  String(r.requests),
  String(r.failed),
  String(r.fdsBefore),
  String(r.fdsAfter),
  `${(r.timeMs / 1000).toFixed(1)} s`,
  r.verdict,
]);
const widths = cols.map((c, i) => Math.max(c.length, ...cells.map((row) => Math.min(row[i].length, i === 6 ? 60 : 80))));
const line = (row) => row.map((c, i) => (i === 6 ? c : c.padEnd(widths[i]))).join('  ');
process.stdout.write(`\n${line(cols)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n${cells.map(line).join('\n')}\n`);
const noted = rows.filter((r) => r.notes);
if (noted.length > 0) process.stdout.write(`\nnotes:\n${noted.map((r) => `  ${r.scenario}: ${r.notes}`).join('\n')}\n`);
const failing = rows.filter((r) => r.verdict !== 'pass');
process.stdout.write(
  `\n${rows.length - failing.length}/${rows.length} pass, total ${(totalMs / 1000).toFixed(1)} s${values.long ? ' (long form)' : ''}\n`,
);

if (values.write) {
  const date = new Date().toISOString().slice(0, 10);
  const dir = join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `faults-${date}${values.long ? '-long' : ''}.md`);
  const esc = (s) => String(s).replaceAll('|', '\\|').replaceAll('\n', ' ');
  const md = [
    `# Fault suite${values.long ? ' (long form)' : ''}, ${date}`,
    '',
    `Node ${process.version}, ${cpus().length} CPUs, ${new Date().toISOString()}, total ${(totalMs / 1000).toFixed(1)} s.`,
    '`fds` counts the open fds of the serving process, client TCP connections excluded.',
    '',
    `| ${cols.join(' | ')} |`,
    `| ${cols.map(() => '---').join(' | ')} |`,
    ...cells.map((row) => `| ${row.map(esc).join(' | ')} |`),
    '',
    ...(noted.length > 0 ? ['Notes:', '', ...noted.map((r) => `- **${r.scenario}**: ${esc(r.notes)}`), ''] : []),
  ].join('\n');
  writeFileSync(file, md);
  process.stdout.write(`wrote ${file}\n`);
}
process.exit(failing.length > 0 ? 1 : 0);
