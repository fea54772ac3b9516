// The supervisor relay, asserted from outside: under `grace-restart run` with moveConnections,
// a rolling upgrade moves each idle keep-alive connection from the retiring worker through the
// supervisor to its replacement, so keep-alive clients under load neither fail a request nor
// open a TCP connection; without it, today's drain (clients reconnect) still fails nothing.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isAlive, runCli as cli, startFixture, waitFor } from '../../../test/helpers/process.mjs';

const BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const APP = fileURLToPath(new URL('../../core/test/fixtures/server.mjs', import.meta.url));
const tempDir = () => mkdtempSync(join(tmpdir(), 'grace-relay-test-'));

async function startSupervisor(t, { workers, env }) {
  const pidFile = join(tempDir(), 'sup.pid');
  const supervisor = startFixture(BIN, {
    args: ['run', '--workers', String(workers), '--pid-file', pidFile, '--', 'node', APP],
    env: { PORT: '0', ...env },
  });
  t.after(() => supervisor.cleanup());
  const listening = await supervisor.waitForEvent({ event: 'listening' });
  await waitFor(() => existsSync(pidFile), { what: 'the supervisor PID file' });
  return { supervisor, port: listening.address.port, pidFile };
}

const status = async (pidFile) => JSON.parse((await cli(['status', '--pid-file', pidFile, '--json'])).stdout);

/**
 * `connections` keep-alive sockets, each sending request after request (no retries: a reset,
 * a timeout or a non-2xx is one failure). Counts every TCP connection the client opens, and
 * remembers the local port of each failed request and the local ports each server pid answered.
 */
function keepAliveLoad({ port, connections }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const createConnection = agent.createConnection.bind(agent);
  let opened = 0;
  agent.createConnection = (...args) => {
    opened += 1;
    return createConnection(...args);
  };
  const portsByPid = new Map();
  const stats = { ok: 0, failed: 0, errors: {}, failedPorts: [], pids: new Set(), portsOf: (pid) => portsByPid.get(pid) ?? new Set() };
  let running = true;
  const once = () =>
    new Promise((resolve) => {
      let localPort;
      const req = http.request({ host: '127.0.0.1', port, path: '/', agent, timeout: 10_000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => {
          if (res.statusCode === 200) {
            const { pid } = JSON.parse(body);
            stats.ok += 1;
            stats.pids.add(pid);
            if (!portsByPid.has(pid)) portsByPid.set(pid, new Set());
            portsByPid.get(pid).add(localPort);
          } else fail(`http ${res.statusCode}`);
          resolve();
        });
        res.on('error', (error) => {
          fail(error.code ?? error.message);
          resolve();
        });
      });
      req.on('socket', (socket) => {
        localPort = socket.localPort;
        if (socket.connecting) socket.once('connect', () => (localPort = socket.localPort));
      });
      const fail = (kind) => {
        stats.failed += 1;
        stats.errors[kind] = (stats.errors[kind] ?? 0) + 1;
        stats.failedPorts.push(localPort);
      };
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
      req.on('error', (error) => {
        fail(error.code ?? error.message);
        resolve();
      });
      req.end();
    });
  const loop = async () => {
    while (running) await once();
  };
  const loops = Array.from({ length: connections }, loop);
  return {
    stats,
    get opened() {
      return opened;
    },
    /** Resolves once `count` more requests have been answered. */
    flowing: (count, what) => {
      const from = stats.ok;
      return waitFor(() => stats.ok >= from + count, { what, timeout: 30_000 });
    },
    /** Opens `count` more keep-alive connections, each sending request after request. */
    grow(count) {
      agent.maxSockets += count;
      for (let i = 0; i < count; i++) loops.push(loop());
    },
    async stop() {
      running = false;
      await Promise.all(loops);
      agent.destroy();
    },
  };
}

/** Upgrades through the CLI, then waits until only the new generation's workers are left. */
async function upgrade(pidFile, generation, workers) {
  const result = await cli(['upgrade', '--pid-file', pidFile]);
  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.match(result.stdout, new RegExp(`upgraded to generation ${generation}`));
  await waitFor(
    async () => {
      const now = await status(pidFile);
      return now.workers.length === workers && now.workers.every((w) => w.generation === generation);
    },
    { what: `the retired workers of generation ${generation - 1} to exit`, timeout: 30_000 },
  );
}

