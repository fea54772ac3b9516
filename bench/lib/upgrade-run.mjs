// One "upgrades under load" run: start an app with a method, put keep-alive load on it, trigger
// K replacements at a fixed pace, and measure what the clients saw. Shared by the bench's
// upgrades scenario and by scripts/demo.mjs, so both report the same numbers the same way.
//
// Per upgrade it records, on the load generator's clock:
//   servingMs - trigger -> first answer from a pid that was not serving before the trigger
//   readyMs   - trigger -> the method's own readiness signal (PID file), when it has one
//   goneMs    - trigger -> every pid that served before the trigger has exited
//   gapMs     - longest pause without any successful answer around the upgrade
//   newConnections - TCP connections the clients opened from this trigger to the next (or the end)
// With `watchPort` (the app's port behind a proxy) it also counts, from the kernel's socket table,
// the connections the proxy opened to the app (lib/upstream-conns.mjs): `upstream` in the result.
import { Histogram } from './histogram.mjs';
import { adapterApp } from './apps.mjs';
import { connectsBetween, histogramBetween, histogramOver, longestGap, SLOT_MS, startLoad, throughputTimeline } from './load.mjs';
import { freePort, get, isAlive, killQuietly, sleep, startProcess, track } from './procs.mjs';
import { summarizeConnections, watchConnections } from './upstream-conns.mjs';
import { median } from './stats.mjs';

const round = (x, digits = 1) => (x === undefined ? undefined : Math.round(x * 10 ** digits) / 10 ** digits);

/** Watches one upgrade until the new version serves and the old processes are gone. */
async function watchUpgrade(load, handle, oldPids, at, deadlineMs) {
  const result = { at, servingMs: undefined, readyMs: undefined, goneMs: undefined };
  while (load.now() < deadlineMs) {
    const now = load.now();
    if (result.servingMs === undefined) {
      for (const [pid, seen] of load.pids) {
        if (!oldPids.has(pid) && seen.first >= at) result.servingMs = seen.first - at;
      }
    }
    if (result.readyMs === undefined && handle.isReady?.(oldPids)) result.readyMs = now - at;
    if (result.goneMs === undefined && [...oldPids].every((pid) => !isAlive(pid))) result.goneMs = now - at;
    if (result.servingMs !== undefined && result.goneMs !== undefined && (result.readyMs !== undefined || !handle.isReady)) break;
    await sleep(5);
  }
  return result;
}

/** Cold starts per run: one sample on a loaded 2-core machine varies by ±150 ms. */
const COLD_STARTS = 3;

/**
 * The same app started from nothing on another port while the load runs (ms from spawn to its
 * first 200): what "trigger -> serving" is held against, on the same busy machine. The median
 * of COLD_STARTS, one after another; the samples beside it.
 */
async function coldStartsUnderLoad(framework, dir) {
  const samples = [];
  for (let i = 0; i < COLD_STARTS; i++) {
    const ms = await coldStartUnderLoad(framework, dir);
    if (ms === undefined) return undefined;
    samples.push(round(ms));
  }
  return { median: median(samples), samples };
}

async function coldStartUnderLoad(framework, dir) {
  const app = adapterApp(framework);
  if (app.missing) return undefined;
  const port = await freePort();
  const started = performance.now();
  const proc = startProcess(process.execPath, [app.path], {
    env: { PORT: String(port), HOST: '127.0.0.1', NODE_ENV: 'production', PID_FILE: `${dir}/cold-${port}.pid` },
  });
  track(proc.pid);
  try {
    const deadline = started + 20_000;
    while (performance.now() < deadline) {
      const res = await get({ port, timeout: 500 }).catch(() => undefined);
      if (res?.status === 200) return performance.now() - started;
      await sleep(2);
    }
    return undefined;
  } finally {
    killQuietly(proc.pid);
  }
}

/**
 * Options: method (from METHODS), framework, port, loadPort (where the clients connect when a
 * proxy stands in front of the app; default `port`), dir, upgrades, intervalMs, connections,
 * warmupMs (excluded from stats), steadyMs (baseline before the first trigger), tailMs (after the
 * last trigger), steadyAfterMs (a second steady window once the last upgrade has settled: the
 * steady-vs-steady noise floor), coldStart (also time the app's cold start under the same load,
 * after the measured windows), timeout (per request), onProgress(snapshot) every 250 ms,
 * onUpgrade(record), watchPort (count the TCP connections opened to this port: a proxy's
 * upstream connections).
 */
