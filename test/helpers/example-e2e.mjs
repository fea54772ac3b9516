// End-to-end scenarios every example app must pass, run against its built dist/server.js as
// a real process. Framework-agnostic: an example qualifies by the contract of examples/*:
//   env PORT, HOST, PID_FILE, APP_VERSION, DRAIN_TIMEOUT, READY_TIMEOUT, IDLE_GRACE, and
//   BOOT_FAIL_FILE (exit 1 at boot when that file exists);
//   GET / and GET /slow?ms=N → {framework, pid, version, generation}; POST /echo → {bytes};
//   GET /health → 200, 503 once draining; SIGUSR2 upgrades, SIGTERM stops;
//   lifecycle events on stdout as test/helpers/app-process.mjs describes.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { getJson, startApp, upgrade, upgradeOutcome } from './app-process.mjs';
import { request, startLoad } from './load.mjs';
import { isAlive, waitFor } from './process.mjs';

const UPLOAD_BYTES = 20 * 1024 * 1024;

/** Registers the scenarios for the example of `framework` whose entry point is `script`. */
export function testExample({ framework, script }) {
  const start = (t, env) => {
    assert.ok(existsSync(script), `${script} is missing: build first (npm run build)`);
    return startApp(t, script, env);
  };

  test(`${framework} example: 3 upgrades under keep-alive load fail no request`, async (t) => {
    const pidFile = join(tempDir(t), 'app.pid');
    const { app, port, pid: first } = await start(t, { PID_FILE: pidFile, APP_VERSION: 'e2e' });
    assert.deepEqual(await getJson(port), { framework, pid: first, version: 'e2e', generation: 1 });
    const load = startLoad({ port, connections: 20 });
    t.after(() => load.stop());
    await waitFor(() => load.stats.ok > 200, { what: 'load to flow' });

    let pid = first;
    for (let i = 0; i < 3; i++) {
      const next = await upgrade(app, pid);
      assert.notEqual(next, pid);
      const okBefore = load.stats.ok;
      await waitFor(() => load.stats.ok > okBefore + 200, { what: 'load to flow after the upgrade' });
      pid = next;
    }
    const result = await load.stop();
    t.diagnostic(`${framework}: ${result.ok} requests over 3 upgrades, ${result.failed} failed, by pid ${JSON.stringify(result.pids)}`);
    assert.equal(result.failed, 0, `failed requests: ${JSON.stringify(result.errors)}`);
    assert.ok(result.pids[pid] > 0, 'the last generation served part of the load');
    assert.deepEqual(await getJson(port), { framework, pid, version: 'e2e', generation: 4 });
    assert.equal(readFileSync(pidFile, 'utf8').trim(), String(pid), 'the PID file names the serving process');
    const drains = app.events.filter((e) => e.event === 'drain-end');
    assert.deepEqual(
      drains.map((d) => d.forced),
      [0, 0, 0],
      'no drain had to destroy a connection',
    );
  });

  test(`${framework} example: a slow request and a 20 MiB upload in flight across an upgrade complete`, async (t) => {
    const { app, port, pid, bootMs } = await start(t);
    // Long enough for the successor to boot, pass its 1 s probation, and the drain to start while it runs.
    const slowMs = Math.max(3000, 4 * bootMs + 1500);
    // One kept-alive socket each, opened to the old process before the upgrade.
    const slowAgent = keepAliveAgent(t);
    const uploadAgent = keepAliveAgent(t);
    for (const agent of [slowAgent, uploadAgent]) assert.equal((await request({ port, agent })).json.pid, pid);

    const upload = pausedUpload({ port, agent: uploadAgent, bytes: UPLOAD_BYTES });
    await upload.halfSent;
    let slowDone = false;
    const slow = request({ port, agent: slowAgent, path: `/slow?ms=${slowMs}` }).finally(() => (slowDone = true));
    const after = app.events.length;
    process.kill(pid, 'SIGUSR2');
    await app.waitForEvent({ event: 'drain-start', pid }, { after });
    assert.equal(slowDone, false, `the successor took longer than ${slowMs} ms to take over`);
    upload.resume();

    const [slowRes, uploadRes] = await Promise.all([slow, upload.response]);
    assert.equal(slowRes.status, 200);
    assert.equal(slowRes.json.pid, pid, 'the slow request was answered by the old process');
    assert.equal(uploadRes.status, 200);
    assert.deepEqual(uploadRes.json, { bytes: UPLOAD_BYTES }, 'the whole body arrived');
    await waitFor(() => !isAlive(pid), { what: `old process ${pid} to exit` });
    const { successorPid } = app.events.find((e) => e.event === 'upgrade-ready' && e.pid === pid);
    assert.equal((await getJson(port)).pid, successorPid);
    // Answered while the old process let go of its connections: either with `Connection: close`
    // (the drain), or kept alive and then moved to the successor (moveConnections), which the
    // next request on the same agent proves.
    const drain = app.events.find((e) => e.event === 'drain-end' && e.pid === pid);
    const kept = [slowRes, uploadRes].filter((res) => res.headers.connection !== 'close').length;
    if (drain?.moved !== undefined) assert.ok(drain.moved >= kept, `${kept} responses kept alive, ${drain.moved} connections moved`);
    else assert.equal(kept, 0, 'answered with Connection: close while draining');
    for (const agent of [slowAgent, uploadAgent]) assert.equal((await request({ port, agent })).json.pid, successorPid);
  });

  test(`${framework} example: a successor that fails to boot is rolled back, no request fails`, async (t) => {
    const bootFailFile = join(tempDir(t), 'broken-release');
    const { app, port, pid } = await start(t, { BOOT_FAIL_FILE: bootFailFile });
    const load = startLoad({ port, connections: 20 });
    t.after(() => load.stop());
    await waitFor(() => load.stats.ok > 200, { what: 'load to flow' });

    writeFileSync(bootFailFile, 'this release cannot start\n');
    const after = app.events.length;
    process.kill(pid, 'SIGUSR2');
    const outcome = await upgradeOutcome(app, pid, after);
    assert.equal(outcome.event, 'upgrade-failed', JSON.stringify(outcome));
    assert.equal(outcome.reason, 'exited');
    const okBefore = load.stats.ok;
    await waitFor(() => load.stats.ok > okBefore + 200, { what: 'load to flow after the rollback' });
    const result = await load.stop();
    t.diagnostic(`${framework}: ${result.ok} requests across the failed upgrade, ${result.failed} failed`);
    assert.equal(result.failed, 0, `failed requests: ${JSON.stringify(result.errors)}`);
    assert.deepEqual(Object.keys(result.pids), [String(pid)], 'only the old process served');
    assert.ok(isAlive(pid));

    // Once the release is fixed, the next upgrade lands.
    rmSync(bootFailFile);
    const next = await upgrade(app, pid);
    assert.equal((await getJson(port)).pid, next);
  });

  test(`${framework} example: on SIGTERM a kept-alive client gets 503 from /health with Connection: close, then exit 0`, async (t) => {
    const pidFile = join(tempDir(t), 'app.pid');
    // A long idleGrace keeps the idle kept-alive socket open until the test sends on it.
    const { app, port, pid } = await start(t, { PID_FILE: pidFile, IDLE_GRACE: '10000' });
    const agent = keepAliveAgent(t);
    const before = await request({ port, agent, path: '/health' });
    assert.equal(before.status, 200);
    assert.equal(before.headers.connection, 'keep-alive');
    process.kill(pid, 'SIGTERM');
    await app.waitForEvent({ event: 'drain-start', pid });
    const during = await request({ port, agent, path: '/health' });
    assert.equal(during.status, 503);
    assert.equal(during.headers.connection, 'close');
    assert.deepEqual(await app.exited, { code: 0, signal: null });
    assert.equal(existsSync(pidFile), false, 'the PID file is removed at a final stop');
  });
}

function tempDir(t) {
  const dir = mkdtempSync(join(tmpdir(), 'grace-e2e-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function keepAliveAgent(t) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  return agent;
}

/**
 * POST /echo of `bytes` bytes that stops half way until `resume()`: the upload is provably
 * in flight while the old process drains.
 */
function pausedUpload({ port, agent, bytes }) {
  const chunk = Buffer.alloc(64 * 1024, 7);
  let halfSent;
  let resume;
  const half = new Promise((resolve) => (halfSent = resolve));
  const resumed = new Promise((resolve) => (resume = resolve));
  const response = request({
    port,
    agent,
    path: '/echo',
    method: 'POST',
    body: (req) => {
      let sent = 0;
      const pump = async () => {
        while (sent < bytes) {
          if (sent >= bytes / 2) {
            halfSent();
            await resumed;
          }
          const piece = chunk.subarray(0, Math.min(chunk.length, bytes - sent));
          sent += piece.length;
          if (!req.write(piece)) await new Promise((resolve) => req.once('drain', resolve));
        }
        req.end();
      };
      pump();
    },
  });
  return { halfSent: half, resume, response };
}
