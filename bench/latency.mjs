#!/usr/bin/env node
// The latency of an upgrade the way issue #29 asks for it: per app and method, find the app's
// closed-loop throughput X, then hold it at 0.5X and 0.75X open-loop (wrk2's model: latency from
// the intended send, see lib/load.mjs) and saturated closed-loop (a stress row), and in each
// compare three upgrade windows with ten control windows (the noise) and three cold starts of the
// same app beside it (the floor), all in the same run (lib/latency-run.mjs).
//
//   npm run build
//   node bench/latency.mjs [--frameworks fastify,express,koa] [--methods grace,supervisor-1,supervisor-2]
//                          [--boot-nice 10,0] [--loads 0.5,0.75,closed] [--user nobody]
//                          [--lever none|batch|duty:RUN/STOP] [--x REQ_PER_S] [--pin] [--out FILE.md]
//
// --user runs the apps (and their cold starts) as that user through setpriv, with no capability
// and the rlimits it inherits (RLIMIT_NICE 0 here): the unprivileged rows, where boot priority
// is off and the upgrade is held against the floor instead. --lever applies one of the unprivileged
// levers of lib/levers.mjs to each successor from outside. --pin puts the load generator on a
// core of its own and the apps on the others (lib/pinning.mjs).
//
// Writes FILE.md and FILE.json (default bench/results/<date>-latency.md).
import '../test/helpers/short-probation.mjs';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT } from './lib/apps.mjs';
import { maxThroughput, runLevel } from './lib/latency-run.mjs';
import { parseLever } from './lib/levers.mjs';
import { renderLatency } from './lib/report-latency.mjs';
import { METHODS } from './lib/methods.mjs';
import { pinLoadGenerator } from './lib/pinning.mjs';
import { cleanupAll, freePort, installExitHandlers, onCleanup } from './lib/procs.mjs';

const { values } = parseArgs({
  options: {
    frameworks: { type: 'string', default: 'fastify,express,koa' },
    methods: { type: 'string', default: 'grace' },
    'boot-nice': { type: 'string', default: '10,0' },
    loads: { type: 'string', default: '0.5,0.75,closed' },
    connections: { type: 'string', default: '50' },
    user: { type: 'string' },
    lever: { type: 'string', default: 'none' },
    x: { type: 'string' },
    pin: { type: 'boolean', default: false },
    out: { type: 'string' },
  },
});
const list = (s) => s.split(',').filter(Boolean);
const lever = parseLever(values.lever);
const connections = Number(values.connections);
const loads = list(values.loads).map((l) => (l === 'closed' ? 'closed' : Number(l)));
for (const l of loads) if (l !== 'closed' && !(l > 0 && l < 1)) throw new Error(`--loads: ${l} is neither a fraction of X nor "closed"`);
for (const m of list(values.methods)) if (!METHODS[m]) throw new Error(`--methods: unknown method ${m}`);

installExitHandlers();
const dir = mkdtempSync(join(tmpdir(), 'grace-restart-latency-'));
onCleanup(() => rmSync(dir, { recursive: true, force: true }));
// The apps write their PID files here, as whichever user they run as.
if (values.user) chmodSync(dir, 0o1777);
const idOf = (flag) => execFileSync('id', [flag, values.user], { encoding: 'utf8' }).trim();
const pinning = pinLoadGenerator(values.pin);
const asUser = values.user ? ['setpriv', `--reuid=${idOf('-u')}`, `--regid=${idOf('-g')}`, '--clear-groups'] : [];
const wrap = [...asUser, ...pinning.wrap];
const log = (line) => console.log(line);
const fmt = (x) => (x === undefined ? '–' : String(x));

/** One app, one method, one boot nice: X, then every load level against the same running app. */
async function measureApp({ framework, methodId, bootNice }) {
  const method = METHODS[methodId];
  const missing = method.unavailable(framework);
  if (missing) return { framework, method: methodId, bootNice, skipped: missing };
  const env = { GRACE_RESTART_BOOT_NICE: String(bootNice) };
  const port = await freePort();
  const handle = await method.start({ framework, port, dir, env, wrap });
  try {
    // --x gives X instead of measuring it (a smoke run, or loads comparable across runs).
    const x = values.x ? { rps: Number(values.x) } : await maxThroughput({ port, connections });
    log(
      `${framework} / ${methodId} / boot nice ${bootNice}: X = ${x.rps} req/s (${values.x ? 'given' : `closed loop, ${connections} connections`})`,
    );
    const levels = [];
    for (const load of loads) {
      const rate = load === 'closed' ? undefined : load * x.rps;
      const level = load === 'closed' ? 'saturated (closed loop)' : `${load}X`;
      const r = await runLevel({ handle, port, connections, rate, level, lever, cold: { framework, dir, env, wrap } });
      log(
        `  ${level}: ${r.failed} failed, p99 control ${fmt(r.control.medianP99)} (${r.control.spreadP99.join('–')}) -> upgrade ${fmt(r.upgrade.all.p99)}, cold ${fmt(r.cold.all.p99)} ms; serving after ${r.upgrades.map((u) => fmt(u.servingMs)).join('/')} ms`,
      );
      levels.push(r);
    }
    return {
      framework,
      method: methodId,
      label: method.label,
      bootNice,
      user: values.user ?? 'root',
      lever: values.lever,
      x: x.rps,
      levels,
    };
  } finally {
    await handle.stop();
  }
}

const started = Date.now();
const loadBefore = loadavg()[0];
if (loadBefore > 0.5) log(`note: load average is ${loadBefore.toFixed(2)} before the run: numbers will be noisy`);
const rows = [];
try {
  for (const framework of list(values.frameworks))
    for (const methodId of list(values.methods))
      for (const bootNice of list(values['boot-nice']).map(Number)) rows.push(await measureApp({ framework, methodId, bootNice }));
} finally {
  cleanupAll();
}
const run = {
  date: new Date().toISOString().slice(0, 10),
  machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model?.trim(), node: process.version, uid: process.getuid?.() },
  probationMs: Number(process.env.GRACE_RESTART_PROBATION),
  connections,
  pinning: pinning.label,
  loadAverageBefore: Math.round(loadBefore * 100) / 100,
  durationS: Math.round((Date.now() - started) / 1000),
  rows,
};
const out = values.out ?? join(ROOT, 'bench', 'results', `${run.date}-latency.md`);
writeFileSync(out.replace(/\.md$/, '.json'), `${JSON.stringify(run, null, 2)}\n`);
writeFileSync(out, renderLatency(run));
log(`wrote ${out} (+ .json) in ${run.durationS} s`);
