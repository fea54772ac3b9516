// Connection shapes across an upgrade: thousands of idle keep-alive sockets, slowloris
// clients, big transfers, WebSockets, HTTP/2 sessions, requests longer than drainTimeout.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { join } from 'node:path';
import WebSocket from 'ws';
import { tcpTable, TCP_STATE } from '../../helpers/tcp-table.mjs';
import {
  CORE_FIXTURES,
  checkLeftovers,
  fdInfo,
  flows,
  isAlive,
  patternChunk,
  request,
  startLoad,
  upgradeOnce,
  waitFor,
  settledFds,
} from '../lib.mjs';

function softFdLimit(pid = 'self') {
  const m = /Max open files\s+(\d+)/.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
  return m ? Number(m[1]) : Infinity;
}

/**
 * The common end of a scenario: the successor `pid` answers `answers` more requests, no
 * request of `load` failed, its fds are back to the row's baseline, no process is left behind.
 */
async function endOnSuccessor(scope, load, pid, answers = 200) {
  await flows(load, answers, 'the successor to serve');
  const stats = await load.stop();
  scope.count(stats);
  scope.check(stats.failed === 0, `${stats.failed} requests failed`);
  scope.row.fdsAfter = await settledFds(pid, scope.row.fdsBefore);
  await checkLeftovers(scope, [pid]);
}

/** Opens `n` keep-alive connections that each made one request and now sit idle. */
async function idleSockets(port, n) {
  const sockets = [];
  const state = { answered: 0, closed: 0, errors: {} };
  const open = () =>
    new Promise((resolve) => {
      const socket = net.connect({ port, host: '127.0.0.1' });
      let seen = '';
      socket.setEncoding('utf8');
      socket.on('error', (error) => {
        state.errors[error.code] = (state.errors[error.code] ?? 0) + 1;
        resolve();
      });
      socket.on('close', () => (state.closed += 1));
      socket.on('connect', () => socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      socket.on('data', (d) => {
        seen += d;
        if (seen.includes('\r\n\r\n') && seen.endsWith('}')) {
          state.answered += 1;
          resolve();
        }
      });
      sockets.push(socket);
    });
  for (let i = 0; i < n; i += 250) await Promise.all(Array.from({ length: Math.min(250, n - i) }, open));
  return { sockets, state };
}

/** TCP state of each client-side connection to `port` on this machine, by its local port. */
function clientSideStates(port) {
  return new Map(
    tcpTable()
      .filter((row) => row.remotePort === port)
      .map((row) => [row.localPort, row.state]),
  );
}

/** One more request on a socket of idleSockets(): resolves with the pid that answers, or the error. */
function askPid(socket) {
  return new Promise((resolve) => {
    let seen = '';
    const timer = setTimeout(() => done('timeout'), 10_000);
    const done = (value) => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('close', onClose);
      resolve(value);
    };
    const onData = (d) => {
      seen += d;
      const body = seen.indexOf('\r\n\r\n');
      if (body !== -1 && seen.endsWith('}')) {
        try {
          done(JSON.parse(seen.slice(body + 4)).pid);
        } catch {
          done(`unparsable: ${seen.slice(0, 80)}`);
        }
      }
    };
    const onClose = () => done(`closed after ${JSON.stringify(seen.slice(0, 40))}`);
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  });
}

