// Counts the TCP connections opened to one port (the app's, behind a proxy: the proxy's upstream
// connections) from the kernel's socket table, so it needs nothing from the proxy or the app and
// sees every method the same way.
//
// A connection is known by its ephemeral port on the connecting side (the proxy's). Two sources,
// because either alone misses some:
//   - /proc/net/tcp, read every `intervalMs`: every socket alive at that moment, with its state.
//     It dates a long-lived connection to within one interval but misses one that opens and
//     closes between two reads.
//   - `ss -E` (sock_diag destroy events, Linux): every TCP socket as it is destroyed, however short
//     its life — a refused connect included. It needs CAP_NET_ADMIN; without it only the reads
//     count (recorded as `source`).
// Both ends are watched: the connecting side (peer port = `port`) counts connect attempts, the
// accepting side (local port = `port`, the app's socket) counts connections the app accepted.
// They differ only by refused or never-accepted connects. A connection moved between processes
// (fd passing) keeps its socket, so it is neither destroyed nor new here.
//
// Assumes an ephemeral port is not reused for another connection to `port` within one run: Linux
// walks its ephemeral range before reusing a port to the same destination, which takes far more
// connections than a run opens.
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';

const ESTABLISHED = '01';

/** Parses /proc/net/tcp into [{ localPort, peerPort, state }] for IPv4 sockets on 127.0.0.1 or any. */
export function parseProcNetTcp(text) {
  const out = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4) continue;
    const localPort = parseInt(f[1].split(':')[1], 16);
    const peerPort = parseInt(f[2].split(':')[1], 16);
    out.push({ localPort, peerPort, state: f[3] });
  }
  return out;
}

/** Parses one `ss -E -tnH` line ("UNCONN 0 0 127.0.0.1:42436 127.0.0.1:9911") into { localPort, peerPort }. */
export function parseSsLine(line) {
  const f = line.trim().split(/\s+/);
  if (f.length < 5) return undefined;
  const portOf = (addr) => Number(addr.slice(addr.lastIndexOf(':') + 1));
  const localPort = portOf(f[3]);
  const peerPort = portOf(f[4]);
  return Number.isInteger(localPort) && Number.isInteger(peerPort) ? { localPort, peerPort } : undefined;
}

/**
 * Starts watching connections to `port`; `now()` is the clock the times are recorded on (the
 * load generator's). `ready` resolves once the destroy-event stream is subscribed (or gave up).
 * `snapshot()` reads the table at once and returns the ephemeral ports of the established
 * connections; `stop()` reads it a last time, ends the watch and returns
 * { source, connections: Map(ephemeralPort -> { firstMs, closedMs, opened, accepted }), lastAlive: Set }.
 */
export function watchConnections({ port, now, intervalMs = 100 }) {
  const connections = new Map();
  const entry = (p) => {
    let c = connections.get(p);
    if (!c) connections.set(p, (c = { firstMs: Infinity, closedMs: undefined, opened: false, accepted: false }));
    return c;
  };
  // One socket seen at `at`: the connecting side (peer = port) or the app's (local = port).
  const see = ({ localPort, peerPort }, at, closed) => {
    let c;
    if (peerPort === port && localPort !== port) (c = entry(localPort)).opened = true;
    else if (localPort === port && peerPort !== 0 && peerPort !== port) (c = entry(peerPort)).accepted = true;
    else return undefined;
    c.firstMs = Math.min(c.firstMs, at);
    if (closed) c.closedMs = Math.min(c.closedMs ?? Infinity, at);
    return c;
  };

  let source = 'ss -E + /proc/net/tcp';
  let stopping = false;
  let ss;
  let readyResolve;
  const ready = new Promise((r) => (readyResolve = r));
  try {
    // stdbuf: ss writes to a pipe, which libc would buffer until exit.
    ss = spawn('stdbuf', ['-oL', 'ss', '-E', '-tnH', `( dport = :${port} or sport = :${port} )`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    ss.stdout.on('data', (chunk) => {
      const at = now();
      buf += chunk;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const s = parseSsLine(buf.slice(0, i));
        buf = buf.slice(i + 1);
        if (s) see(s, at, true);
      }
    });
    ss.on('error', () => {
      source = '/proc/net/tcp only (ss -E unavailable)';
      readyResolve();
    });
    ss.once('exit', (code) => {
      if (!stopping) source = `/proc/net/tcp only (ss -E exited with ${code})`;
      readyResolve();
    });
    // ss prints nothing when it has subscribed; give it a moment (the reads cover the start).
    setTimeout(readyResolve, 150);
  } catch {
    source = '/proc/net/tcp only (ss -E unavailable)';
    readyResolve();
  }

  let lastAlive = new Set();
  const read = async () => {
    const at = now();
    const alive = new Set();
    for (const s of parseProcNetTcp(await readFile('/proc/net/tcp', 'utf8'))) {
      const c = see(s, at, false);
      if (c && s.state === ESTABLISHED && s.peerPort === port) alive.add(s.localPort);
    }
    lastAlive = alive;
    return alive;
  };
  let reading = read();
  const timer = setInterval(() => {
    reading = reading.then(read, read);
  }, intervalMs);

  return {
    ready,
    /** Whether ss -E feeds this watch (it may also end early, or never start). */
    get destroyEvents() {
      return source.startsWith('ss -E');
    },
    /** Whether the connection from `ephemeralPort` has been seen closed (an ss -E event, or gone from the table). */
    seenClosed: (ephemeralPort) => connections.get(ephemeralPort)?.closedMs !== undefined,
    /** The proxy's established connections to `port` right now. */
    snapshot: () => (reading = reading.then(read, read)),
    async stop() {
      clearInterval(timer);
      await reading.catch(() => undefined);
      await read();
      stopping = true;
      ss?.kill();
      return { source, connections, lastAlive };
    },
  };
}

/**
 * Turns a watch into per-upgrade numbers. `triggers` are the upgrade times, `warmupMs` and `end`
 * bound the run, `pool` the ephemeral ports alive just before the first trigger. Per upgrade:
 * connections the proxy opened (connect attempts) and the app accepted from that trigger to the
 * next (or the end); over the run: how many of the pool's connections were still open at the end.
 */
export function summarizeConnections({ watch, triggers, warmupMs, end, pool }) {
  const all = [...watch.connections.values()];
  const between = (a, b, pick) => all.filter((c) => c.firstMs >= a && c.firstMs < b && pick(c)).length;
  const first = triggers[0] ?? end;
  const perUpgrade = triggers.map((at, i) => {
    const to = triggers[i + 1] ?? end;
    return { opened: between(at, to, (c) => c.opened), accepted: between(at, to, (c) => c.accepted) };
  });
  const poolPorts = [...pool];
  return {
    source: watch.source,
    // Before the first trigger: the pool filling up (warm-up) and any churn in steady state.
    beforeFirst: between(-Infinity, first, (c) => c.opened),
    steady: between(warmupMs, first, (c) => c.opened),
    poolSize: poolPorts.length,
    poolSurvived: poolPorts.filter((p) => watch.lastAlive.has(p) && watch.connections.get(p)?.closedMs === undefined).length,
    aliveAtEnd: watch.lastAlive.size,
    perUpgrade,
    opened: all.filter((c) => c.opened && c.firstMs >= first).length,
    accepted: all.filter((c) => c.accepted && c.firstMs >= first).length,
  };
}
