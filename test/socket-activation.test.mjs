// systemd socket activation as users write it, with Debian's real systemd-socket-activate
// (package `systemd`): it binds the sockets, waits for the first connection, then execs
// the app with LISTEN_FDS / LISTEN_PID / LISTEN_FDNAMES exactly as a `.socket` unit does.
// The app must serve on those sockets (not bind its own: that fails with EADDRINUSE), and
// upgrade with SIGUSR2 under keep-alive load without failing a request.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { request, startLoad } from './helpers/load.mjs';
import { followJsonEvents, freePort, isAlive, runCli as cli, waitFor } from './helpers/process.mjs';

const ACTIVATE = '/usr/bin/systemd-socket-activate';

/**
 * `env` plus the probation the suite's runner sets (scripts/run-tests.sh), which
 * systemd-socket-activate would drop: the tests here time their keep-alive connections by it.
 */
function withSuiteSettings(env) {
  const probation = process.env.GRACE_RESTART_PROBATION;
  return probation === undefined ? env : { GRACE_RESTART_PROBATION: probation, ...env };
}
const example = (name) => fileURLToPath(new URL(`../examples/${name}/dist/server.js`, import.meta.url));
const TWO_LISTENERS = fileURLToPath(new URL('./fixtures/two-listeners.mjs', import.meta.url));

