// Keep-alive HTTP load that counts every request as a client sees it.
//
// Why not autocannon here: when a server closes a keep-alive socket with a request outstanding,
// autocannon silently reconnects and re-sends, so its error count hides exactly the failures a
// restart causes (see bench/README.md). This loader never retries: each request that is refused,
// reset, times out or gets a non-2xx answer is one failure, sorted by kind.
//
// Besides totals it keeps, per time slot (100 ms), the number of answers, failures and a latency
// histogram, so a report can compute throughput over time and percentiles for any window (steady
// state vs. during upgrades) after the fact. It also remembers which server pid answered, first
// and last, so a scenario can tell when a new version started serving and when an old one stopped.
// And it counts the TCP connections the clients had to open (per slot): on keep-alive load that
// is ~0 in steady state, so every new connection during an upgrade is churn the restart caused.
// The clients share the machine with the servers: per slot it also records its own event-loop
// delay (the lateness of a 10 ms timer), the time an answer that has arrived may wait here for
// the CPU before it is timed.
//
// With `rate` the load is open-loop, as wrk2 generates it: each connection has a schedule (one
// request every connections/rate seconds) and a request's latency runs from the moment the
// schedule meant to send it, not from when the connection was free again. A server that stalls
// for 50 ms is then charged for every request it made wait, not for one (coordinated omission).
// The slot's `svc` histogram keeps the latency from the actual send beside it.
import http from 'node:http';
import { Histogram } from './histogram.mjs';

export const SLOT_MS = 100;
const LAG_PROBE_MS = 10;
export const FAILURE_KINDS = ['refused', 'reset', 'timeout', 'non2xx', 'other'];

/** Maps a client-side error to one of FAILURE_KINDS. */
export function classify(error) {
  const code = error?.code;
  if (code === 'ECONNREFUSED') return 'refused';
  // 'socket hang up' is Node's ECONNRESET for a socket closed before any response byte.
  if (code === 'ECONNRESET' || code === 'EPIPE' || /socket hang up/i.test(error?.message ?? '')) return 'reset';
  if (code === 'TIMEOUT' || code === 'ETIMEDOUT') return 'timeout';
  return 'other';
}

const PID_RE = /"pid":(\d+)/;
const GEN_RE = /"generation":(\d+)/;

/**
 * Starts `connections` concurrent request loops (per port), each on its own keep-alive socket.
 * Options: host, port, path, connections, timeout (ms, per request), thinkMs (pause between a
 * loop's requests: idle keep-alive connections for the scaling scenario), rate (requests per second
 * in all, open-loop: see above), onNewPid(pid) (the first answer from a new server pid),
 * onAnswer({ loop, began, at, pid }) (every successful answer that names its pid; times in ms since start).
 */