/** 1 000 (long form: 5 000) idle keep-alive sockets at upgrade time. */
export async function idleKeepAlive(scope) {
  const n = scope.long ? 5000 : 1000;
  const need = n + 200;
  if (!scope.check(softFdLimit() >= need, `ulimit -n is ${softFdLimit()}: this scenario needs at least ${need} (runner and server each)`))
    return;
  // Every moved socket is asked once more after the upgrade, seconds later: a keep-alive timeout
  // (Node's 5 s) would close some of them just as they are asked, HTTP's own idle race, which
  // this scenario is not about.
  const { app, port } = await scope.startApp({ IDLE_GRACE: '500', DRAIN_TIMEOUT: '30000', KEEP_ALIVE_TIMEOUT: '120000' });
  scope.row.fdsBefore = fdInfo(app.pid).structural;
  const idle = await idleSockets(port, n);
  scope.onCleanup(() => {
    for (const s of idle.sockets) s.destroy();
  });
  scope.check(idle.state.answered === n, `${idle.state.answered}/${n} idle sockets got their answer: ${JSON.stringify(idle.state.errors)}`);
  const load = startLoad({ port, connections: 10 });
  scope.onCleanup(() => load.stop());
  await flows(load, 200);
  const after = app.events.length;
  const old = app.pid;
  const triggeredAt = Date.now();
  process.kill(old, 'SIGUSR2');
  const ready = await app.waitForEvent((e) => e.event === 'upgrade-ready' && e.pid === old, { after, timeout: 40_000 });
  // From outside: when does the old process hold no client connection any more (moved or closed)?
  await waitFor(() => (fdInfo(old)?.connections ?? 0) === 0, {
    timeout: 40_000,
    interval: 5,
    what: 'the old process to let go of every connection',
  });
  const emptyAt = Date.now();
  await waitFor(() => !isAlive(old), { timeout: 40_000, what: `old process ${old} to exit` });
  const goneAt = Date.now();
  const next = ready.data.pid;
  // The line may still be in the pipe when the process is already gone: wait for it.
  const end = await app.waitForEvent((e) => e.event === 'drain-end' && e.pid === old, { after, timeout: 5_000 }).catch(() => undefined);
  // With moveConnections (the default) idle sockets move to the successor and stay open; the
  // rest are closed by the old process's drain. Either way none may see an error.
  const moved = end?.data.moved ?? 0;
  const perSocket = moved > 0 ? ` (${((emptyAt - ready.at) / moved).toFixed(2)} ms a connection)` : '';
  scope.note(
    `trigger → ready ${ready.at - triggeredAt} ms, → old process holds no connection ${emptyAt - triggeredAt} ms (ready + ${emptyAt - ready.at} ms${perSocket}), → old gone ${goneAt - triggeredAt} ms; moved ${moved}, then drained ${end?.data.connections} (closedIdle ${end?.data.closedIdle}, forced ${end?.data.forced}); ulimit -n ${softFdLimit()}`,
  );
  scope.check(end?.data.forced === 0, `forced ${end?.data.forced}`);
  // The old process is gone, so the kernel has sent a FIN on every connection it still held:
  // a client socket still ESTABLISHED was moved, one in CLOSE_WAIT was closed by the drain.
  const states = clientSideStates(port);
  const movedSockets = idle.sockets.filter((socket) => !socket.destroyed && states.get(socket.localPort) === TCP_STATE.established);
  const closedByDrain = idle.sockets.length - movedSockets.length;
  scope.note(`idle sockets: ${movedSockets.length} moved (still established), ${closedByDrain} closed by the old process`);
  const answeredBy = await Promise.all(movedSockets.map((socket) => askPid(socket)));
  const wrong = answeredBy.filter((pid) => pid !== next).length;
  scope.check(
    wrong === 0,
    `${wrong}/${movedSockets.length} moved idle sockets were not answered by the successor ${next}: ${JSON.stringify(answeredBy.filter((pid) => pid !== next).slice(0, 5))}`,
  );
  scope.check(Object.keys(idle.state.errors).length === 0, `idle sockets saw errors ${JSON.stringify(idle.state.errors)}`);
  scope.row.requests += n + movedSockets.length;
  await endOnSuccessor(scope, load, next);
}

