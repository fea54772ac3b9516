// node:http app with @grace-restart/core, listening on every port in PORTS (comma-separated;
// falls back to PORT). It is the "node" framework's adapter variant and the fixture of the
// scaling scenario (many listeners). Prints one JSON line per lifecycle event, with the core's
// own timings: upgrade-ready.durationMs (trigger -> successor ready, in the old process) and
// drain-end.{durationMs, connections, closedIdle, forced}.
import http from 'node:http';
import { createGrace } from '@grace-restart/core';
import { emit, host, slowMs, version } from './shared.mjs';

const env = process.env;
const ports = (env.PORTS ?? env.PORT ?? '3000').split(',').map(Number);
const grace = createGrace({
  pidFile: env.PID_FILE,
  idleGrace: env.IDLE_GRACE ? Number(env.IDLE_GRACE) : undefined,
  // The k8s-rollout scenario: keep serving while the load balancer deregisters this pod.
  shutdownDelay: env.SHUTDOWN_DELAY ? Number(env.SHUTDOWN_DELAY) : undefined,
  // The core's own account of each connection move (moved, lastMovedMs...) as a 'moved' line:
  // the scaling scenario's move rate. Warnings and errors go to stderr as usual.
  logger: {
    info: (obj, msg) => msg?.startsWith('moved ') && emit('moved', obj),
    debug: () => {},
    warn: (obj, msg) => process.stderr.write(`${JSON.stringify({ ...obj, msg })}\n`),
    error: (obj, msg) => process.stderr.write(`${JSON.stringify({ ...obj, msg })}\n`),
  },
});
for (const name of ['ready', 'upgrade-start', 'upgrade-ready', 'upgrade-failed', 'drain-start', 'drain-end']) {
  grace.on(name, (payload) =>
    emit(name, { generation: grace.generation, ...(payload instanceof Error ? { message: payload.message } : payload) }),
  );
}

const handler = (req, res) => {
  const url = new URL(req.url, 'http://x');
  const json = (status, value) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(value));
  };
  const reply = () => json(200, { framework: 'node', pid: process.pid, version, generation: grace.generation });
  if (url.pathname === '/health') return json(grace.isDraining ? 503 : 200, { status: grace.isDraining ? 'draining' : 'ok' });
  if (url.pathname === '/slow') return setTimeout(reply, slowMs(url.searchParams.get('ms')));
  if (url.pathname === '/echo' && req.method === 'POST') {
    let bytes = 0;
    req.on('data', (c) => (bytes += c.length));
    req.on('end', () => json(200, { pid: process.pid, bytes }));
    return;
  }
  reply();
};

const servers = ports.map(() => http.createServer(handler));
await Promise.all(servers.map((server, i) => grace.listen(server, { port: ports[i], host })));
emit('listening', { generation: grace.generation, ports, address: servers[0].address() });
