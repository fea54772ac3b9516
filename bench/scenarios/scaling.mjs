// Scaling: how handoff and drain times grow with open keep-alive connections and with listeners.
// Uses bench/apps/grace-node.mjs (node:http + core), whose JSON lines carry the core's own
// timings: upgrade-ready.durationMs (trigger -> successor ready, measured by the old process)
// and drain-end.{durationMs, connections, closedIdle, forced}.
//
// Connections: N keep-alive clients that each send a request about once per `thinkMs` — mostly
// idle, like browsers or upstream pools, which is what makes a drain slow and racy — counted
// with the same no-retry loader, so a reset caused by an idle close shows up as a failure.
// Listeners: L ports, each under light continuous load.
import net from 'node:net';
import { METHODS } from '../lib/methods.mjs';
import { startLoad } from '../lib/load.mjs';
import { freePort, sleep, track } from '../lib/procs.mjs';
import { median } from '../lib/stats.mjs';

/** Waits for the first event after index `from` matching `test`. */
async function nextEvent(events, from, test, timeout = 20_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const found = events.slice(from).find(test);
    if (found) return found;
    if (Date.now() > deadline) return undefined;
    await sleep(10);
  }
}

/** Fresh connections opened at once for the successor's accept rate (bounded: the loader holds its own too). */
const FRESH_MAX = 1000;

/**
 * How fast the app takes fresh connections: `n` opened at once, each sending one request; the
 * rate (per second) at which they get their first answer. The yardstick of the move rate.
 */
async function freshConnectionRate(port, n) {
  const started = performance.now();
  const one = () =>
    new Promise((resolve) => {
      const socket = net.connect({ port, host: '127.0.0.1' }, () => socket.write('GET / HTTP/1.1\r\nHost: bench\r\n\r\n'));
      socket.setTimeout(10_000, () => socket.destroy());
      socket.once('data', (chunk) => {
        socket.destroy();
        resolve(chunk.toString('latin1').startsWith('HTTP/1.1 200') ? performance.now() : undefined);
      });
      socket.once('error', () => resolve(undefined));
      socket.once('close', () => resolve(undefined));
    });
  const answered = (await Promise.all(Array.from({ length: n }, one))).filter((t) => t !== undefined);
  if (answered.length === 0) return undefined;
  return (answered.length * 1000) / (Math.max(...answered) - started);
}

async function measure({ dir, ports, connections, thinkMs, upgrades, settleMs, afterMs = 800, freshRate: withFreshRate = true }) {
  // The move's capacity, not its pacing: no slow start (core's default spreads the move over 1 s).
  const env = { PORTS: ports.join(','), GRACE_RESTART_SLOW_START: '0' };
  const handle = await METHODS.grace.start({ framework: 'node', port: ports[0], dir, env });
  const load = startLoad({ ports, connections, thinkMs, timeout: 10_000, onNewPid: track });
  const samples = [];
  try {
    // Let every loop open its connection (they start spread over thinkMs).
    await sleep(settleMs);
    const opened = load.state.ok;
    for (let i = 0; i < upgrades; i++) {
      const from = handle.proc.events.length;
      const oldPid = handle.currentPid();
      await handle.trigger();
      const ready = await nextEvent(handle.proc.events, from, (e) => e.event === 'upgrade-ready' || e.event === 'upgrade-failed');
      const drained = await nextEvent(handle.proc.events, from, (e) => e.event === 'drain-end' && e.reason === 'upgrade');
      const moved = handle.proc.events.slice(from).find((e) => e.event === 'moved' && e.pid === oldPid);
      // Connections the successor adopted per second, from the move's start to its last ack.
      const moveRate = moved?.moved > 0 && moved.lastMovedMs > 0 ? (moved.moved * 1000) / moved.lastMovedMs : undefined;
      samples.push({
        oldPid,
        handoffMs: ready?.durationMs,
        failedUpgrade: ready?.event === 'upgrade-failed',
        drainMs: drained?.durationMs,
        drainedConnections: drained?.connections,
        closedIdle: drained?.closedIdle,
        forced: drained?.forced,
        moved: moved?.moved,
        moveRate,
      });
      // Clients reconnect to the successor at their own pace; the drain ends within ~idleGrace.
      await sleep(i < upgrades - 1 ? settleMs : afterMs);
    }
    // The last successor's accept rate, measured under the same load right after its move.
    const freshRate = withFreshRate ? await freshConnectionRate(ports[0], Math.min(connections, FRESH_MAX)) : undefined;
    const stats = await load.stop();
    return {
      requestsBefore: opened,
      requests: stats.ok + stats.failed,
      failed: stats.failed,
      failures: stats.failures,
      samples,
      freshRate,
    };
  } finally {
    await load.stop();
    await handle.stop();
  }
}

export async function runScaling({ dir, connectionCounts, listenerCounts, upgrades, log }) {
  const byConnections = [];
  for (const n of connectionCounts) {
    // ~1 request per connection per second, bounded so 5000 idle sockets stay mostly idle.
    const thinkMs = n >= 1000 ? 2000 : 1000;
    const r = await measure({ dir, ports: [await freePort()], connections: n, thinkMs, upgrades, settleMs: thinkMs + 500 });
    const row = summarize({ connections: n }, r);
    const rates =
      row.moveRate === undefined
        ? ''
        : `, moved ${row.moved} at ${Math.round(row.moveRate)}/s vs fresh connections at ${Math.round(row.freshRate ?? 0)}/s (×${row.moveRatio?.toFixed(2)})`;
    log(
      `  ${n} keep-alive connections: handoff ${row.handoffMs} ms, drain ${row.drainMs} ms (${row.drainedConnections} open at drain start, ${row.closedIdle} closed idle, ${row.forced} forced)${rates}, ${r.failed} failed of ${r.requests}`,
    );
    byConnections.push(row);
  }
  const byListeners = [];
  for (const l of listenerCounts) {
    const ports = [];
    for (let i = 0; i < l; i++) ports.push(await freePort());
    // Only the connection-count rows hold the move rate against fresh connections.
    const r = await measure({ dir, ports, connections: 4, thinkMs: 0, upgrades, settleMs: 1000, freshRate: false });
    const { moveRate, freshRate, moveRatio, ...row } = summarize({ listeners: l }, r);
    log(`  ${l} listeners: handoff ${row.handoffMs} ms, drain ${row.drainMs} ms, ${r.failed} failed of ${r.requests}`);
    byListeners.push(row);
  }
  return { byConnections, byListeners };
}

function summarize(key, r) {
  const pick = (f) => median(r.samples.map((s) => s[f]));
  return {
    ...key,
    handoffMs: pick('handoffMs'),
    drainMs: pick('drainMs'),
    drainedConnections: pick('drainedConnections'),
    moved: pick('moved'),
    moveRate: pick('moveRate'),
    freshRate: r.freshRate,
    moveRatio: pick('moveRate') === undefined || r.freshRate === undefined ? undefined : pick('moveRate') / r.freshRate,
    closedIdle: pick('closedIdle'),
    forced: pick('forced'),
    requests: r.requests,
    failed: r.failed,
    failures: r.failures,
    samples: r.samples,
  };
}