for (const workers of [1, 2]) {
  const connections = workers === 1 ? 16 : 32;
  test(`moveConnections, ${workers} worker(s), ${connections} keep-alive clients under load, 3 rolling upgrades: no failed request, no new connection`, async (t) => {
    const { port, pidFile } = await startSupervisor(t, { workers, env: { MOVE_CONNECTIONS: '1' } });
    const load = keepAliveLoad({ port, connections });
    t.after(() => load.stop());
    await load.flowing(500, 'load to flow');
    // Which worker accepts a connection is the kernel's choice: once it gave all 32 to one of
    // two, and the last generation's other worker then had none to answer. Open more until
    // every worker holds some (the relay keeps each slot's connections in that slot).
    let opened = connections;
    for (let i = 0; i < 8 && load.stats.pids.size < workers; i++) {
      load.grow(4);
      opened += 4;
      await load.flowing(200, 'load on the new connections');
    }
    assert.equal(load.stats.pids.size, workers, 'every worker holds keep-alive connections');
    assert.equal(load.opened, opened);
    const pidsBefore = new Set(load.stats.pids);
    for (let generation = 2; generation <= 4; generation++) {
      await upgrade(pidFile, generation, workers);
      await load.flowing(500, `load to flow on generation ${generation}`);
    }
    const last = new Set((await status(pidFile)).workers.map((w) => w.pid));
    load.stats.pids.clear();
    await load.flowing(200, 'load on the last generation');
    await load.stop();
    t.diagnostic(`requests ${load.stats.ok}, failed ${load.stats.failed}, client connections opened ${load.opened}`);
    assert.deepEqual(load.stats.errors, {}, JSON.stringify(load.stats));
    assert.equal(load.opened, opened, 'the clients opened no connection across 3 rolling upgrades');
    assert.deepEqual(load.stats.pids, last, 'the same client connections are answered by the last generation');
    for (const pid of pidsBefore) assert.ok(!last.has(pid));
  });
}

test("moveConnections off: 3 rolling upgrades under keep-alive load fail no request, the clients reconnect (today's drain)", async (t) => {
  const connections = 16;
  const { port, pidFile } = await startSupervisor(t, { workers: 2, env: { MOVE_CONNECTIONS: '0' } });
  const load = keepAliveLoad({ port, connections });
  t.after(() => load.stop());
  await load.flowing(300, 'load to flow');
  for (let generation = 2; generation <= 4; generation++) {
    await upgrade(pidFile, generation, 2);
    await load.flowing(300, `load to flow on generation ${generation}`);
  }
  await load.stop();
  t.diagnostic(`requests ${load.stats.ok}, failed ${load.stats.failed}, client connections opened ${load.opened}`);
  assert.deepEqual(load.stats.errors, {}, JSON.stringify(load.stats));
  assert.ok(load.opened > connections, `the clients reconnected (${load.opened} connections)`);
});