function tempDir(t) {
  const dir = mkdtempSync(join(tmpdir(), 'grace-activate-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// The examples report ready as {event:'ready'} (Express, Koa) or as a pino line (Fastify).
const isReady = (e) => e.event === 'ready' || (e.msg === 'ready' && e.name === 'grace-restart');

/**
 * Runs `script` under systemd-socket-activate listening on `sockets`, connects once to let
 * it exec the app, and resolves when the app is ready. Kills every generation at the end.
 */
async function activate(t, { script, sockets, fdnames, env = {}, connect }) {
  assert.ok(existsSync(ACTIVATE), `${ACTIVATE} is missing: apt-get install systemd`);
  assert.ok(existsSync(script), `${script} is missing: build first (npm run build)`);
  const args = sockets.flatMap((s) => ['-l', s]);
  if (fdnames) args.push(`--fdname=${fdnames.join(':')}`);
  // systemd-socket-activate passes only PATH, HOME, TERM and what -E names.
  for (const [key, value] of Object.entries(withSuiteSettings(env))) args.push('-E', `${key}=${value}`);
  const child = spawn(ACTIVATE, [...args, '--', process.execPath, script], { stdio: ['ignore', 'pipe', 'pipe'] });
  const pids = new Set([child.pid]);
  const output = followJsonEvents(child, { onEvent: (e) => typeof e.pid === 'number' && pids.add(e.pid) });
  t.after(() => {
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
  await waitFor(() => output.stderr.split('\n').filter((l) => l.startsWith('Listening on')).length === sockets.length, {
    what: `systemd-socket-activate to listen: ${output.stderr}`,
  });
  // The first connection makes it exec the app, which answers it on the inherited socket.
  const first = await request(connect);
  assert.equal(first.status, 200, first.body);
  const ready = await output.waitForEvent(isReady);
  // LISTEN_PID named this very process: systemd-socket-activate exec'd node in place.
  assert.equal(ready.pid, child.pid);
  assert.equal(first.json.pid, child.pid);
  return { ...output, pid: child.pid };
}

/** SIGUSR2 to `pid`; resolves with the successor's pid once it is ready and `pid` is gone. */
async function upgrade(app, pid) {
  const after = app.events.length;
  process.kill(pid, 'SIGUSR2');
  const ready = await app.waitForEvent((e) => isReady(e) && e.pid !== pid, { after });
  await waitFor(() => !isAlive(pid), { what: `old process ${pid} to exit` });
  return ready.pid;
}

const flows = (load, count = 200) => {
  const target = load.stats.ok + count;
  return waitFor(() => load.stats.ok >= target, { what: `${count} more requests` });
};

/** Upgrades `times` times under keep-alive load on every target; asserts no request failed. */
async function upgradesUnderLoad(t, app, targets, times) {
  const loads = targets.map((target) => startLoad({ ...target, connections: 10 }));
  t.after(() => Promise.all(loads.map((l) => l.stop())));
  await Promise.all(loads.map((l) => flows(l, 100)));
  let pid = app.pid;
  for (let i = 0; i < times; i++) {
    pid = await upgrade(app, pid);
    await Promise.all(loads.map((l) => flows(l, 100)));
  }
  for (const load of loads) {
    const result = await load.stop();
    t.diagnostic(`${result.ok} requests over ${times} upgrade(s), ${result.failed} failed, by pid ${JSON.stringify(result.pids)}`);
    assert.equal(result.failed, 0, `failed requests: ${JSON.stringify(result.errors)}`);
    assert.ok(result.pids[pid] > 0, 'the last generation served');
  }
  return pid;
}

for (const framework of ['express', 'fastify', 'koa']) {
  test(`${framework} example, unnamed socket (no FileDescriptorName=): serves on it, 2 upgrades under load fail no request`, async (t) => {
    const port = await freePort();
    const app = await activate(t, {
      script: example(framework),
      sockets: [`127.0.0.1:${port}`],
      env: { PORT: port, HOST: '127.0.0.1' },
      connect: { port },
    });
    const last = await upgradesUnderLoad(t, app, [{ port }], 2);
    const res = await request({ port });
    assert.equal(res.json.pid, last);
    assert.equal(res.json.generation, 3);
    assert.equal(
      app.events.some((e) => e.event === 'listen-failed'),
      false,
    );
  });

  test(`${framework} example, socket named --fdname=web: found by its address, an upgrade under load fails no request`, async (t) => {
    const port = await freePort();
    const app = await activate(t, {
      script: example(framework),
      sockets: [`127.0.0.1:${port}`],
      fdnames: ['web'],
      env: { PORT: port, HOST: '127.0.0.1' },
      connect: { port },
    });
    await upgradesUnderLoad(t, app, [{ port }], 1);
  });
}

test('two sockets (TCP and unix), unnamed: each listen() takes the one bound where it asks; upgrades under load on both', async (t) => {
  const { service: app, port, socketPath } = await activateTwoSockets(t);
  await upgradesUnderLoad(t, app, [{ port }, { socketPath }], 2);
  assert.ok(existsSync(socketPath), 'the socket file systemd created is still there');
  const last = (await request({ socketPath })).json.pid;
  process.kill(last, 'SIGTERM');
  await waitFor(() => !isAlive(last), { what: 'the last generation to stop' });
  assert.ok(existsSync(socketPath), "a final stop leaves systemd's socket file to systemd");
});

test('two sockets named by --fdname and claimed with listen({ fdName }): upgrades under load on both', async (t) => {
  // Claimed by name, so the addresses the app asks for do not matter: given wrong on purpose.
  const {
    service: app,
    port,
    socketPath,
  } = await activateTwoSockets(t, {
    fdnames: ['admin', 'web'],
    env: { PORT: 1, HOST: '127.0.0.1', SOCKET_PATH: join(tempDir(t), 'elsewhere.sock'), FD_NAMES: 'web,admin' },
  });
  await upgradesUnderLoad(t, app, [{ port }, { socketPath }], 1);
});

test('two TCP sockets, the app listens on one: it takes that one and closes the other', async (t) => {
  const [unused, port] = [await freePort(), await freePort()];
  const app = await activate(t, {
    script: example('express'),
    sockets: [`127.0.0.1:${unused}`, `127.0.0.1:${port}`],
    env: { PORT: port, HOST: '127.0.0.1' },
    connect: { port },
  });
  const closed = await request({ port: unused, timeout: 5000 }).then(
    (res) => `answered ${res.status}`,
    (error) => error.code,
  );
  assert.equal(closed, 'ECONNREFUSED', 'the socket no listen() asked for is closed');
  assert.equal((await request({ port })).json.pid, app.pid);
});

// ---------------------------------------------------------------------------------------
// `grace-restart run` socket-activated: the supervisor holds the sockets systemd passed and
// gives every worker (first ones, replacements, crash restarts) its own copy at fd 3, 4, ….

const BIN = fileURLToPath(new URL('../packages/cli/dist/bin.js', import.meta.url));

/**
 * Runs `grace-restart run --workers N -- node script` under systemd-socket-activate, connects
 * once to let it exec the supervisor, and resolves once the supervisor wrote its PID file.
 */
async function activateSupervisor(t, { script, sockets, fdnames, env = {}, workers, connect }) {
  assert.ok(existsSync(ACTIVATE), `${ACTIVATE} is missing: apt-get install systemd`);
  const dir = tempDir(t);
  const pidFile = join(dir, 'sup.pid');
  const args = sockets.flatMap((s) => ['-l', s]);
  if (fdnames) args.push(`--fdname=${fdnames.join(':')}`);
  for (const [key, value] of Object.entries(withSuiteSettings(env))) args.push('-E', `${key}=${value}`);
  const run = [BIN, 'run', '--workers', String(workers), '--pid-file', pidFile, '--', 'node', script];
  const child = spawn(ACTIVATE, [...args, '--', process.execPath, ...run], { stdio: ['ignore', 'pipe', 'pipe'] });
  const output = followJsonEvents(child);
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  t.after(async () => {
    const pids = [child.pid, ...(await status(pidFile).catch(() => ({ workers: [] }))).workers.map((w) => w.pid)];
    for (const pid of pids) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    child.stdout.destroy();
    child.stderr.destroy();
  });
  await waitFor(() => output.stderr.split('\n').filter((l) => l.startsWith('Listening on')).length === sockets.length, {
    what: `systemd-socket-activate to listen: ${output.stderr}`,
  });
  // The first connection makes it exec the supervisor; a worker answers it on the inherited socket.
  const first = await request(connect);
  assert.equal(first.status, 200, first.body);
  await waitFor(() => existsSync(pidFile), { what: `the supervisor's PID file: ${output.stderr.slice(-2000)}` });
  // LISTEN_PID named this very process: systemd-socket-activate exec'd the supervisor in place.
  assert.equal(Number(readFileSync(pidFile, 'utf8')), child.pid);
  assert.notEqual(first.json.pid, child.pid, 'a worker answers, not the supervisor');
  assert.match(output.stderr, /socket activation: every worker serves on the inherited sockets/);
  return { ...output, pid: child.pid, pidFile, exited };
}

async function status(pidFile) {
  const result = await cli(['status', '--pid-file', pidFile, '--json']);
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout);
}

/** `grace-restart upgrade` `times` times under keep-alive load on every target; no request may fail. */
async function supervisorUpgradesUnderLoad(t, sup, targets, times) {
  const loads = targets.map((target) => startLoad({ ...target, connections: 10 }));
  t.after(() => Promise.all(loads.map((l) => l.stop())));
  await Promise.all(loads.map((l) => flows(l, 100)));
  for (let i = 0; i < times; i++) {
    const result = await cli(['upgrade', '--pid-file', sup.pidFile]);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    await Promise.all(loads.map((l) => flows(l, 100)));
  }
  const workers = (await status(sup.pidFile)).workers.filter((w) => w.state === 'ready').map((w) => w.pid);
  // The keep-alive connections move to the new workers over core's slow start (1 s), not at once.
  await waitFor(() => loads.every((load) => workers.some((pid) => load.stats.pids.get(pid) > 0)), {
    what: `answers from the new workers ${workers} on every socket`,
  });
  for (const load of loads) {
    const result = await load.stop();
    t.diagnostic(
      `${result.ok} requests over ${times} supervisor upgrade(s), ${result.failed} failed, by pid ${JSON.stringify(result.pids)}`,
    );
    assert.equal(result.failed, 0, `failed requests: ${JSON.stringify(result.errors)}`);
    assert.equal(result.pids[sup.pid], undefined, 'the supervisor never serves');
  }
}

/** SIGTERM to the supervisor: it drains and exits 0 (systemd-socket-activate exec'd it: its exit is ours to see). */
async function stopSupervisor(sup) {
  process.kill(sup.pid, 'SIGTERM');
  assert.deepEqual(await sup.exited, { code: 0, signal: null }, sup.stderr.slice(-2000));
  assert.equal(existsSync(sup.pidFile), false, 'the PID file is removed');
}

/**
 * The two-listener app on a unix socket and a TCP one (the unix socket first: order alone would
 * hand it to the TCP listen()), self-upgrading, or with `workers` under `grace-restart run`.
 * `env` adds to (or overrides) the addresses the app is told.
 */
async function activateTwoSockets(t, { workers, fdnames, env = {} } = {}) {
  const port = await freePort();
  const socketPath = join(tempDir(t), 'admin.sock');
  const options = {
    script: TWO_LISTENERS,
    sockets: [socketPath, `127.0.0.1:${port}`],
    fdnames,
    env: { PORT: port, HOST: '127.0.0.1', SOCKET_PATH: socketPath, ...env },
    connect: { port },
  };
  const service = workers === undefined ? await activate(t, options) : await activateSupervisor(t, { ...options, workers });
  return { service, port, socketPath };
}

for (const framework of ['express', 'fastify', 'koa']) {
  test(`grace-restart run, ${framework} example, 2 workers, unnamed socket: the workers serve on it, 2 upgrades under load fail no request`, async (t) => {
    const port = await freePort();
    const sup = await activateSupervisor(t, {
      script: example(framework),
      sockets: [`127.0.0.1:${port}`],
      env: { PORT: port, HOST: '127.0.0.1' },
      workers: 2,
      connect: { port },
    });
    await supervisorUpgradesUnderLoad(t, sup, [{ port }], 2);
    assert.equal((await status(sup.pidFile)).generation, 3);
    await stopSupervisor(sup);
  });
}

test('grace-restart run, 1 worker, TCP and unix sockets unnamed: upgrades under load on both; a SIGKILLed worker is restarted and the connects made meanwhile wait in the backlog', async (t) => {
  const { service: sup, port, socketPath } = await activateTwoSockets(t, { workers: 1 });
  await supervisorUpgradesUnderLoad(t, sup, [{ port }, { socketPath }], 2);
  for (let i = 0; i < 2; i++) {
    const [worker] = (await status(sup.pidFile)).workers.map((w) => w.pid);
    process.kill(worker, 'SIGKILL');
    await waitFor(() => !isAlive(worker), { what: `worker ${worker} to die` });
    // No worker now: the supervisor's copy keeps both sockets open, so these connect and wait.
    const [tcp, unix] = await Promise.all([request({ port }), request({ socketPath })]);
    assert.equal(tcp.status, 200);
    assert.equal(unix.status, 200);
    assert.notEqual(tcp.json.pid, worker, 'the restarted worker answers');
    assert.equal(unix.json.pid, tcp.json.pid);
  }
  await stopSupervisor(sup);
  assert.ok(existsSync(socketPath), "a final stop leaves systemd's socket file to systemd");
});

test('grace-restart run, 2 workers, sockets named by --fdname and claimed with listen({ fdName }): an upgrade under load on both fails no request', async (t) => {
  // Claimed by name, so the addresses the app asks for do not matter: given wrong on purpose.
  const {
    service: sup,
    port,
    socketPath,
  } = await activateTwoSockets(t, {
    workers: 2,
    fdnames: ['admin', 'web'],
    env: { PORT: 1, HOST: '127.0.0.1', SOCKET_PATH: join(tempDir(t), 'elsewhere.sock'), FD_NAMES: 'web,admin' },
  });
  await supervisorUpgradesUnderLoad(t, sup, [{ port }, { socketPath }], 1);
  await stopSupervisor(sup);
});

// ---------------------------------------------------------------------------------------
// Two sockets of one name (systemd names every socket of a .socket unit after the unit;
// systemd-socket-activate without --fdname names both `unknown`): a keep-alive connection that
// moves to the new version must be served by the listener it was accepted on.

/** A keep-alive client holding one connection to `target`; `get()` says whether it was reused. */
function keepAliveClient(target) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const get = () =>
    new Promise((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', ...target, path: '/', agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ ...JSON.parse(body), reused: req.reusedSocket }));
      });
      req.on('error', reject);
    });
  return { get, close: () => agent.destroy() };
}

async function movedConnectionsKeepTheirListener(t, { port, socketPath }, upgradeOnce) {
  const clients = { tcp: keepAliveClient({ port }), unix: keepAliveClient({ socketPath }) };
  t.after(() => {
    for (const c of Object.values(clients)) c.close();
  });
  const before = { tcp: await clients.tcp.get(), unix: await clients.unix.get() };
  await upgradeOnce();
  for (const [listener, client] of Object.entries(clients)) {
    // The connection moved: the same TCP connection, a new process, the listener it was on.
    const after = await client.get();
    assert.equal(after.reused, true, `${listener}: the keep-alive connection was kept`);
    assert.notEqual(after.pid, before[listener].pid, `${listener}: served by the new version`);
    assert.equal(after.listener, listener, `a moved ${listener} connection is served by the ${listener} listener`);
  }
}

test('two unnamed sockets (both `unknown`), self-upgrade: each moved keep-alive connection is served by its own listener', async (t) => {
  const { service: app, port, socketPath } = await activateTwoSockets(t);
  await movedConnectionsKeepTheirListener(t, { port, socketPath }, () => upgrade(app, app.pid));
});

test('two unnamed sockets (both `unknown`), grace-restart run: each relayed keep-alive connection is served by its own listener', async (t) => {
  const { service: sup, port, socketPath } = await activateTwoSockets(t, { workers: 1 });
  await movedConnectionsKeepTheirListener(t, { port, socketPath }, async () => {
    const result = await cli(['upgrade', '--pid-file', sup.pidFile]);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    // The retired worker has handed its connections over once it is gone.
    await waitFor(async () => (await status(sup.pidFile)).workers.every((w) => w.generation === 2), { what: 'the retired worker to exit' });
  });
});

test("grace-restart run socket-activated, TCP and unix: `upgrade --supervisor` under load on both fails no request; the new supervisor serves on the same sockets, the unix file stays systemd's", async (t) => {
  const { service: sup, port, socketPath } = await activateTwoSockets(t, { workers: 2 });
  const loads = [startLoad({ port, connections: 10 }), startLoad({ socketPath, connections: 10 })];
  t.after(() => Promise.all(loads.map((l) => l.stop())));
  await Promise.all(loads.map((l) => flows(l, 100)));
  const result = await cli(['upgrade', '--supervisor', '--pid-file', sup.pidFile]);
  assert.equal(result.code, 0, result.stdout + result.stderr);
  const newPid = Number(readFileSync(sup.pidFile, 'utf8'));
  t.after(() => isAlive(newPid) && process.kill(newPid, 'SIGKILL'));
  assert.deepEqual(await sup.exited, { code: 0, signal: null }, 'the old supervisor drained and exited');
  await Promise.all(loads.map((l) => flows(l, 200)));
  for (const load of loads) {
    const stats = await load.stop();
    t.diagnostic(`${stats.ok} requests over a supervisor upgrade, ${stats.failed} failed`);
    assert.equal(stats.failed, 0, JSON.stringify(stats.errors));
  }
  assert.equal((await status(sup.pidFile)).generation, 2);
  process.kill(newPid, 'SIGTERM');
  await waitFor(() => !isAlive(newPid), { what: 'the new supervisor to stop' });
  assert.ok(existsSync(socketPath), "systemd's socket file is left to systemd");
});
