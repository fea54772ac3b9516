#!/usr/bin/env node
// Where an upgrade's latency lies in time, for issue #29's levers: the same app under an
// open-loop load (latency from the intended send, lib/load.mjs), upgraded again and again, each
// upgrade cut into phases by the intended send time of each request:
//   before   the second before the trigger (the noise)
//   boot     trigger until the first answer from the new version (the successor boots, the old serves)
//   move     from then until the old process's last answer (connections move, the successor warms up)
//   after    the second after that
// Each pair of `slowStart` and boot nice (GRACE_RESTART_SLOW_START and _BOOT_NICE, read by the old
// process, inherited by every successor) runs in its own app, the pairs alternating round by
// round, so that drift of the machine falls on all of them alike. Not part of `npm run bench`;
// run it after a build:
//
//   node bench/upgrade-phases.mjs [--framework fastify] [--slow-start 0,3000] [--boot-nice 10,0]
//                                 [--rate REQ_PER_S | --load 0.5] [--rounds 2] [--upgrades 4] [--connections 50]
//                                 [--pin] [--out FILE.md]
//
// --load is a share of the app's closed-loop throughput X, measured once before the first round.
// --pin puts the load generator on a core of its own and the apps on the others (lib/pinning.mjs).
// Writes FILE.md and FILE.json (default bench/results/<date>-upgrade-phases.md).
import '../test/helpers/short-probation.mjs';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT } from './lib/apps.mjs';
import { maxThroughput } from './lib/latency-run.mjs';
import { histogramBetween, startLoad } from './lib/load.mjs';
import { METHODS } from './lib/methods.mjs';
import { pinLoadGenerator } from './lib/pinning.mjs';
import { cleanupAll, freePort, installExitHandlers, onCleanup, sleep, waitGone } from './lib/procs.mjs';
import { median } from './lib/stats.mjs';

const { values } = parseArgs({
  options: {
    framework: { type: 'string', default: 'fastify' },
    'slow-start': { type: 'string', default: '0,3000' },
    'boot-nice': { type: 'string', default: '10' },
    rate: { type: 'string' },
    load: { type: 'string', default: '0.5' },
    rounds: { type: 'string', default: '2' },
    upgrades: { type: 'string', default: '4' },
    connections: { type: 'string', default: '50' },
    pin: { type: 'boolean', default: false },
    timeline: { type: 'boolean', default: false },
    out: { type: 'string' },
  },
});
const settings = values['slow-start']
  .split(',')
  .flatMap((slowStart) => values['boot-nice'].split(',').map((bootNice) => ({ slowStart: Number(slowStart), bootNice: Number(bootNice) })));
const rounds = Number(values.rounds);
const upgrades = Number(values.upgrades);
const CONNECTIONS = Number(values.connections);
if (!Number.isInteger(CONNECTIONS) || CONNECTIONS < 1)
  throw new Error(`--connections must be a positive whole number, got ${values.connections}`);
const AFTER_MS = 1000;
/** Up to this many answers per app (about a minute at 10 000 req/s), kept in typed arrays: no garbage for the loader's GC. */
const MAX_ANSWERS = 1 << 21;

const pinning = pinLoadGenerator(values.pin);
installExitHandlers();
const dir = mkdtempSync(join(tmpdir(), 'grace-restart-phases-'));
onCleanup(() => rmSync(dir, { recursive: true, force: true }));