export async function runUpgradesUnderLoad(opts) {
  const {
    method,
    framework,
    port,
    dir,
    upgrades,
    intervalMs,
    connections = 50,
    warmupMs = 500,
    steadyMs = 2000,
    tailMs = 2000,
    steadyAfterMs = 0,
    timeout = 4000,
  } = opts;
  const handle = await method.start({ framework, port, dir });
  let load;
  let watch;
  let pool = new Set();
  const records = [];
  let progressTimer;
  try {
    load = startLoad({ port: opts.loadPort ?? port, connections, timeout, onNewPid: (pid) => track(pid) });
    if (opts.watchPort !== undefined) {
      const clock = load.now;
      watch = watchConnections({ port: opts.watchPort, now: clock });
      await watch.ready;
    }
    const snapshot = () => ({
      ...load.state,
      failures: { ...load.failures },
      upgradesDone: records.filter((r) => r.servingMs !== undefined).length,
      upgrades,
      elapsedMs: load.now(),
    });
    if (opts.onProgress) progressTimer = setInterval(() => opts.onProgress(snapshot()), 250);
    await sleep(warmupMs + steadyMs);
    const watchers = [];
    // The proxy's pool just before the first trigger: the connections that should survive.
    if (watch) pool = await watch.snapshot();
    for (let i = 0; i < upgrades; i++) {
      const at = load.now();
      // The processes serving right now: whatever answered in the last half second.
      const oldPids = new Set([...load.pids].filter(([, seen]) => seen.last >= at - 500).map(([pid]) => pid));
      const current = handle.currentPid?.();
      if (current !== undefined) oldPids.add(current);
      const record = { n: i + 1, at, oldPids: [...oldPids] };
      records.push(record);
      const triggered = handle.trigger().then(
        () => (record.triggerMs = load.now() - at),
        (error) => (record.error = String(error.message ?? error)),
      );
      watchers.push(
        watchUpgrade(load, handle, oldPids, at, at + 30_000).then((w) => {
          Object.assign(record, w);
          opts.onUpgrade?.(record);
        }),
      );
      // Upgrades must not overlap: a trigger during a running upgrade would only join it (core,
      // supervisor) or queue (pm2). So the next one waits for this trigger to return and for the
      // new version to serve (bounded), then for its slot on the schedule.
      await triggered;
      const served = load.now() + 10_000;
      while (record.servingMs === undefined && !record.error && load.now() < served) {
        if ([...load.pids].some(([pid, seen]) => !oldPids.has(pid) && seen.first >= at)) break;
        await sleep(10);
      }
      const next = at + intervalMs;
      if (i < upgrades - 1) await sleep(Math.max(0, next - load.now()));
    }
    await sleep(tailMs);
    // Bounded: a method whose old process never exits must not stall the run (nor, through a
    // pending timer, the exit of the demo).
    let cap;
    await Promise.race([Promise.all(watchers), new Promise((r) => (cap = setTimeout(r, 10_000)))]);
    clearTimeout(cap);
    // The second steady window starts once the last upgrade has settled (its old process gone).
    const settledAt = load.now();
    if (steadyAfterMs > 0) await sleep(steadyAfterMs);
    const end = load.now();
    const coldStart = opts.coldStart ? await coldStartsUnderLoad(framework, dir) : undefined;
    clearInterval(progressTimer);
    // Read before the clients close their connections (a proxy may close upstream ones with them).
    const watched = await watch?.stop();
    watch = undefined;
    const stats = await load.stop();
    load = undefined;
    const result = summarize({
      stats,
      records,
      warmupMs,
      intervalMs,
      end,
      settledAt: steadyAfterMs > 0 ? settledAt : undefined,
      method,
      framework,
    });
    if (coldStart !== undefined) {
      result.coldStartMs = coldStart.median;
      result.coldStartSamples = coldStart.samples;
    }
    if (watched) {
      const { perUpgrade, ...totals } = summarizeConnections({ watch: watched, triggers: records.map((r) => r.at), warmupMs, end, pool });
      result.upstream = totals;
      for (const [i, u] of perUpgrade.entries()) result.upgrades[i].upstream = u;
    }
    // grace-restart's own account of each drain after an upgrade: how many connections it moved.
    if (handle.drains) result.drains = [...handle.drains];
    return result;
  } finally {
    clearInterval(progressTimer);
    await watch?.stop();
    await load?.stop();
    await handle.stop();
  }
}

/** Milliseconds around each trigger that the per-100 ms p99 profile covers. */
const AROUND_MS = [-500, 2500];

