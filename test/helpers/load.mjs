// A keep-alive HTTP load generator that counts every request as a client sees it:
// no retries, so a reset, a refused connect, a timeout or a non-2xx is one failure each.
import http from 'node:http';

/** `latency: true` also keeps every answer's time, for p50/p99/max at stop (a soak of millions leaves it off). */
export function startLoad({ port, host = '127.0.0.1', socketPath, connections = 20, path = '/', timeout = 10_000, latency = false }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const stats = { ok: 0, failed: 0, errors: {}, pids: new Map() };
  // Time to the answer of every request that got one, for the rehearsals' latency figures.
  const latencies = [];
  let running = true;

  const once = () =>
    new Promise((resolve) => {
      const sent = performance.now();
      const req = http.request({ host, port, socketPath, path, agent, timeout }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => {
          if (res.statusCode >= 200 && res.statusCode < 300) {
            stats.ok += 1;
            if (latency) latencies.push(performance.now() - sent);
            try {
              const pid = JSON.parse(body).pid;
              stats.pids.set(pid, (stats.pids.get(pid) ?? 0) + 1);
            } catch {
              // not JSON: counted as ok all the same
            }
          } else fail(`http ${res.statusCode}`);
          resolve();
        });
        res.on('error', (err) => {
          fail(err.code ?? err.message);
          resolve();
        });
      });
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
      req.on('error', (err) => {
        fail(err.code ?? err.message);
        resolve();
      });
      req.end();
    });
  const fail = (kind) => {
    stats.failed += 1;
    stats.errors[kind] = (stats.errors[kind] ?? 0) + 1;
  };

  const loops = Array.from({ length: connections }, async () => {
    while (running) await once();
  });
  return {
    stats,
    async stop() {
      running = false;
      await Promise.all(loops);
      agent.destroy();
      const sorted = latencies.sort((a, b) => a - b);
      const at = (q) => Math.round((sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0) * 10) / 10;
      const result = { ok: stats.ok, failed: stats.failed, errors: stats.errors, pids: Object.fromEntries(stats.pids) };
      return latency ? { ...result, latencyMs: { p50: at(0.5), p99: at(0.99), max: at(1) } } : result;
    },
  };
}

/** One request with a fresh connection; resolves { status, body, headers }. */
export function request({ port, host = '127.0.0.1', socketPath, path = '/', method = 'GET', body, agent = false, timeout = 30_000 }) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, socketPath, path, method, agent, timeout }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (data += d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: data, json: safeJson(data) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    if (body !== undefined) {
      if (typeof body === 'function') body(req);
      else req.end(body);
    } else req.end();
  });
}

function safeJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * Keep-alive clients that stop as a client of a draining server does: once an answer says
 * `Connection: close`, or a new connect is refused (nobody listens any more). A request that
 * was sent and got no answer (a reset, a hang-up, a timeout) or a non-2xx is a failure.
 */
export function startDrainingLoad({ port, host = '127.0.0.1', connections = 16 }) {
  const stats = { ok: 0, failed: 0, closed: 0, refused: 0, errors: {} };
  const loop = async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    for (;;) {
      const outcome = await new Promise((resolve) => {
        const req = http.request({ host, port, agent, timeout: 30_000 }, (res) => {
          res.resume();
          res.on('end', () =>
            resolve(res.statusCode === 200 ? (res.headers.connection === 'close' ? 'closed' : 'ok') : `http ${res.statusCode}`),
          );
          res.on('error', (err) => resolve(err.code ?? err.message));
        });
        req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
        req.on('error', (err) => resolve(err.code === 'ECONNREFUSED' ? 'refused' : (err.code ?? err.message)));
        req.end();
      });
      if (outcome === 'ok') stats.ok += 1;
      else if (outcome === 'closed' || outcome === 'refused') {
        stats[outcome] += 1;
        if (outcome === 'closed') stats.ok += 1;
        break;
      } else {
        stats.failed += 1;
        stats.errors[outcome] = (stats.errors[outcome] ?? 0) + 1;
      }
    }
    agent.destroy();
  };
  const done = Promise.all(Array.from({ length: connections }, loop));
  return { stats, done };
}
