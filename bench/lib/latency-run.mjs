// One load level of the latency bench (issue #29, bench/latency.mjs): the app under a steady load
// while three kinds of window alternate on the load generator's clock.
//
//  - upgrade: from the trigger until every process that served before it has exited, + SETTLE_MS;
//  - control: nothing happens; as long as the level's first upgrade window. Ten of them: their
//    spread is the run's noise;
//  - cold: the same app started from nothing on another port beside the serving one (no load goes
//    to it), as long as a control: what a boot alone costs the serving process, the physical floor
//    an upgrade cannot go below without taking the boot's CPU from somewhere else.
//
// They alternate (ROUND) so that a drift of the machine through the run hits every kind alike.
// Windows start on the loader's 100 ms slot boundaries, so no slot is counted in two windows.
import { adapterApp } from './apps.mjs';
import { applyLever } from './levers.mjs';
import { FAILURE_KINDS, histogramBetween, histogramOver, SLOT_MS, startLoad } from './load.mjs';
import { freePort, get, isAlive, killQuietly, sleep, startProcess, track, waitGone } from './procs.mjs';
import { median } from './stats.mjs';

const WARMUP_MS = 2000;
const SETTLE_MS = 2000;
const ROUNDS = 3;
const ROUND = ['upgrade', 'control', 'control', 'cold', 'control'];
/** 3 rounds and one more control: 3 upgrades, 3 cold starts, 10 controls. */
export const SCHEDULE = [...Array.from({ length: ROUNDS }, () => ROUND).flat(), 'control'];
const UPGRADE_DEADLINE_MS = 30_000;

const round2 = (x) => (x === undefined || Number.isNaN(x) ? undefined : Math.round(x * 100) / 100);
const untilSlot = (load) => sleep(SLOT_MS - (load.now() % SLOT_MS));
const slotCeil = (ms) => Math.ceil(ms / SLOT_MS) * SLOT_MS;

/** Closed-loop throughput of the app as it is: `connections` loops, answers per second after a warm-up. */
export async function maxThroughput({ port, connections, measureMs = 4000 }) {
  const load = startLoad({ port, connections });
  await sleep(WARMUP_MS);
  const okBefore = load.state.ok;
  const from = load.now();
  await sleep(measureMs);
  const rps = ((load.state.ok - okBefore) * 1000) / (load.now() - from);
  const stats = await load.stop();
  return { rps: Math.round(rps), failed: stats.failed };
}

/** The pids that answered in the last half second, and whichever the method names as current. */
function servingPids(load, handle) {
  const at = load.now();
  const pids = new Set([...load.pids].filter(([, seen]) => seen.last >= at - 500).map(([pid]) => pid));
  const current = handle.currentPid?.();
  if (current !== undefined) pids.add(current);
  return pids;
}

async function upgradeWindow(load, handle, lever) {
  await untilSlot(load);
  const from = load.now();
  const oldPids = servingPids(load, handle);
  const w = { kind: 'upgrade', from, servingMs: undefined, goneMs: undefined, error: undefined };
  // Watches for the new process before the trigger, so that it is not taken for an old one.
  const parents = [...oldPids, ...(handle.proc ? [handle.proc.pid] : [])];
  const levered = applyLever(lever, { parents, serving: () => w.servingMs !== undefined || w.error !== undefined });
  await handle.trigger().catch((error) => (w.error = String(error.message ?? error)));
  while (!w.error && load.now() < from + UPGRADE_DEADLINE_MS) {
    if (w.servingMs === undefined) {
      for (const [pid, seen] of load.pids) if (!oldPids.has(pid) && seen.first >= from) w.servingMs = seen.first - from;
    }
    if (w.goneMs === undefined && [...oldPids].every((pid) => !isAlive(pid))) w.goneMs = load.now() - from;
    if (w.servingMs !== undefined && w.goneMs !== undefined) break;
    await sleep(5);
  }
  if (w.goneMs === undefined) w.error ??= `old processes ${[...oldPids].join(', ')} still there after ${UPGRADE_DEADLINE_MS} ms`;
  w.lever = await levered;
  w.to = slotCeil(from + (w.goneMs ?? UPGRADE_DEADLINE_MS) + SETTLE_MS);
  await sleep(w.to - load.now());
  return w;
}

async function controlWindow(load, lengthMs) {
  await untilSlot(load);
  const from = load.now();
  await sleep(lengthMs);
  return { kind: 'control', from, to: from + lengthMs };
}

/** Polls the cold app until it answers 200; ms from spawn, or undefined by `deadline`. */
async function firstAnswer(port, started, deadline) {
  while (performance.now() < deadline) {
    const res = await get({ port, timeout: 500 }).catch(() => undefined);
    if (res?.status === 200) return performance.now() - started;
    await sleep(10);
  }
  return undefined;
}

