// Live connection handoff (issue #12), asserted from outside: the client's keep-alive sockets
// (their local ports) survive upgrades and are answered by the successor, the client opens no
// new connection, and the old process holds no client connection once it has moved them.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isAlive, startFixture, waitFor } from '../../../test/helpers/process.mjs';
import { tcpTable, TCP_STATE } from '../../../test/helpers/tcp-table.mjs';
import { FIXTURE, startServer } from './helpers.mjs';

/** A keep-alive client that remembers which local port answered each request, and by whom. */
function keepAliveClient(port, connections) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  let opened = 0;
  const createConnection = agent.createConnection.bind(agent);
  agent.createConnection = (...args) => {
    opened += 1;
    return createConnection(...args);
  };
  const stats = { ok: 0, failed: 0, errors: {} };
  const get = () =>
    new Promise((resolve) => {
      const req = http.request({ host: '127.0.0.1', port, path: '/', agent, timeout: 10_000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => {
          stats.ok += 1;
          resolve({ localPort: req.socket.localPort, pid: JSON.parse(body).pid });
        });
      });
      const fail = (error) => {
        stats.failed += 1;
        stats.errors[error.code ?? error.message] = (stats.errors[error.code ?? error.message] ?? 0) + 1;
        resolve({ error });
      };
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
      req.on('error', fail);
      req.end();
    });
  let running = false;
  let loops = [];
  return {
    stats,
    get opened() {
      return opened;
    },
    /** One request on each of `connections` sockets at once. */
    burst: () => Promise.all(Array.from({ length: connections }, get)),
    /** Every socket sends request after request until stop(). */
    startLoad() {
      running = true;
      loops = Array.from({ length: connections }, async () => {
        while (running) await get();
      });
    },
    async stop() {
      running = false;
      await Promise.all(loops);
    },
    close: () => agent.destroy(),
  };
}

/** Inodes of the established TCP connections whose local port is `port` (the server's side). */
function serverSideInodes(port) {
  return new Set(
    tcpTable()
      .filter((row) => row.localPort === port && row.state === TCP_STATE.established)
      .map((row) => row.inode),
  );
}

/** How many client connections of the server on `port` the process `pid` holds an fd of. */
function clientConnectionsHeld(pid, port) {
  const inodes = serverSideInodes(port);
  let held = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    if (inode !== undefined && inodes.has(inode)) held += 1;
  }
  return held;
}

/**
 * Upgrades `pid` and, while the old process waits in its onShutdown hook (HANG_SHUTDOWN),
 * counts the client connections it still holds. Returns the successor's pid and that count.
 */
async function upgradeAndInspect(fixture, pid, port) {
  const after = fixture.events.length;
  process.kill(pid, 'SIGUSR2');
  await fixture.waitForEvent({ event: 'shutdown', pid }, { after, timeout: 30_000 });
  const held = clientConnectionsHeld(pid, port);
  // The fixture's upgrade-ready line carries the successor's pid (the result's) in `pid`.
  const ready = fixture.events.slice(after).find((e) => e.event === 'upgrade-ready');
  const drain = fixture.events.slice(after).find((e) => e.event === 'drain-end' && e.pid === pid);
  await waitFor(() => !isAlive(pid), { what: `old process ${pid} to exit` });
  return { next: ready.pid, held, drain };
}

// The old process hangs in onShutdown (after its drain) for up to HOOK_TIMEOUT, so that what it
// still holds can be read from /proc before it exits.
const INSPECTABLE = { MOVE_CONNECTIONS: '1', HANG_SHUTDOWN: '1', HOOK_TIMEOUT: '1500' };