export function startLoad({
  host = '127.0.0.1',
  port,
  ports,
  path = '/',
  connections = 50,
  timeout = 4000,
  thinkMs = 0,
  rate,
  onNewPid,
  onAnswer,
}) {
  const targets = ports ?? [port];
  // One agent (so one keep-alive socket) per loop: a shared agent would hand the few most
  // recently used sockets around (LIFO) and let the others time out, so "N connections" would
  // not mean N open sockets — and the scaling scenario is about exactly that.
  const loopCount = connections * targets.length;
  const agents = Array.from({ length: loopCount }, () => new http.Agent({ keepAlive: true, maxSockets: 1, maxFreeSockets: 1 }));
  const t0 = performance.now();
  const startedAt = Date.now();
  const slots = []; // index -> { ok, failed, hist }
  const failures = Object.fromEntries(FAILURE_KINDS.map((k) => [k, 0]));
  const otherCodes = {};
  const gaps = []; // { at, ms }: no successful answer from `at` for `ms`
  const pids = new Map(); // pid -> { first, last, count, generation } (times in ms since start)
  const state = { ok: 0, failed: 0, connects: 0, lastOkAt: 0, inflight: 0, lastPid: undefined, lastGeneration: undefined };
  let running = true;

  const slotAt = (ms) => {
    const i = Math.floor(ms / SLOT_MS);
    return (slots[i] ??= {
      ok: 0,
      failed: 0,
      connects: 0,
      hist: new Histogram(),
      ...(rate ? { svc: new Histogram() } : {}),
      lag: new Histogram(),
    });
  };
  let expectedAt = performance.now() + LAG_PROBE_MS;
  const probeLag = () => {
    const now = performance.now();
    slotAt(now - t0).lag.recordMs(Math.max(0, now - expectedAt));
    expectedAt = now + LAG_PROBE_MS;
    lagTimer = setTimeout(probeLag, LAG_PROBE_MS);
  };
  let lagTimer = setTimeout(probeLag, LAG_PROBE_MS);
  const fail = (kind, detail) => {
    const now = performance.now() - t0;
    state.failed += 1;
    failures[kind] += 1;
    if (kind === 'other') otherCodes[detail] = (otherCodes[detail] ?? 0) + 1;
    slotAt(now).failed += 1;
  };
  // A socket the agent just created is still connecting; a reused keep-alive one is not. Only
  // established connections count: a refused connect is already a failure of its own.
  const countConnect = (socket) => {
    if (!socket.connecting) return;
    socket.once('connect', () => {
      state.connects += 1;
      slotAt(performance.now() - t0).connects += 1;
    });
  };
  const succeed = (began, sent, body, loop) => {
    const now = performance.now() - t0;
    state.ok += 1;
    // Pauses in service: any stretch above 50 ms without one successful answer.
    if (now - state.lastOkAt > 50) gaps.push({ at: state.lastOkAt, ms: now - state.lastOkAt });
    state.lastOkAt = now;
    const slot = slotAt(now);
    slot.ok += 1;
    slot.hist.recordMs(now - began);
    slot.svc?.recordMs(now - sent);
    const pidMatch = PID_RE.exec(body);
    if (pidMatch) {
      const pid = Number(pidMatch[1]);
      let seen = pids.get(pid);
      if (!seen) {
        pids.set(pid, (seen = { first: now, last: now, count: 0, generation: undefined }));
        onNewPid?.(pid);
      }
      seen.last = now;
      seen.count += 1;
      const gen = GEN_RE.exec(body);
      if (gen) seen.generation = Number(gen[1]);
      state.lastPid = pid;
      state.lastGeneration = seen.generation;
      onAnswer?.({ loop, began, at: now, pid });
    }
  };

  // `intended`: when the loop's schedule meant to send this request (open loop), else now.
  const once = (loop, target, intended) =>
    new Promise((resolve) => {
      const sent = performance.now() - t0;
      const began = intended ?? sent;
      state.inflight += 1;
      let done = false;
      const finish = (outcome) => {
        if (done) return;
        done = true;
        state.inflight -= 1;
        outcome();
        resolve();
      };
      const req = http.request({ host, port: targets[target], path, agent: agents[loop], timeout }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () =>
          finish(() => (res.statusCode >= 200 && res.statusCode < 300 ? succeed(began, sent, body, loop) : fail('non2xx'))),
        );
        res.on('error', (err) => finish(() => fail(classify(err), err.code ?? err.message)));
        res.on('aborted', () => finish(() => fail('reset', 'aborted')));
      });
      req.on('socket', countConnect);
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
      req.on('error', (err) => finish(() => fail(classify(err), err.code ?? err.message)));
      req.end();
    });

  const pause = (ms) => new Promise((r) => setTimeout(r, ms));
  const closedLoop = async (i, target) => {
    // Spread idle loops over the think interval, so the connections do not fire in lockstep.
    if (thinkMs > 0) await pause(Math.random() * thinkMs);
    while (running) {
      await once(i, target);
      if (thinkMs > 0 && running) await pause(thinkMs * (0.5 + Math.random()));
    }
  };
  const everyMs = rate ? (loopCount * 1000) / rate : 0;
  const openLoop = async (i, target) => {
    // Phases spread over one interval, so the connections do not fire in lockstep.
    let intended = performance.now() - t0 + Math.random() * everyMs;
    while (running) {
      const wait = intended - (performance.now() - t0);
      if (wait > 0) await pause(wait);
      if (!running) break;
      await once(i, target, intended);
      intended += everyMs;
    }
  };
  const loops = Array.from({ length: loopCount }, (_, i) => (rate ? openLoop : closedLoop)(i, i % targets.length));

  return {
    startedAt,
    /** Milliseconds since the load started (same clock as every recorded time). */
    now: () => performance.now() - t0,
    state,
    failures,
    pids,
    slots,
    gaps,
    /** Stops issuing requests; waits for those in flight (each ends by its timeout at worst). */
    async stop() {
      running = false;
      clearTimeout(lagTimer);
      await Promise.all(loops);
      for (const agent of agents) agent.destroy();
      const endMs = performance.now() - t0;
      return {
        startedAt,
        durationMs: endMs,
        ok: state.ok,
        failed: state.failed,
        connects: state.connects,
        failures: { ...failures },
        otherCodes,
        slots,
        pids,
        gaps,
      };
    },
  };
}

