// Scaling: how handoff and drain times grow with open keep-alive connections and with listeners.
// Uses bench/apps/grace-node.mjs (node:http + core), whose JSON lines carry the core's own
// timings: upgrade-ready.durationMs (trigger -> successor ready, measured by the old process)
// and drain-end.{durationMs, connections, closedIdle, forced}.
//
// Connections: N keep-alive clients that each send a request about once per `thinkMs` — mostly
// idle, like browsers or upstream pools, which is what makes a drain slow and racy — counted
// with the same no-retry loader, so a reset caused by an idle close shows up as a failure.
// Listeners: L ports, each under light continuous load.
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

async function measure({ dir, ports, connections, thinkMs, upgrades, settleMs, afterMs = 800 }) {
  const handle = await METHODS.grace.start({ framework: 'node', port: ports[0], dir, env: { PORTS: ports.join(',') } });
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
      samples.push({ oldPid, handoffMs: ready?.durationMs, failedUpgrade: ready?.event === 'upgrade-failed', drainMs: drained?.durationMs, drainedConnections: drained?.connections, closedIdle: drained?.closedIdle, forced: drained?.forced });
      // Clients reconnect to the successor at their own pace; the drain ends within ~idleGrace.
      await sleep(i < upgrades - 1 ? settleMs : afterMs);
    }
    const stats = await load.stop();
    return { requestsBefore: opened, requests: stats.ok + stats.failed, failed: stats.failed, failures: stats.failures, samples };
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
    log(`  ${n} keep-alive connections: handoff ${row.handoffMs} ms, drain ${row.drainMs} ms (${row.drainedConnections} open at drain start, ${row.closedIdle} closed idle, ${row.forced} forced), ${r.failed} failed of ${r.requests}`);
    byConnections.push(row);
  }
  const byListeners = [];
  for (const l of listenerCounts) {
    const ports = [];
    for (let i = 0; i < l; i++) ports.push(await freePort());
    const r = await measure({ dir, ports, connections: 4, thinkMs: 0, upgrades, settleMs: 1000 });
    const row = summarize({ listeners: l }, r);
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
    closedIdle: pick('closedIdle'),
    forced: pick('forced'),
    requests: r.requests,
    failed: r.failed,
    failures: r.failures,
    samples: r.samples,
  };
}