test('idle keep-alive connections move to the successor: same client sockets, no new connection', async (t) => {
  const connections = 8;
  const { fixture, port } = await startServer(t, INSPECTABLE);
  const client = keepAliveClient(port, connections);
  t.after(() => client.close());
  const before = await client.burst();
  const ports = new Set(before.map((r) => r.localPort));
  assert.equal(ports.size, connections);
  assert.equal(client.opened, connections);
  assert.equal(clientConnectionsHeld(fixture.pid, port), connections, 'the /proc probe sees the connections before the upgrade');

  const { next, held, drain } = await upgradeAndInspect(fixture, fixture.pid, port);
  assert.equal(held, 0, 'the old process holds no client connection after the moves');
  assert.equal(drain.moved, connections, JSON.stringify(drain));
  assert.equal(drain.connections, 0, 'nothing left to drain');

  const after = await client.burst();
  assert.deepEqual(client.stats.errors, {});
  assert.deepEqual(new Set(after.map((r) => r.localPort)), ports, 'the same client sockets answer');
  assert.deepEqual(new Set(after.map((r) => r.pid)), new Set([next]), 'answered by the successor');
  assert.equal(client.opened, connections, 'the client opened no new connection');
});

test('under keep-alive load, 3 upgrades fail no request and the client never reconnects', async (t) => {
  const connections = 16;
  const { fixture, port } = await startServer(t, INSPECTABLE);
  const client = keepAliveClient(port, connections);
  t.after(() => client.close());
  client.startLoad();
  await waitFor(() => client.stats.ok > 300, { what: 'load to flow' });
  assert.equal(client.opened, connections);

  let pid = fixture.pid;
  for (let i = 0; i < 3; i++) {
    const { next, held, drain } = await upgradeAndInspect(fixture, pid, port);
    assert.equal(held, 0, `generation ${i + 1} still holds client connections`);
    assert.equal(drain.moved, connections, JSON.stringify(drain));
    const okBefore = client.stats.ok;
    await waitFor(() => client.stats.ok > okBefore + 300, { what: 'load to flow on the successor' });
    pid = next;
  }
  await client.stop();
  assert.deepEqual(client.stats.errors, {}, `failed requests: ${JSON.stringify(client.stats)}`);
  assert.equal(client.stats.failed, 0);
  assert.equal(client.opened, connections, 'the client opened no new connection across 3 upgrades');
  const last = await client.burst();
  assert.deepEqual(new Set(last.map((r) => r.pid)), new Set([pid]));
});

for (const [how, env, moves] of [
  ['moveConnections: false', { MOVE_CONNECTIONS: '0' }, false],
  ['GRACE_RESTART_MOVE_CONNECTIONS=0', { GRACE_RESTART_MOVE_CONNECTIONS: '0' }, false],
  ['no option and no environment variable (the default)', {}, true],
]) {
  test(`${how}: ${moves ? 'connections move, the client keeps them' : 'the drain closes them, the client reconnects to the successor'}`, async (t) => {
    const connections = 4;
    const { fixture, port } = await startServer(t, { ...env, IDLE_GRACE: '50' });
    const client = keepAliveClient(port, connections);
    t.after(() => client.close());
    await client.burst();
    const after = fixture.events.length;
    process.kill(fixture.pid, 'SIGUSR2');
    const drain = await fixture.waitForEvent({ event: 'drain-end', pid: fixture.pid }, { after });
    assert.equal(drain.moved, moves ? connections : 0, JSON.stringify(drain));
    assert.equal(drain.closedIdle, moves ? 0 : connections, JSON.stringify(drain));
    await waitFor(() => !isAlive(fixture.pid), { what: 'old process to exit' });
    await client.burst();
    assert.deepEqual(client.stats.errors, {});
    if (moves) assert.equal(client.opened, connections, 'the client opened no new connection');
    else assert.ok(client.opened > connections, `the client reconnected (${client.opened} connections)`);
  });
}

test('a bad GRACE_RESTART_MOVE_CONNECTIONS stops the app at start with a message naming it', async () => {
  const fixture = startFixture(FIXTURE, { env: { GRACE_RESTART_MOVE_CONNECTIONS: 'yes please' } });
  const { code } = await fixture.exited;
  assert.equal(code, 1);
  assert.match(fixture.stderr, /GRACE_RESTART_MOVE_CONNECTIONS must be 1 or 0/);
  assert.match(fixture.stderr, /GRACE_ERR_ENV/);
});

