#!/usr/bin/env node
// npm run demo [-- --framework fastify|express|koa|node] [--supervisor [--workers N]]
//
// Starts an example app, puts keep-alive load on it for ~15 s, upgrades it 5 times (SIGUSR2 to
// the pid in its PID file, or to the `grace-restart run` supervisor), and prints what the clients
// saw. Exits 1 if a single request failed. Every process it started — including the app's
// successors, which are not its children — is stopped on exit and on Ctrl-C.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { adapterApp, cliBin, FRAMEWORKS } from '../bench/lib/apps.mjs';
import { METHODS } from '../bench/lib/methods.mjs';
import { freePort, installExitHandlers, onCleanup } from '../bench/lib/procs.mjs';
import { runUpgradesUnderLoad } from '../bench/lib/upgrade-run.mjs';

const { values } = parseArgs({
  options: {
    framework: { type: 'string', default: 'fastify' },
    supervisor: { type: 'boolean', default: false },
    workers: { type: 'string', default: '1' },
    upgrades: { type: 'string', default: '5' },
    interval: { type: 'string', default: '2500' },
    connections: { type: 'string', default: '50' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log(
    'usage: npm run demo -- [--framework fastify|express|koa|node] [--supervisor [--workers 1|2]] [--upgrades 5] [--interval 2500] [--connections 50]',
  );
  process.exit(0);
}
const framework = values.framework;
if (!FRAMEWORKS.includes(framework)) {
  console.error(`unknown --framework ${framework}: use one of ${FRAMEWORKS.join(', ')}`);
  process.exit(2);
}
const workers = Number(values.workers);
const methodId = values.supervisor ? `supervisor-${workers}` : 'grace';
const method = METHODS[methodId];
if (!method) {
  console.error('--workers must be 1 or 2');
  process.exit(2);
}
if (values.supervisor && cliBin().missing) {
  console.error(`grace-restart run is not available: ${cliBin().missing}`);
  process.exit(2);
}
const missing = adapterApp(framework).missing;
if (missing) {
  console.error(
    `cannot start the ${framework} example: ${missing}.\nRun \`npm run build\` first, or try \`npm run demo -- --framework node\` (node:http + @grace-restart/core only).`,
  );
  process.exit(2);
}

installExitHandlers();
const dir = mkdtempSync(join(tmpdir(), 'grace-restart-demo-'));
onCleanup(() => rmSync(dir, { recursive: true, force: true }));

const tty = process.stdout.isTTY;
const upgrades = Number(values.upgrades);
const intervalMs = Number(values.interval);
const port = await freePort();
const who = values.supervisor ? `grace-restart run --workers ${workers} -- node ${framework} example` : `the ${framework} example`;
console.log(
  `Starting ${who} on http://127.0.0.1:${port}, ${values.connections} keep-alive clients, ${upgrades} upgrades ${intervalMs / 1000} s apart…`,
);

const ms = (v) => (v === undefined ? '–' : `${Math.round(v)} ms`);
const progress = (s) => {
  if (!tty) return;
  const line = `  ${(s.elapsedMs / 1000).toFixed(1).padStart(5)} s  requests ${String(s.ok + s.failed).padStart(8)}  errors ${s.failed}  pid ${s.lastPid ?? '–'}  generation ${s.lastGeneration ?? '–'}  upgrades ${s.upgradesDone}/${s.upgrades}`;
  process.stdout.write(`\r${line}\x1b[K`);
};
const onUpgrade = (u) => {
  const line = `  upgrade ${u.n}: ${u.error ? `error: ${u.error}` : `new version serving after ${ms(u.servingMs)}, ready ${ms(u.readyMs)}, old process gone after ${ms(u.goneMs)}`}`;
  process.stdout.write(tty ? `\r${line}\x1b[K\n` : `${line}\n`);
};

const r = await runUpgradesUnderLoad({
  method,
  framework,
  port,
  dir,
  upgrades,
  intervalMs,
  connections: Number(values.connections),
  steadyMs: 2000,
  tailMs: 1500,
  onProgress: progress,
  onUpgrade,
});
if (tty) process.stdout.write('\r\x1b[K');

const kinds = Object.entries(r.failures)
  .map(([k, v]) => `${k} ${v}`)
  .join(', ');
const rows = [
  ['requests', String(r.requests)],
  ['failed requests', `${r.failed}${r.failed ? ` (${kinds})` : ''}`],
  ['throughput', `${r.rps} req/s`],
  ['upgrades landed', `${r.landed}/${upgrades}`],
  ['latency p50 / p99 before upgrades', `${r.steady.p50} / ${r.steady.p99} ms`],
  ['latency p50 / p99 during upgrades', `${r.during.p50} / ${r.during.p99} ms`],
];
const width = Math.max(...rows.map(([k]) => k.length));
console.log('');
for (const [k, v] of rows) console.log(`  ${k.padEnd(width)}  ${v}`);
console.log('');
console.log('  upgrade  trigger -> ready  trigger -> serving  trigger -> old gone  longest pause');
for (const u of r.upgrades) {
  console.log(
    `  ${String(u.n).padStart(7)}  ${ms(u.readyMs).padStart(16)}  ${ms(u.servingMs).padStart(18)}  ${ms(u.goneMs).padStart(19)}  ${ms(u.gapMs).padStart(13)}`,
  );
}
console.log('');
if (r.failed > 0 || r.landed < upgrades) {
  console.log(`FAILED: ${r.failed} requests failed, ${r.landed}/${upgrades} upgrades landed.`);
  process.exit(1);
}
console.log(`OK: ${r.requests} requests, ${upgrades} upgrades, not one failed request.`);