/**
 * Merged latency histogram of the slots overlapping [fromMs, toMs); `key: 'lag'` the clients' own
 * event-loop delay, `key: 'svc'` the latency from the actual send (open loop).
 */
export function histogramBetween(slots, fromMs, toMs, key = 'hist') {
  const h = new Histogram();
  const first = Math.max(0, Math.floor(fromMs / SLOT_MS));
  const last = Math.min(slots.length, Math.ceil(toMs / SLOT_MS));
  for (let i = first; i < last; i++) if (slots[i]?.[key]) h.add(slots[i][key]);
  return h;
}

/** Merged histogram of the slots overlapping any of `windows` ([fromMs, toMs) pairs); `key` as in histogramBetween. */
export function histogramOver(slots, windows, key = 'hist') {
  return windows.reduce((h, [from, to]) => h.add(histogramBetween(slots, from, to, key)), new Histogram());
}

/**
 * Successful answers per second, bucketed by `bucketMs` (a whole number of slots, so every
 * bucket covers the same slots and none is skipped): [{ t (s, bucket start), rps, failed, connects }].
 */
export function throughputTimeline(slots, durationMs, bucketMs = 500) {
  if (bucketMs % SLOT_MS !== 0) throw new Error(`bucketMs must be a multiple of ${SLOT_MS}`);
  const per = bucketMs / SLOT_MS;
  const out = [];
  for (let b = 0; b * bucketMs < durationMs; b++) {
    let ok = 0;
    let failed = 0;
    let connects = 0;
    for (let i = b * per; i < (b + 1) * per; i++) {
      ok += slots[i]?.ok ?? 0;
      failed += slots[i]?.failed ?? 0;
      connects += slots[i]?.connects ?? 0;
    }
    out.push({ t: (b * bucketMs) / 1000, rps: Math.round((ok * 1000) / bucketMs), failed, connects });
  }
  return out;
}

/**
 * TCP connections the clients established in [fromMs, toMs), to the slot: a slot belongs to the
 * window its start falls in, so back-to-back windows never count one slot twice.
 */
export function connectsBetween(slots, fromMs, toMs) {
  let n = 0;
  const first = Math.max(0, Math.ceil(fromMs / SLOT_MS));
  const last = Math.min(slots.length, Math.ceil(toMs / SLOT_MS));
  for (let i = first; i < last; i++) n += slots[i]?.connects ?? 0;
  return n;
}

/** Longest pause without a successful answer that began inside [fromMs, toMs) (ms). */
export function longestGap(gaps, fromMs, toMs) {
  let best = 0;
  for (const g of gaps) if (g.at + g.ms > fromMs && g.at < toMs) best = Math.max(best, g.ms);
  return Math.round(best);
}