test('connections move during the probation: the old process holds none before it stops accepting', async (t) => {
  const connections = 8;
  // No slow start (default 1 s, as long as the tests' probation): 8 idle sockets move at once.
  const { fixture, port } = await startServer(t, { ...INSPECTABLE, GRACE_RESTART_SLOW_START: '0' });
  const client = keepAliveClient(port, connections);
  t.after(() => client.close());
  await client.burst();
  const pid = fixture.pid;
  const after = fixture.events.length;
  process.kill(pid, 'SIGUSR2');
  await fixture.waitForEvent({ event: 'upgrade-ready' }, { after });
  // The probation lasts a second after ready; 8 idle sockets move in a few ms each.
  const stoppedAccepting = () => fixture.events.slice(after).some((e) => e.event === 'drain-start' && e.pid === pid);
  await waitFor(() => clientConnectionsHeld(pid, port) === 0 || stoppedAccepting(), { what: 'the moves or the end of the probation' });
  assert.equal(stoppedAccepting(), false, 'every connection had moved while the old process still listened');
  const drain = await fixture.waitForEvent({ event: 'drain-end', pid }, { after });
  assert.equal(drain.moved, connections, JSON.stringify(drain));
  await client.burst();
  assert.equal(client.opened, connections, 'the client opened no new connection');
});

test('a connection that never sent a byte moves too, and is answered by the successor', async (t) => {
  const { fixture, port } = await startServer(t, INSPECTABLE);
  const socket = net.connect({ port, host: '127.0.0.1' });
  t.after(() => socket.destroy());
  await new Promise((resolve) => socket.once('connect', resolve));
  // The server has accepted it once a request on another connection is answered after it.
  const other = keepAliveClient(port, 1);
  t.after(() => other.close());
  await other.burst();
  const { next, held, drain } = await upgradeAndInspect(fixture, fixture.pid, port);
  assert.equal(held, 0);
  assert.ok(drain.moved >= 1, JSON.stringify(drain));
  socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  let response = '';
  socket.setEncoding('utf8');
  socket.on('data', (d) => (response += d));
  await waitFor(() => response.includes('}'), { what: 'a response on the moved socket' });
  assert.match(response, /^HTTP\/1\.1 200/);
  assert.equal(JSON.parse(response.slice(response.indexOf('\r\n\r\n') + 4)).pid, next);
});

test('a successor that dies with connections on their way: what it never answered comes back to the old process, which serves it on the same sockets', async (t) => {
  const connections = 40;
  const crashAt = 5;
  const behaviour = join(mkdtempSync(join(tmpdir(), 'grace-move-')), 'behaviour');
  writeFileSync(behaviour, 'ok');
  const { fixture, port } = await startServer(t, { MOVE_CONNECTIONS: '1', BEHAVIOUR_FILE: behaviour, LOG_CONNECTIONS: '1' });
  const old = fixture.pid;
  const client = keepAliveClient(port, connections);
  t.after(() => client.close());
  const ports = new Set((await client.burst()).map((r) => r.localPort));
  assert.equal(ports.size, connections);
  // The successor exits at the 5th connection it is given, before adopting it; the others are
  // on their way then (many at a time), unanswered.
  writeFileSync(behaviour, `crash-on-connection:${crashAt}`);
  const after = fixture.events.length;
  process.kill(old, 'SIGUSR2');
  const failed = await fixture.waitForEvent({ event: 'upgrade-failed', pid: old }, { after });
  const successor = fixture.events.slice(after).find((e) => e.event === 'connection' && e.count === crashAt);
  assert.ok(successor, `the successor crashed at its ${crashAt}th connection: ${JSON.stringify(failed)}`);
  const successorHad = new Set(
    fixture.events
      .slice(after)
      .filter((e) => e.event === 'connection' && e.pid === successor.pid)
      .map((e) => e.remotePort),
  );
  const results = await client.burst();
  // Only a connection the successor had adopted (and answered) before it died may be lost.
  const lost = results.filter((r) => r.error !== undefined || !ports.has(r.localPort));
  t.diagnostic(
    `successor had ${successorHad.size}, requests failed ${client.stats.failed} ${JSON.stringify(client.stats.errors)}, reconnected ${client.opened - connections}`,
  );
  assert.ok(lost.length <= crashAt - 1, `${lost.length} connections lost, more than the ${crashAt - 1} the successor adopted`);
  for (const r of results.filter((r) => r.error === undefined)) assert.equal(r.pid, old, 'the old process serves again');
  assert.ok(
    results.filter((r) => r.error === undefined && ports.has(r.localPort)).length >= connections - (crashAt - 1),
    'the rest came back on their own sockets',
  );
});