/** The q-th quantile (0–1) of `xs`, NaN when empty. */
function quantile(xs, q) {
  if (xs.length === 0) return Number.NaN;
  const sorted = Float64Array.from(xs).sort();
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/** Every answer's intended send, arrival (ms since the load started) and pid. */
function answerLog() {
  const began = new Float64Array(MAX_ANSWERS);
  const at = new Float64Array(MAX_ANSWERS);
  const pid = new Int32Array(MAX_ANSWERS);
  let count = 0;
  return {
    record: (a) => {
      if (count === MAX_ANSWERS) return;
      began[count] = a.began;
      at[count] = a.at;
      pid[count] = a.pid;
      count += 1;
    },
    /** Latencies of the answers sent (intended) in [from, to); `newer(pid)` picks by the pid that answered. */
    latencies(from, to, newer = () => true) {
      const out = [];
      for (let i = 0; i < count; i++) if (began[i] >= from && began[i] < to && newer(pid[i])) out.push(at[i] - began[i]);
      return out;
    },
    /** The earliest intended send in [from, to) of an answer `newer(pid)` picks. */
    firstSent(from, to, newer) {
      let first;
      for (let i = 0; i < count; i++) if (began[i] >= from && began[i] < to && newer(pid[i]) && !(began[i] >= first)) first = began[i];
      return first;
    },
    /** The latest intended send from `from` on of an answer `pick(pid)` picks. */
    lastSent(from, pick) {
      let last;
      for (let i = 0; i < count; i++) if (began[i] >= from && pick(pid[i]) && !(began[i] <= last)) last = began[i];
      return last;
    },
  };
}

/** One upgrade's phases (see the header), from the answers and the clients' own event-loop lag. */
function phasesOf(log, slots, { at: t0, old }) {
  const ready = log.firstSent(t0, Number.POSITIVE_INFINITY, (pid) => pid !== old);
  if (ready === undefined) return { error: 'the new version never answered' };
  const moved = Math.max(ready, log.lastSent(t0, (pid) => pid === old) ?? ready);
  const p99 = (from, to, newer) => quantile(log.latencies(from, to, newer), 0.99);
  const lag = (from, to) => histogramBetween(slots, from, to, 'lag').percentileMs(99);
  return {
    readyMs: ready - t0,
    before: p99(t0 - 1000, t0),
    boot: p99(t0, ready),
    moveMs: moved - ready,
    move: p99(ready, moved),
    // Who answered slowly in the move: the old process, or the new version warming up.
    moveBy: { old: p99(ready, moved, (pid) => pid === old), new: p99(ready, moved, (pid) => pid !== old) },
    after: p99(moved, moved + AFTER_MS),
    clientLag: { boot: lag(t0, ready), move: lag(ready, moved) },
  };
}

/** One app at one setting: warm-up, then `upgrades` upgrades, each once the old process is gone. */
async function runApp({ slowStart, bootNice }, rate) {
  const port = await freePort();
  const env = { GRACE_RESTART_SLOW_START: String(slowStart), GRACE_RESTART_BOOT_NICE: String(bootNice) };
  const handle = await METHODS.grace.start({ framework: values.framework, port, dir, env, wrap: pinning.wrap });
  const log = answerLog();
  const load = startLoad({ port, connections: CONNECTIONS, rate, onAnswer: log.record });
  const triggers = [];
  let stats;
  try {
    await sleep(4000);
    for (let i = 0; i < upgrades; i++) {
      const old = handle.currentPid();
      triggers.push({ at: load.now(), wall: Date.now(), old });
      await handle.trigger();
      await waitGone(old, 30_000);
      // The old process's last answer came before it exited: its "after" second, then the next "before" one.
      await sleep(AFTER_MS + 1000);
    }
  } finally {
    stats = await load.stop();
    await handle.stop();
  }
  if (values.timeline) for (const t of triggers) printTimeline(log, t);
  return { failed: stats.failed, upgrades: triggers.map((t) => phasesOf(log, stats.slots, t)) };
}

/** --timeline: per 100 ms from the trigger, how many answers the old and the new processes gave and their p99. */
function printTimeline(log, { at: t0, wall, old }) {
  console.log(`  upgrade at ${new Date(wall).toISOString()} (${wall}), old pid ${old}`);
  const end = (log.lastSent(t0, (pid) => pid === old) ?? t0) + AFTER_MS;
  for (let from = t0; from < end; from += 100) {
    const o = log.latencies(from, from + 100, (pid) => pid === old);
    const n = log.latencies(from, from + 100, (pid) => pid !== old);
    console.log(
      `    +${String(Math.round(from - t0)).padStart(4)} ms  old ${String(o.length).padStart(4)} p99 ${r1(quantile(o, 0.99)).padStart(6)}  new ${String(n.length).padStart(4)} p99 ${r1(quantile(n, 0.99)).padStart(6)}`,
    );
  }
}

const PHASES = ['before', 'boot', 'move', 'after'];
const r1 = (x) => (x === undefined || Number.isNaN(x) ? '–' : x.toFixed(1));

/** Median and range of one phase's p99 over a setting's upgrades. */
function summary(ups, pick) {
  const xs = ups.filter((u) => !u.error).map(pick);
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
}

function render(run) {
  const lines = [
    `# Where an upgrade's latency lies in time, ${run.date}`,
    '',
    `Machine: ${run.machine.cpus} × ${run.machine.cpuModel}, Node ${run.machine.node}, uid ${run.machine.uid}; load average ${run.loadAverageBefore} before the run; CPU pinning: ${run.pinning ?? 'none'}. ${run.framework}, self-upgrade (SIGUSR2), probation ${run.probationMs} ms; ${CONNECTIONS} keep-alive connections, open loop at ${run.rate} req/s (${run.rateFrom}); latency from the intended send. ${run.rounds} rounds × ${run.upgrades} upgrades per setting, the settings alternating; ${run.durationS} s in all.`,
    '',
    `Phases, by each request's intended send: **before** the second before the trigger (the noise); **boot** the trigger until the new version's first answer; **move** from then until the old process's last answer (its length is a column); **after** the ${AFTER_MS / 1000} s after that. Per setting, each phase's p99 over its upgrades: median (min–max), in ms. The physical floor of every phase is the loopback round trip, below 0.1 ms here; the noise is the **before** column.`,
    '',
    '| slowStart (ms) | boot nice | upgrades | failed | trigger → new version answers | move lasts | before | boot | move | after | move by old / new process | client lag p99: boot / move |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const row of run.rows) {
    const cell = (pick) => {
      const s = summary(row.upgrades, pick);
      return `${r1(s.median)} (${r1(s.min)}–${r1(s.max)})`;
    };
    const errors = row.upgrades.filter((u) => u.error).length;
    lines.push(
      `| ${row.slowStart} | ${row.bootNice} | ${row.upgrades.length}${errors ? ` (${errors} without an answer from the new version)` : ''} | ${row.failed} | ${cell((u) => u.readyMs)} | ${cell((u) => u.moveMs)} | ${PHASES.map((p) => cell((u) => u[p])).join(' | ')} | ${r1(summary(row.upgrades, (u) => u.moveBy.old).median)} / ${r1(summary(row.upgrades, (u) => u.moveBy.new).median)} | ${r1(summary(row.upgrades, (u) => u.clientLag.boot).median)} / ${r1(summary(row.upgrades, (u) => u.clientLag.move).median)} |`,
    );
  }
  lines.push(
    '',
    'Each upgrade, in order (p99 in ms):',
    '',
    '| slowStart | boot nice | round | # | new version answers after | move lasts | before | boot | move | after |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  );
  for (const row of run.rows)
    for (const [i, u] of row.upgrades.entries())
      lines.push(
        u.error
          ? `| ${row.slowStart} | ${row.bootNice} | ${u.round} | ${i + 1} | ${u.error} | | | | | |`
          : `| ${row.slowStart} | ${row.bootNice} | ${u.round} | ${i + 1} | ${r1(u.readyMs)} | ${r1(u.moveMs)} | ${PHASES.map((p) => r1(u[p])).join(' | ')} |`,
      );
  return `${lines.join('\n')}\n`;
}

const started = Date.now();
const loadBefore = loadavg()[0];
if (loadBefore > 0.5) console.log(`note: load average is ${loadBefore.toFixed(2)} before the run: numbers will be noisy`);
const rows = settings.map((setting) => ({ ...setting, failed: 0, upgrades: [] }));
let rate = Number(values.rate);
let rateFrom = 'given';
try {
  if (!values.rate) {
    const port = await freePort();
    const handle = await METHODS.grace.start({ framework: values.framework, port, dir, wrap: pinning.wrap });
    const x = await maxThroughput({ port, connections: CONNECTIONS }).finally(() => handle.stop());
    rate = Math.round(Number(values.load) * x.rps);
    rateFrom = `${values.load} × X, X = ${x.rps} req/s closed-loop`;
  }
  console.log(`${values.framework}: open loop at ${rate} req/s (${rateFrom})`);
  for (let round = 1; round <= rounds; round++)
    for (const row of rows) {
      const r = await runApp(row, rate);
      row.failed += r.failed;
      row.upgrades.push(...r.upgrades.map((u) => ({ round, ...u })));
      const moves = r.upgrades.map((u) => `${r1(u.move)} (old ${r1(u.moveBy?.old)}, new ${r1(u.moveBy?.new)})`).join(', ');
      console.log(
        `  round ${round}, slowStart ${row.slowStart}, boot nice ${row.bootNice}: ${r.failed} failed; move-phase p99 ${moves} ms`,
      );
    }
} finally {
  cleanupAll();
}
const run = {
  date: new Date().toISOString().slice(0, 10),
  machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model?.trim(), node: process.version, uid: process.getuid?.() },
  framework: values.framework,
  pinning: pinning.label,
  probationMs: Number(process.env.GRACE_RESTART_PROBATION),
  rate,
  rateFrom,
  rounds,
  upgrades,
  loadAverageBefore: Math.round(loadBefore * 100) / 100,
  durationS: Math.round((Date.now() - started) / 1000),
  rows,
};
const out = values.out ?? join(ROOT, 'bench', 'results', `${run.date}-upgrade-phases.md`);
writeFileSync(out.replace(/\.md$/, '.json'), `${JSON.stringify(run, null, 2)}\n`);
writeFileSync(out, render(run));
console.log(`wrote ${out} (+ .json) in ${run.durationS} s`);
