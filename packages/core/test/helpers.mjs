// Shared steps of the core tests: start the fixture, upgrade it, find who serves.
import { fileURLToPath } from 'node:url';
import { isAlive, startFixture, waitFor } from '../../../test/helpers/process.mjs';
import { request } from '../../../test/helpers/load.mjs';

export const FIXTURE = fileURLToPath(new URL('./fixtures/server.mjs', import.meta.url));

/** Starts the fixture and waits for its first 'ready'; returns the fixture and its port. */
export async function startServer(t, env = {}, options = {}) {
  const fixture = startFixture(options.script ?? FIXTURE, { env, cwd: options.cwd });
  t.after(() => fixture.cleanup());
  const listening = await fixture.waitForEvent({ event: 'listening' });
  await fixture.waitForEvent({ event: 'ready', pid: fixture.pid });
  return { fixture, port: listening.address.port, address: listening.address };
}

/**
 * Sends SIGUSR2 to `pid` and waits until its successor reported ready and `pid` is gone.
 * Returns the successor's pid.
 */
export async function upgrade(fixture, pid) {
  const after = fixture.events.length;
  process.kill(pid, 'SIGUSR2');
  const ready = await fixture.waitForEvent({ event: 'upgrade-ready', pid: await successorPid(fixture, pid, after) }, { after });
  await waitFor(() => !isAlive(pid), { what: `old process ${pid} to exit` });
  return ready.pid;
}

async function successorPid(fixture, parentPid, after) {
  const ready = await fixture.waitForEvent((e) => e.event === 'ready' && e.pid !== parentPid, { after });
  return ready.pid;
}

/** The pid that answers a fresh connection. */
export async function servingPid(target) {
  const res = await request(target);
  return res.json.pid;
}