async function coldWindow(load, lengthMs, { framework, dir, env, wrap }) {
  const port = await freePort();
  await untilSlot(load);
  const from = load.now();
  const started = performance.now();
  const [file, ...args] = [...wrap, process.execPath, adapterApp(framework).path];
  const proc = startProcess(file, args, {
    env: { ...env, PORT: String(port), HOST: '127.0.0.1', NODE_ENV: 'production', PID_FILE: `${dir}/cold-${port}.pid` },
  });
  track(proc.pid);
  const coldMs = await firstAnswer(port, started, started + Math.max(lengthMs, 20_000));
  await sleep(from + lengthMs - load.now());
  // The wrappers (setpriv, taskset) exec node, so this pid is the app's.
  killQuietly(proc.pid);
  await waitGone(proc.pid, 5000);
  return { kind: 'cold', from, to: from + lengthMs, coldMs, error: coldMs === undefined ? 'the cold app never answered' : undefined };
}

const pcts = (h) => ({ p50: round2(h.percentileMs(50)), p99: round2(h.percentileMs(99)), p999: round2(h.percentileMs(99.9)), n: h.total });

const spansOf = (windows, kind) => windows.filter((w) => w.kind === kind).map((w) => [w.from, w.to]);

/** Percentiles of each window and of all windows of a kind merged; `key` as in histogramBetween. */
function byKind(slots, windows, kind, key = 'hist') {
  const spans = spansOf(windows, kind);
  return { all: pcts(histogramOver(slots, spans, key)), each: spans.map(([a, b]) => pcts(histogramBetween(slots, a, b, key))) };
}

function summarizeLevel({ stats, windows, level, offered }) {
  const measuredFrom = windows[0].from;
  const measuredTo = windows.at(-1).to;
  let ok = 0;
  for (let i = Math.floor(measuredFrom / SLOT_MS); i < Math.ceil(measuredTo / SLOT_MS); i++) ok += stats.slots[i]?.ok ?? 0;
  const control = byKind(stats.slots, windows, 'control');
  const firstControl = windows.find((w) => w.kind === 'control');
  const controlP99s = control.each.map((c) => c.p99);
  const controlP999s = control.each.map((c) => c.p999);
  const lagOf = (kind) => round2(histogramOver(stats.slots, spansOf(windows, kind), 'lag').percentileMs(99));
  return {
    level,
    offered,
    served: Math.round((ok * 1000) / (measuredTo - measuredFrom)),
    failed: stats.failed,
    failures: Object.fromEntries(FAILURE_KINDS.filter((k) => stats.failures[k] > 0).map((k) => [k, stats.failures[k]])),
    windowMs: firstControl === undefined ? undefined : firstControl.to - firstControl.from,
    control: {
      ...control,
      medianP99: median(controlP99s),
      medianP999: median(controlP999s),
      spreadP99: [Math.min(...controlP99s), Math.max(...controlP99s)],
    },
    upgrade: byKind(stats.slots, windows, 'upgrade'),
    cold: byKind(stats.slots, windows, 'cold'),
    // Open loop only: the same windows timed from the actual send (what coordinated omission hides).
    sentFrom:
      offered === 'closed'
        ? undefined
        : { control: byKind(stats.slots, windows, 'control', 'svc').all, upgrade: byKind(stats.slots, windows, 'upgrade', 'svc').all },
    clientLagP99: { control: lagOf('control'), upgrade: lagOf('upgrade'), cold: lagOf('cold') },
    upgrades: windows
      .filter((w) => w.kind === 'upgrade')
      .map((w) => ({
        servingMs: round2(w.servingMs),
        goneMs: round2(w.goneMs),
        error: w.error,
        leverAfterMs: round2(w.lever?.appliedAfterMs),
        leverError: w.lever?.error,
      })),
    coldStarts: windows.filter((w) => w.kind === 'cold').map((w) => ({ coldMs: round2(w.coldMs), error: w.error })),
  };
}

/**
 * Runs SCHEDULE against `handle` (a started method, lib/methods.mjs) at one load level: `rate`
 * requests per second open-loop, or closed-loop (saturating) when `rate` is undefined.
 * `cold` = { framework, dir, env, wrap } starts the cold app the way the method starts its own.
 */
export async function runLevel({ handle, port, connections, rate, level, cold, lever = { kind: 'none' } }) {
  const load = startLoad({ port, connections, rate, timeout: 10_000, onNewPid: (pid) => track(pid) });
  const windows = [];
  let stats;
  try {
    await sleep(WARMUP_MS);
    let lengthMs;
    for (const kind of SCHEDULE) {
      if (kind === 'upgrade') {
        const w = await upgradeWindow(load, handle, lever);
        windows.push(w);
        lengthMs ??= w.to - w.from;
      } else if (kind === 'control') windows.push(await controlWindow(load, lengthMs));
      else windows.push(await coldWindow(load, lengthMs, cold));
    }
  } finally {
    stats = await load.stop();
  }
  return summarizeLevel({ stats, windows, level, offered: rate === undefined ? 'closed' : Math.round(rate) });
}