/** Slowloris clients (headers one byte per second) across an upgrade: cut at drainTimeout at the latest. */
export async function slowloris(scope) {
  const drainTimeout = 3000;
  const k = 20;
  const { app, port } = await scope.startApp({ IDLE_GRACE: '200', DRAIN_TIMEOUT: String(drainTimeout) });
  scope.row.fdsBefore = fdInfo(app.pid).structural;
  const load = startLoad({ port, connections: 10 });
  scope.onCleanup(() => load.stop());
  await flows(load, 200);
  const header = `GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ${'a'.repeat(200)}`;
  const clients = Array.from({ length: k }, () => {
    const c = { sent: 0, closedAt: undefined, error: undefined, timer: undefined };
    c.socket = net.connect({ port, host: '127.0.0.1' });
    c.socket.on('error', (error) => (c.error = error.code));
    c.socket.on('close', () => {
      c.closedAt = Date.now();
      clearInterval(c.timer);
    });
    // One byte a second (the timing condition itself), bounded by the header length.
    c.socket.on('connect', () => {
      c.socket.write(header[c.sent++]);
      c.timer = setInterval(
        () => (c.sent < header.length && !c.socket.destroyed ? c.socket.write(header[c.sent++]) : clearInterval(c.timer)),
        1000,
      );
    });
    return c;
  });
  scope.onCleanup(() => {
    for (const c of clients) {
      clearInterval(c.timer);
      c.socket.destroy();
    }
  });
  await waitFor(() => clients.every((c) => c.sent >= 2), { timeout: 10_000, what: 'slowloris clients to start' });
  const after = app.events.length;
  const next = await upgradeOnce(app, app.pid, { timeout: 30_000 });
  const start = app.events.slice(after).find((e) => e.event === 'drain-start' && e.pid === app.pid);
  // Logged just before the exit upgradeOnce waited for: its line may still be in the pipe.
  const end = await app.waitForEvent((e) => e.event === 'drain-end' && e.pid === app.pid, { after, timeout: 5_000 }).catch(() => undefined);
  await waitFor(() => clients.every((c) => c.closedAt !== undefined), { timeout: 5000, what: 'slowloris sockets to be cut' }).catch(
    () => undefined,
  );
  const open = clients.filter((c) => c.closedAt === undefined).length;
  scope.check(open === 0, `${open} slowloris sockets still open after the old process exited`);
  const latest = Math.max(...clients.map((c) => (c.closedAt ?? Infinity) - start.at));
  scope.note(`slowloris cut ${latest} ms after drain start (drainTimeout ${drainTimeout}); drain forced ${end?.data.forced}`);
  scope.check(latest <= drainTimeout + 1500, `slowloris sockets cut ${latest} ms after drain start`);
  await endOnSuccessor(scope, load, next);
}

/** A 50 MiB upload and a 20 MiB slow download in flight across an upgrade: complete and byte-exact. */
export async function bigTransfers(scope) {
  const { app, port } = await scope.startApp({ IDLE_GRACE: '100', DRAIN_TIMEOUT: '60000' });
  scope.row.fdsBefore = fdInfo(app.pid).structural;
  const load = startLoad({ port, connections: 5 });
  scope.onCleanup(() => load.stop());
  await flows(load, 100);
  const size = 64 * 1024;
  const upChunks = 800; // 50 MiB
  const downChunks = 320; // 20 MiB
  const expect = (n) => {
    const h = createHash('sha256');
    for (let i = 0; i < n; i++) h.update(patternChunk(i, size));
    return h.digest('hex');
  };
  const upSha = expect(upChunks);
  const downSha = expect(downChunks);
  let upSent = 0;
  let downGot = 0;
  const upload = request({
    port,
    path: '/echo',
    method: 'POST',
    timeout: 60_000,
    body: (req) => {
      const pump = () => {
        if (upSent >= upChunks) return void req.end();
        const ok = req.write(patternChunk(upSent++, size));
        if (ok) setTimeout(pump, 2);
        else req.once('drain', pump);
      };
      pump();
    },
  }).catch((error) => ({ error: error.code ?? error.message }));
  const download = new Promise((resolve) => {
    const h = createHash('sha256');
    http
      .get({ host: '127.0.0.1', port, path: `/stream?chunks=${downChunks}&size=${size}&ms=8`, agent: false, timeout: 60_000 }, (res) => {
        res.on('data', (d) => {
          downGot += d.length;
          h.update(d);
        });
        res.on('end', () =>
          resolve({ status: res.statusCode, bytes: downGot, sha256: h.digest('hex'), pid: Number(res.headers['x-pid']) }),
        );
        res.on('error', (error) => resolve({ error: error.code ?? error.message }));
      })
      .on('error', (error) => resolve({ error: error.code ?? error.message }));
  });
  await waitFor(() => upSent > upChunks / 4 && downGot > (downChunks * size) / 4, {
    timeout: 20_000,
    what: 'both transfers to be under way',
  });
  const next = await upgradeOnce(app, app.pid, { timeout: 60_000 });
  const [up, down] = await Promise.all([upload, download]);
  scope.check(
    up.status === 200 && up.json?.bytes === upChunks * size && up.json?.sha256 === upSha,
    `upload: ${JSON.stringify(up.error ?? up.json)}`,
  );
  scope.check(up.json?.pid === app.pid, 'the upload was not answered by the old process');
  scope.check(down.status === 200 && down.bytes === downChunks * size && down.sha256 === downSha, `download: ${JSON.stringify(down)}`);
  scope.note(`50 MiB up and 20 MiB down byte-exact: ${up.json?.sha256 === upSha && down.sha256 === downSha}`);
  scope.row.requests += 2;
  await endOnSuccessor(scope, load, next, 100);
}

