#!/usr/bin/env node
// npm run bench [-- --quick] [--frameworks a,b] [--only overhead,upgrades,scaling,proxies,upstream-pool]
//
// Runs every scenario in one process, on one machine, in one go, so the ratios in the report
// compare like with like. Writes bench/results/<date>[-quick].{json,md} (+ SVG charts) and
// copies the markdown to bench/results/latest.md. `node bench/report.mjs <json>` redraws the
// report of a past run.
import '../test/helpers/short-probation.mjs';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, totalmem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { FRAMEWORKS, ROOT } from './lib/apps.mjs';
import { cleanupAll, installExitHandlers, onCleanup } from './lib/procs.mjs';
import { targets, targetStatus } from './lib/report.mjs';
import { writeResults } from './lib/write-results.mjs';
import { runOverhead } from './scenarios/overhead.mjs';
import { runProxies } from './scenarios/proxies.mjs';
import { runScaling } from './scenarios/scaling.mjs';
import { runUpgrades } from './scenarios/upgrades.mjs';
import { runUpstreamPool } from './scenarios/upstream-pool.mjs';
import { runK8sRollout } from './scenarios/k8s-rollout.mjs';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    frameworks: { type: 'string' },
    only: { type: 'string' },
    methods: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log(
    'usage: node bench/run.mjs [--quick] [--frameworks express,fastify,koa,node] [--methods grace,supervisor-1,...] [--only overhead,upgrades,scaling,proxies,upstream-pool]\n       node bench/report.mjs bench/results/<file>.json   (redraw the report and charts of a past run)',
  );
  process.exit(0);
}
const resultsDir = join(ROOT, 'bench', 'results');

const quick = values.quick;
const ALL_METHODS = ['grace', 'supervisor-1', 'supervisor-2', 'restart', 'graceful', 'pm2-1', 'pm2-2'];
const settings = quick
  ? {
      // ~5 minutes: every method on Fastify, grace-restart alone on the others (+ the proxies).
      frameworks: ['fastify', 'express', 'koa'],
      methods: (fw) => (fw === 'fastify' ? ALL_METHODS : ['grace']),
      upgrades: 3,
      intervalMs: 2000,
      steadyMs: 2000,
      tailMs: 1000,
      steadyAfterMs: 2000,
      connections: 50,
      overheadFrameworks: ['fastify', 'express', 'koa'],
      overheadRounds: 2,
      overheadDurationS: 1.5,
      overheadWarmupS: 0.5,
      connectionCounts: [10, 100, 1000],
      listenerCounts: [1, 4, 16],
      scalingUpgrades: 1,
    }
  : {
      // ~17 minutes: every method on every framework (+ the proxies and the upstream pool).
      frameworks: ['express', 'fastify', 'koa'],
      methods: () => ALL_METHODS,
      upgrades: 5,
      // 3 s apart: an Express upgrade's old process is gone ~3 s after its trigger (its
      // connections move at the pace of the cold successor), and upgrades that overlap would
      // measure three processes sharing the 2 cores.
      intervalMs: 3000,
      steadyMs: 3000,
      tailMs: 2000,
      steadyAfterMs: 3000,
      connections: 50,
      overheadFrameworks: ['express', 'fastify', 'koa', 'node'],
      overheadRounds: 6,
      overheadControl: true,
      overheadDurationS: 2.5,
      overheadWarmupS: 1,
      connectionCounts: [10, 100, 1000, 5000],
      listenerCounts: [1, 4, 16],
      scalingUpgrades: 2,
    };
if (values.frameworks) {
  const wanted = values.frameworks.split(',');
  for (const fw of wanted) if (!FRAMEWORKS.includes(fw)) throw new Error(`unknown framework ${fw}; one of ${FRAMEWORKS.join(', ')}`);
  settings.frameworks = wanted;
  settings.overheadFrameworks = wanted;
}
if (values.methods) {
  const wanted = values.methods.split(',');
  for (const id of wanted) if (!ALL_METHODS.includes(id)) throw new Error(`unknown method ${id}; one of ${ALL_METHODS.join(', ')}`);
  settings.methods = () => wanted;
}
const only = new Set((values.only ?? 'overhead,upgrades,scaling,proxies,upstream-pool').split(','));

installExitHandlers();
const dir = mkdtempSync(join(tmpdir(), 'grace-restart-bench-'));
onCleanup(() => rmSync(dir, { recursive: true, force: true }));
const log = (line) => console.log(line);

