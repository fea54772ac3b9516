// Process-level tests every adapter passes with its fixture: signals and upgrades need a real
// process. The fixture mounts the adapter the way its README says and serves
//   GET /         {pid, generation, parentPid} read from the adapter's handle
//   GET /health   200, or 503 once the handle says isDraining
//   POST /upgrade calls the handle's upgrade(): 200 {pid, generation} of the successor
// and logs lifecycle events with fixture-lifecycle.mjs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { getJson, startApp, upgrade } from './app-process.mjs';
import { request } from './load.mjs';
import { isAlive, waitFor } from './process.mjs';

/** `env` is passed to every fixture process, e.g. which framework major it loads. */
export function testAdapterFixture({ framework, fixture, env = {} }) {
  test(`${framework}: on SIGUSR2 the socket of app.listen() passes to a successor on the same port`, async (t) => {
    const { app, port, pid } = await startApp(t, fixture, env);
    assert.deepEqual(await getJson(port), { pid, generation: 1, parentPid: null });
    const next = await upgrade(app, pid);
    assert.notEqual(next, pid);
    assert.deepEqual(
      await getJson(port),
      { pid: next, generation: 2, parentPid: pid },
      'the successor serves, and its handle knows its parent',
    );
  });

  test(`${framework}: the handle's upgrade() called from a route resolves with the successor`, async (t) => {
    const { port, pid } = await startApp(t, fixture, env);
    const res = await request({ port, path: '/upgrade', method: 'POST' });
    assert.equal(res.status, 200, res.body);
    assert.equal(res.json.generation, 2);
    assert.notEqual(res.json.pid, pid);
    await waitFor(() => !isAlive(pid), { what: `old process ${pid} to exit` });
    assert.equal((await getJson(port)).pid, res.json.pid);
  });

  test(`${framework}: on SIGTERM /health answers 503 during shutdownDelay, then the process exits 0`, async (t) => {
    // shutdownDelay keeps accepting while already draining: the window load balancers see.
    const { app, port, pid } = await startApp(t, fixture, { ...env, SHUTDOWN_DELAY: '2000' });
    assert.equal((await request({ port, path: '/health' })).status, 200);
    process.kill(pid, 'SIGTERM');
    await app.waitForEvent({ event: 'drain-start', pid });
    const res = await request({ port, path: '/health' });
    assert.equal(res.status, 503);
    assert.deepEqual(await app.exited, { code: 0, signal: null });
  });
}