/** Upgrade of a core fixture whose events carry the successor's pid in `pid` (websocket.mjs, http2.mjs). */
async function upgradeCoreFixture(app, pid) {
  const after = app.events.length;
  process.kill(pid, 'SIGUSR2');
  const ready = await app.waitForEvent((e) => e.event === 'ready' && e.pid !== pid, { after });
  await waitFor(() => !isAlive(pid), { what: `old process ${pid} to exit` });
  return ready.pid;
}

/** 50 WebSocket clients get close code 1001 and reconnect to the successor. */
export async function websockets(scope) {
  const k = 50;
  const { app, port } = await scope.startApp({}, { script: join(CORE_FIXTURES, 'websocket.mjs') });
  scope.row.fdsBefore = fdInfo(app.pid).structural;
  const clients = await Promise.all(
    Array.from({ length: k }, () => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
      const c = { ws, closed: new Promise((resolve) => ws.once('close', (code) => resolve(code))) };
      ws.on('error', () => undefined);
      return new Promise((resolve, reject) => ws.once('message', () => resolve(c)).once('error', reject));
    }),
  );
  scope.onCleanup(() => {
    for (const c of clients) c.ws.terminate();
  });
  const load = startLoad({ port, connections: 10 });
  scope.onCleanup(() => load.stop());
  await flows(load, 200);
  const next = await upgradeCoreFixture(app, app.pid);
  const codes = await Promise.all(clients.map((c) => c.closed));
  const wrong = codes.filter((c) => c !== 1001);
  scope.check(wrong.length === 0, `${wrong.length}/${k} WebSockets closed with ${JSON.stringify([...new Set(wrong)])}, not 1001`);
  const again = new WebSocket(`ws://127.0.0.1:${port}/`);
  scope.onCleanup(() => again.terminate());
  const hello = await new Promise((resolve, reject) => again.once('message', (m) => resolve(JSON.parse(m))).once('error', reject));
  scope.check(hello.pid === next, 'a reconnect did not reach the successor');
  const drain = app.events.find((e) => e.event === 'drain-end' && e.pid === app.pid);
  scope.check(drain?.forced === 0, `drain forced ${drain?.forced}`);
  await endOnSuccessor(scope, load, next);
}