test('the move is paced by the successor: as many sockets on their way as it adopts within the stall budget, from 2 before its pace is known', async () => {
  const { AdoptionPace } = await import('../dist/adoption-pace.js');
  const pace = new AdoptionPace();
  assert.equal(pace.window(), 2);
  // An idle successor: 2 answers 0.2 ms after they were sent.
  pace.answered(2, 0, 0.2);
  assert.equal(pace.window(), 50);
  // It starts serving load: each answer now takes 15 ms, and the window closes to one socket.
  let t = 0.2;
  for (let i = 0; i < 8; i++) pace.answered(1, t, (t += 15));
  assert.equal(pace.window(), 1);
  // Quiet again: the window opens as fast answers come in, never past MOVE_WINDOW.
  for (let i = 0; i < 30; i++) pace.answered(10, t, (t += 0.1));
  assert.equal(pace.window(), 128);
  // A batch of answers for sockets sent long ago counts from the previous answer, not from their sending.
  pace.answered(4, 0, (t += 2));
  assert.ok(pace.window() > 1 && pace.window() < 128, `window ${pace.window()}`);
});

/**
 * Sends one whole request on a fresh connection the moment it is open, and resolves with the
 * raw answer (or an error code). The request is written in one go, so it is in the server's
 * kernel buffer when the server accepts the connection.
 */
function requestOnFreshConnection(port, request, timeout = 10_000) {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    let answer = '';
    socket.setEncoding('latin1');
    socket.on('data', (d) => {
      answer += d;
      if (/\r\n\r\n[\s\S]*\}/.test(answer)) {
        socket.destroy();
        resolve({ answer });
      }
    });
    socket.setTimeout(timeout, () => {
      socket.destroy();
      resolve({ error: 'TIMEOUT', answer });
    });
    socket.on('error', (error) => resolve({ error: error.code ?? error.message, answer }));
    socket.on('close', () => resolve({ error: 'CLOSED', answer }));
    socket.write(request);
  });
}

test('a connection accepted during the probation is moved whole: its first request (a 64 KiB POST) is answered once, by one process', async (t) => {
  // The move takes such a connection in its 'connection' event. http's own listener has
  // scheduled a resume of the socket for the next tick then; before the fix, that resume started
  // reading in the old process after the socket was sent, so both processes read the request:
  // the old one aborted its half, the successor answered the other half 400.
  const { fixture, port } = await startServer(t, { MOVE_CONNECTIONS: '1' });
  const body = Buffer.alloc(64 * 1024, 'x');
  const request = Buffer.concat([Buffer.from(`POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`), body]);
  const old = fixture.pid;
  const after = fixture.events.length;
  process.kill(old, 'SIGUSR2');
  await fixture.waitForEvent({ event: 'upgrade-ready' }, { after });
  const results = [];
  // Fresh connections, 8 at a time, until the old process stops accepting (its probation ends).
  const stoppedAccepting = () => fixture.events.slice(after).some((e) => e.event === 'drain-start' && e.pid === old);
  while (!stoppedAccepting())
    results.push(...(await Promise.all(Array.from({ length: 8 }, () => requestOnFreshConnection(port, request)))));
  const wrong = results.filter(
    (r) => r.error !== undefined || !/^HTTP\/1\.1 200 /.test(r.answer) || !r.answer.includes(`"bytes":${body.length}`),
  );
  const drain = await fixture.waitForEvent({ event: 'drain-end', pid: old }, { after });
  t.diagnostic(`${results.length} requests on fresh connections during the probation, ${drain.moved} moved`);
  assert.ok(drain.moved > 0, `some connections accepted during the probation moved: ${JSON.stringify(drain)}`);
  assert.deepEqual(
    wrong.map((r) => r.error ?? r.answer.split('\r\n')[0]),
    [],
    `${wrong.length} of ${results.length} answered wrong`,
  );
});