test('the replacement dies during the relay: only requests on connections it had fail, the rest drain and are served', async (t) => {
  // Two workers: with one, the crash would leave no worker on the listening socket (the old one
  // stopped accepting), and cluster closes a socket no worker holds: connects would be refused
  // until the restart binds again, which is the supervisor's single-worker limit, not the relay's.
  const connections = 32;
  const crashAt = 3;
  const behaviour = join(tempDir(), 'behaviour');
  writeFileSync(behaviour, 'ok');
  const { supervisor, port, pidFile } = await startSupervisor(t, { workers: 2, env: { MOVE_CONNECTIONS: '1', BEHAVIOUR_FILE: behaviour } });
  const load = keepAliveLoad({ port, connections });
  t.after(() => load.stop());
  await load.flowing(500, 'load to flow');
  const before = (await status(pidFile)).workers;
  const slot0 = before.find((w) => w.slot === 0);
  // The kernel, not the supervisor, spreads connections over the two workers, sometimes 31 to 1:
  // open more until slot 0 has enough for its replacement to crash in the middle of the relay.
  for (let extra = 0; load.stats.portsOf(slot0.pid).size < crashAt && extra < 96; extra += 8) {
    load.grow(8);
    await load.flowing(200, 'load to flow on the new connections');
  }
  assert.ok(
    load.stats.portsOf(slot0.pid).size >= crashAt,
    `worker ${slot0.pid} (slot 0) serves ${load.stats.portsOf(slot0.pid).size} connections, too few to crash its replacement during the relay`,
  );
  // Slot 0's replacement exits at its 3rd connection, before adopting it: 2 moved, 1 in flight.
  writeFileSync(behaviour, `crash-on-connection:${crashAt}`);
  const after = supervisor.events.length;
  assert.equal((await cli(['upgrade', '--pid-file', pidFile])).code, 0);
  const crashed = await supervisor.waitForEvent((e) => e.event === 'connection' && e.count === crashAt, { after });
  // Every worker of generation 1 drains and exits; the crashed slot is restarted.
  await waitFor(
    async () => {
      const now = (await status(pidFile)).workers;
      return now.length === 2 && now.every((w) => !before.some((b) => b.pid === w.pid) && w.pid !== crashed.pid);
    },
    { what: 'the old workers to exit and the crashed slot to be restarted', timeout: 30_000 },
  );
  const last = new Set((await status(pidFile)).workers.map((w) => w.pid));
  load.stats.pids.clear();
  await load.flowing(500, 'load to flow on the new workers');
  await load.stop();
  const crashedHad = new Set(
    supervisor.events
      .slice(after)
      .filter((e) => e.event === 'connection' && e.pid === crashed.pid)
      .map((e) => e.remotePort),
  );
  t.diagnostic(
    `requests ${load.stats.ok}, failed ${load.stats.failed} ${JSON.stringify(load.stats.errors)}, connections the crashed replacement had ${crashedHad.size}, opened ${load.opened}`,
  );
  assert.equal(crashedHad.size, crashAt);
  for (const localPort of load.stats.failedPorts)
    assert.ok(crashedHad.has(localPort), `a request failed on ${localPort}, a connection the crashed replacement never had`);
  assert.ok(load.stats.failed <= crashedHad.size, JSON.stringify(load.stats.errors));
  for (const pid of load.stats.pids) assert.ok(last.has(pid), `answered by ${pid}, not one of the new workers`);
});

test('a stop in the middle of a relay: the supervisor and every worker exit 0, the PID file goes, no request waits for its timeout', async (t) => {
  const { supervisor, port, pidFile } = await startSupervisor(t, { workers: 1, env: { MOVE_CONNECTIONS: '1', LOG_CONNECTIONS: '1' } });
  // Idle keep-alive sockets (one request each) to make the relay last, beside busy clients.
  const idle = Array.from({ length: 300 }, () => {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => {});
    socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    return socket;
  });
  t.after(() => {
    for (const socket of idle) socket.destroy();
  });
  const load = keepAliveLoad({ port, connections: 16 });
  t.after(() => load.stop());
  await load.flowing(300, 'load to flow');
  const [old] = (await status(pidFile)).workers.map((w) => w.pid);
  const after = supervisor.events.length;
  const upgrading = cli(['upgrade', '--pid-file', pidFile]);
  // The replacement's first adopted connection: the relay is running.
  const first = await supervisor.waitForEvent((e) => e.event === 'connection' && e.pid !== old && e.pid !== supervisor.pid, {
    after,
    timeout: 30_000,
  });
  process.kill(supervisor.pid, 'SIGTERM');
  const exit = await supervisor.exited;
  await upgrading;
  await load.stop();
  const workers = new Set(supervisor.events.filter((e) => e.event === 'ready').map((e) => e.pid));
  const adopted = supervisor.events.slice(after).filter((e) => e.event === 'connection' && e.pid === first.pid).length;
  t.diagnostic(
    `replacement ${first.pid} had ${adopted} connections at the stop; requests ${load.stats.ok}, failed ${load.stats.failed} ${JSON.stringify(load.stats.errors)}`,
  );
  assert.deepEqual(exit, { code: 0, signal: null }, supervisor.stderr);
  assert.ok(workers.has(old) && workers.has(first.pid));
  await waitFor(() => [...workers].every((pid) => !isAlive(pid)), { what: 'every worker to exit' });
  assert.equal(existsSync(pidFile), false, 'the PID file is removed');
  // A socket left in the channel with nobody reading it would hold its request until the timeout.
  assert.equal(load.stats.errors.TIMEOUT, undefined, JSON.stringify(load.stats.errors));
});