// 5000 client sockets + 5000 server sockets (+ the successor's) need file descriptors; each
// process has its own limit, which children inherit from us.
const fdLimit = Number(execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim()) || Infinity;
const needed = (max) => max + 1000;
const tooMany = settings.connectionCounts.filter((c) => needed(c) > fdLimit);
if (tooMany.length) {
  log(`ulimit -n is ${fdLimit}: skipping ${tooMany.join(', ')} connections (raise it with ulimit -n ${needed(Math.max(...tooMany))})`);
  settings.connectionCounts = settings.connectionCounts.filter((c) => !tooMany.includes(c));
}

const started = Date.now();
// Other work on the machine skews every number; say so in the report rather than hide it.
const loadBefore = loadavg()[0];
if (loadBefore > 0.5) log(`note: load average is ${loadBefore.toFixed(2)} before the run: the machine is busy, numbers will be noisy`);
const phase = async (name, fn) => {
  const t0 = Date.now();
  const result = await fn();
  run.phaseSeconds[name] = Math.round((Date.now() - t0) / 100) / 10;
  log(`  (${name}: ${run.phaseSeconds[name]} s)`);
  return result;
};
const date = new Date().toISOString().slice(0, 10);
const run = {
  date,
  quick,
  machine: {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model?.trim(),
    memGb: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    fdLimit,
  },
  settings: { ...settings, methods: Object.fromEntries(settings.frameworks.map((f) => [f, settings.methods(f)])) },
  phaseSeconds: {},
  ...(values.only ? { only: [...only] } : {}),
};

try {
  if (only.has('overhead')) {
    log(`overhead (${settings.overheadRounds} rounds × ${settings.overheadDurationS} s per variant)`);
    run.overhead = await phase('overhead', () =>
      runOverhead({
        frameworks: settings.overheadFrameworks,
        control: settings.overheadControl,
        rounds: settings.overheadRounds,
        durationS: settings.overheadDurationS,
        warmupS: settings.overheadWarmupS,
        connections: settings.connections,
        log,
      }),
    );
  }
  if (only.has('upgrades')) {
    log(`upgrades under load (${settings.upgrades} upgrades, ${settings.intervalMs} ms apart, ${settings.connections} connections)`);
    run.upgrades = await phase('upgrades', () => runUpgrades({ ...settings, dir, log }));
  }
  if (only.has('scaling')) {
    log('scaling (handoff and drain vs connections and listeners)');
    run.scaling = await phase('scaling', () =>
      runScaling({
        dir,
        connectionCounts: settings.connectionCounts,
        listenerCounts: settings.listenerCounts,
        upgrades: settings.scalingUpgrades,
        log,
      }),
    );
  }
  if (only.has('proxies')) {
    log(`topologies: direct, behind nginx, behind HAProxy (fastify; ${settings.upgrades} upgrades per method)`);
    run.proxies = await phase('proxies', () => runProxies({ ...settings, framework: 'fastify', dir, log }));
  }
  if (only.has('upstream-pool')) {
    log(`upstream pool: nginx and HAProxy, moveConnections on vs off (fastify; ${settings.upgrades} upgrades each)`);
    run.upstreamPool = await phase('upstream-pool', () => runUpstreamPool({ ...settings, framework: 'fastify', dir, log }));
  }
  // Not in the default set: needs nginx and wrk (--only k8s-rollout).
  if (only.has('k8s-rollout')) run.k8sRollout = await phase('k8s-rollout', () => runK8sRollout({ dir, log }));
} finally {
  cleanupAll();
}
run.durationS = (Date.now() - started) / 1000;
run.machine.loadAverage = { before: Math.round(loadBefore * 100) / 100, after: Math.round(loadavg()[0] * 100) / 100 };

// A run of some scenarios only (--only) gets its own name and leaves latest.md to full runs.
const base = `${date}${quick ? '-quick' : ''}${run.only ? `-${run.only.join('+')}` : ''}`;
const charts = (await writeResults(run, base, resultsDir)).filter((p) => p.endsWith('.svg')).length;

const t = targets(run);
log(`\ntargets: ${t.filter((x) => x.pass).length}/${t.length} met, ${t.filter((x) => x.unresolved).length} not resolved (noise)`);
for (const x of t) log(`  ${targetStatus(x).replaceAll('*', '')}  ${x.name}: ${x.detail}`);
log(
  `\nwrote bench/results/${base}.md (+ .json, ${charts} SVG charts)${run.only ? '' : ' and bench/results/latest.md'} in ${Math.round(run.durationS)} s`,
);