/** 10 HTTP/2 sessions, each with a stream in flight: GOAWAY, the streams complete, new sessions reach the successor. */
export async function http2Sessions(scope) {
  const k = 10;
  const { app, port } = await scope.startApp({}, { script: join(CORE_FIXTURES, 'http2.mjs') });
  scope.row.fdsBefore = fdInfo(app.pid).structural;
  const get = (session, path) =>
    new Promise((resolve) => {
      const stream = session.request({ ':path': path });
      let data = '';
      stream.setEncoding('utf8');
      stream.on('data', (d) => (data += d));
      stream.on('end', () => resolve({ ok: true, pid: JSON.parse(data).pid }));
      stream.on('error', (error) => resolve({ ok: false, error: error.code ?? error.message }));
      stream.ready = new Promise((r) => stream.once('ready', r));
      resolve.stream = stream;
    });
  const sessions = Array.from({ length: k }, () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => undefined);
    const goaway = new Promise((resolve) => session.once('goaway', () => resolve(true)));
    return { session, goaway, inflight: get(session, '/slow?ms=1500') };
  });
  scope.onCleanup(() => {
    for (const s of sessions) s.session.destroy();
  });
  await Promise.all(sessions.map((s) => new Promise((r) => (s.session.connected ? r() : s.session.once('connect', r)))));
  // A stream answered on each session proves the slow one before it reached the server.
  await Promise.all(sessions.map((s) => get(s.session, '/')));
  const next = await upgradeCoreFixture(app, app.pid);
  const results = await Promise.all(sessions.map((s) => s.inflight));
  const goaways = await Promise.all(sessions.map((s) => Promise.race([s.goaway, new Promise((r) => setTimeout(() => r(false), 1000))])));
  scope.row.requests = 2 * k + 1;
  scope.row.failed = results.filter((r) => !r.ok).length;
  scope.check(goaways.every(Boolean), `${goaways.filter((g) => !g).length}/${k} sessions got no GOAWAY`);
  scope.check(
    results.every((r) => r.ok && r.pid === app.pid),
    `in-flight streams: ${JSON.stringify(results.filter((r) => !r.ok))}`,
  );
  const fresh = http2.connect(`http://127.0.0.1:${port}`);
  scope.onCleanup(() => fresh.destroy());
  const res = await get(fresh, '/');
  scope.check(res.ok && res.pid === next, `a new session: ${JSON.stringify(res)}`);
  const drain = app.events.find((e) => e.event === 'drain-end' && e.pid === app.pid);
  scope.check(drain?.sessions === k && drain?.forced === 0, `drain: ${JSON.stringify(drain)}`);
  fresh.close();
  scope.row.fdsAfter = await settledFds(next, scope.row.fdsBefore);
  await checkLeftovers(scope, [next]);
}

/** A request longer than drainTimeout is cut at the deadline; the old process exits 0; nothing else fails. */
export async function longRequestCut(scope) {
  const drainTimeout = 1000;
  const { app, port } = await scope.startApp({ IDLE_GRACE: '100', DRAIN_TIMEOUT: String(drainTimeout) });
  scope.row.fdsBefore = fdInfo(app.pid).structural;
  const load = startLoad({ port, connections: 10 });
  scope.onCleanup(() => load.stop());
  await flows(load, 200);
  const slow = request({ port, path: '/slow?ms=30000' }).then(
    (res) => ({ status: res.status, at: Date.now() }),
    (error) => ({ error: error.code ?? error.message, at: Date.now() }),
  );
  await request({ port });
  const after = app.events.length;
  const next = await upgradeOnce(app, app.pid);
  const start = app.events.slice(after).find((e) => e.event === 'drain-start' && e.pid === app.pid);
  // Logged just before the exit upgradeOnce waited for: its line may still be in the pipe.
  const end = await app.waitForEvent((e) => e.event === 'drain-end' && e.pid === app.pid, { after, timeout: 5_000 }).catch(() => undefined);
  const cut = await slow;
  const { code } = await app.exited;
  const after2 = cut.at - start.at;
  scope.note(`the long request ended with ${cut.error ?? cut.status} ${after2} ms after drain start`);
  scope.check(cut.error === 'ECONNRESET', `the long request ended with ${cut.error ?? cut.status}`);
  scope.check(
    after2 >= drainTimeout - 100 && after2 <= drainTimeout + 1500,
    `cut ${after2} ms after drain start, drainTimeout ${drainTimeout}`,
  );
  scope.check(end?.data.forced === 1, `drain forced ${end?.data.forced}, expected exactly the long request`);
  scope.check(code === 0, `old process exit code ${code}`);
  await endOnSuccessor(scope, load, next);
}

export const scenarios = [
  { name: 'conn-idle-keepalive', run: idleKeepAlive },
  { name: 'conn-slowloris', run: slowloris },
  { name: 'conn-big-transfers', run: bigTransfers },
  { name: 'conn-websocket-1001', run: websockets },
  { name: 'conn-http2-goaway', run: http2Sessions },
  { name: 'conn-request-past-drain-timeout', run: longRequestCut },
];
