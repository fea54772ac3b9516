// systemd socket activation as users write it, with Debian's real systemd-socket-activate
// (package `systemd`): it binds the sockets, waits for the first connection, then execs
// the app with LISTEN_FDS / LISTEN_PID / LISTEN_FDNAMES exactly as a `.socket` unit does.
// The app must serve on those sockets (not bind its own: that fails with EADDRINUSE), and
// upgrade with SIGUSR2 under keep-alive load without failing a request.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { request, startLoad } from './helpers/load.mjs';
import { followJsonEvents, freePort, isAlive, waitFor } from './helpers/process.mjs';

const ACTIVATE = '/usr/bin/systemd-socket-activate';
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
  for (const [key, value] of Object.entries(env)) args.push('-E', `${key}=${value}`);
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
    assert.equal(app.events.some((e) => e.event === 'listen-failed'), false);
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
  const port = await freePort();
  const socketPath = join(tempDir(t), 'admin.sock');
  // The unix socket first: order alone would hand it to the TCP listen().
  const app = await activate(t, {
    script: TWO_LISTENERS,
    sockets: [socketPath, `127.0.0.1:${port}`],
    env: { PORT: port, HOST: '127.0.0.1', SOCKET_PATH: socketPath },
    connect: { port },
  });
  await upgradesUnderLoad(t, app, [{ port }, { socketPath }], 2);
  assert.ok(existsSync(socketPath), 'the socket file systemd created is still there');
  const last = (await request({ socketPath })).json.pid;
  process.kill(last, 'SIGTERM');
  await waitFor(() => !isAlive(last), { what: 'the last generation to stop' });
  assert.ok(existsSync(socketPath), "a final stop leaves systemd's socket file to systemd");
});

test('two sockets named by --fdname and claimed with listen({ fdName }): upgrades under load on both', async (t) => {
  const port = await freePort();
  const socketPath = join(tempDir(t), 'admin.sock');
  const app = await activate(t, {
    script: TWO_LISTENERS,
    sockets: [socketPath, `127.0.0.1:${port}`],
    fdnames: ['admin', 'web'],
    // Claimed by name, so the addresses the app asks for do not matter: given wrong on purpose.
    env: { PORT: 1, HOST: '127.0.0.1', SOCKET_PATH: join(tempDir(t), 'elsewhere.sock'), FD_NAMES: 'web,admin' },
    connect: { port },
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