/** p99 of each 100 ms slot from AROUND_MS[0] to AROUND_MS[1] around `at`: [{ t (ms from the trigger), p99, n }]. */
function p99Around(slots, at) {
  const out = [];
  const first = Math.floor((at + AROUND_MS[0]) / SLOT_MS);
  for (let i = Math.max(0, first); i * SLOT_MS < at + AROUND_MS[1] && i < slots.length; i++) {
    const slot = slots[i];
    if (!slot || slot.hist.total === 0) continue;
    out.push({ t: Math.round(i * SLOT_MS - at), p99: round(slot.hist.percentileMs(99), 2), n: slot.hist.total });
  }
  return out;
}

/**
 * The two windows the latency of each upgrade is measured in, as [from, to] ms pairs:
 *  - windows, "the upgrade alone": from each trigger until the new version serves and the old
 *    one is gone, plus 250 ms, never past the next trigger. Its length is the method's own: a
 *    method whose old process exits sooner has the same spike in a shorter window, so a higher p99.
 *  - periods, "while upgrading": from each trigger to the next, the last one an interval long
 *    (or until it settled, if that is later), never into the second steady window. The same
 *    length for every method, and what a p99 graph of a service upgraded back to back shows:
 *    issue #17's own window (9 s with 3 upgrades).
 */
export function upgradeWindows(records, { intervalMs, settledAt, end }) {
  const windows = records.map((r, i) => {
    const settled = Math.max(r.servingMs ?? 0, r.goneMs ?? 0, r.triggerMs ?? 0) + 250;
    const cap = records[i + 1]?.at ?? settledAt ?? end;
    return [r.at, Math.min(r.at + settled, cap)];
  });
  const periods = records.map((r, i) => {
    const next = records[i + 1]?.at;
    if (next !== undefined) return [r.at, next];
    return [r.at, Math.min(Math.max(r.at + intervalMs, windows[i][1]), settledAt ?? end)];
  });
  return { windows, periods };
}

function summarize({ stats, records, warmupMs, intervalMs, end, settledAt, method, framework }) {
  const firstTrigger = records[0]?.at ?? end;
  const { windows, periods } = upgradeWindows(records, { intervalMs, settledAt, end });
  const before = histogramBetween(stats.slots, warmupMs, firstTrigger);
  // With a second steady window, steady state is both, and their difference the noise floor.
  const after = settledAt === undefined ? undefined : histogramBetween(stats.slots, settledAt, end);
  const steady = after === undefined ? before : new Histogram().add(before).add(after);
  const during = histogramOver(stats.slots, windows);
  const upgrading = histogramOver(stats.slots, periods);
  // The clients' own event-loop delay over the same windows: their share of every latency.
  const lagSteady = [[warmupMs, firstTrigger], ...(settledAt === undefined ? [] : [[settledAt, end]])];
  const lagOf = (windows) => round(histogramOver(stats.slots, windows, 'lag').percentileMs(99), 2);
  const pcts = (h) => ({
    p50: round(h.percentileMs(50), 2),
    p99: round(h.percentileMs(99), 2),
    p999: round(h.percentileMs(99.9), 2),
    n: h.total,
  });
  const measuredMs = end - warmupMs;
  let okInWindow = 0;
  for (let i = Math.floor(warmupMs / 100); i < stats.slots.length; i++) okInWindow += stats.slots[i]?.ok ?? 0;
  return {
    method: method.id,
    label: method.label,
    framework,
    requests: stats.ok + stats.failed,
    ok: stats.ok,
    failed: stats.failed,
    failures: stats.failures,
    otherCodes: stats.otherCodes,
    rps: Math.round((okInWindow * 1000) / measuredMs),
    steady: pcts(steady),
    during: pcts(during),
    upgrading: pcts(upgrading),
    clientLagP99: { steady: lagOf(lagSteady), upgrading: lagOf(periods) },
    // The two steady windows apart (before the first trigger, after the last upgrade settled).
    steadyWindows: after === undefined ? undefined : [pcts(before), pcts(after)],
    upgrades: records.map((r, i) => ({
      n: r.n,
      atMs: Math.round(r.at),
      servingMs: round(r.servingMs),
      readyMs: round(r.readyMs),
      goneMs: round(r.goneMs),
      triggerMs: round(r.triggerMs),
      gapMs: longestGap(stats.gaps, windows[i][0], windows[i][1]),
      newConnections: connectsBetween(stats.slots, r.at, records[i + 1]?.at ?? end),
      p99Around: p99Around(stats.slots, r.at),
      error: r.error,
    })),
    landed: records.filter((r) => r.servingMs !== undefined && !r.error).length,
    // Slot-sized buckets: the report picks its rate window from these without resampling.
    timelineMs: SLOT_MS,
    timeline: throughputTimeline(stats.slots, end, SLOT_MS),
    connects: stats.connects,
    steadyConnects: connectsBetween(stats.slots, warmupMs, firstTrigger),
    pidsSeen: stats.pids.size,
  };
}
