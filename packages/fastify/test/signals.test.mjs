// The plugin in a real process, driven by signals as an operator would.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { request } from '../../../test/helpers/load.mjs';
import { isAlive, waitFor } from '../../../test/helpers/process.mjs';
import { pinnedAgent, startApp } from './helpers.mjs';

test('SIGTERM serves in-flight and keep-alive requests, then runs onClose and exits 0', async (t) => {
  const { fixture, port } = await startApp(t, { IDLE_GRACE: '10000' });
  const agent = pinnedAgent(t);
  assert.equal((await request({ port, agent })).status, 200);
  const slow = request({ port, path: '/slow?ms=800' });
  await fixture.waitForEvent({ event: 'slow-start' });

  process.kill(fixture.pid, 'SIGTERM');
  await fixture.waitForEvent({ event: 'drain-start', reason: 'stop' });
  const late = await request({ port, agent });
  assert.equal(late.status, 200, 'a request on an open keep-alive socket is served, not refused with 503');
  assert.equal(late.headers.connection, 'close');
  const slowRes = await slow;
  assert.equal(slowRes.status, 200);
  assert.equal(slowRes.headers.connection, 'close');

  assert.deepEqual(await fixture.exited, { code: 0, signal: null });
  const names = fixture.events.filter((e) => e.event).map((e) => e.event);
  assert.deepEqual(names.slice(names.indexOf('drain-start')), ['drain-start', 'drain-end', 'closed']);
  const closed = fixture.events.find((e) => e.event === 'closed');
  assert.equal(closed.inFlight, 0, 'onClose ran once no request was in flight');
  assert.equal(fixture.events.find((e) => e.event === 'drain-end').forced, 0);
});

test('SIGUSR2 hands the socket to a successor, which reports generation 2', async (t) => {
  const { fixture, port } = await startApp(t);
  process.kill(fixture.pid, 'SIGUSR2');
  const ready = await fixture.waitForEvent((e) => e.event === 'ready' && e.pid !== fixture.pid);
  assert.equal(ready.generation, 2);
  await waitFor(() => !isAlive(fixture.pid), { what: 'the old process to exit' });
  const res = await request({ port });
  assert.deepEqual(res.json, { pid: ready.pid, generation: 2 });
  const oldClosed = fixture.events.find((e) => e.event === 'closed' && e.pid === fixture.pid);
  assert.ok(oldClosed, 'the old process ran its onClose hooks');
});
