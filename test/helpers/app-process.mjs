// Steps shared by the tests that run an app as a real process and upgrade it from outside:
// the adapters' fixtures and the example apps. The app must print JSON lines on stdout:
//   {"event":"listening","pid","generation","address"}   once it listens (address.port)
//   {"event":"ready","pid","generation"}                  when grace-restart reports ready
//   {"event":"upgrade-ready","pid","successorPid"}        on the old process, successor serving
//   {"event":"upgrade-failed","pid","reason"}             on the old process, after a rollback
//   {"event":"drain-start","pid","reason"}                when a process starts draining
// `pid` is always the process that writes the line.
import { request } from './load.mjs';
import { isAlive, startFixture, waitFor } from './process.mjs';

/**
 * Starts `script` (PORT=0 and HOST=127.0.0.1 unless `env` says otherwise), waits until it
 * is ready, and kills every process it spawned when the test ends.
 */
export async function startApp(t, script, env = {}) {
  const startedAt = Date.now();
  const app = startFixture(script, { env: { PORT: '0', HOST: '127.0.0.1', ...env } });
  t.after(() => app.cleanup());
  const listening = await app.waitForEvent({ event: 'listening', pid: app.pid });
  await app.waitForEvent({ event: 'ready', pid: app.pid });
  return { app, port: listening.address.port, pid: app.pid, bootMs: Date.now() - startedAt };
}

/**
 * Sends SIGUSR2 to `pid`, waits until its successor is ready and `pid` has exited; returns
 * the successor's pid. Fails at once with the reason when the upgrade is rolled back.
 */
export async function upgrade(app, pid) {
  const after = app.events.length;
  process.kill(pid, 'SIGUSR2');
  const outcome = await upgradeOutcome(app, pid, after);
  if (outcome.event !== 'upgrade-ready') throw new Error(`upgrade of ${pid} failed: ${JSON.stringify(outcome)}; stderr: ${app.stderr}`);
  await app.waitForEvent({ event: 'ready', pid: outcome.successorPid }, { after });
  await waitFor(() => !isAlive(pid), { what: `old process ${pid} to exit` });
  return outcome.successorPid;
}

/** The first `upgrade-ready` or `upgrade-failed` line of `pid` after event index `after`. */
export function upgradeOutcome(app, pid, after) {
  return app.waitForEvent((e) => e.pid === pid && (e.event === 'upgrade-ready' || e.event === 'upgrade-failed'), { after });
}

/** The JSON body of `GET path` on a fresh connection. */
export async function getJson(port, path = '/') {
  const res = await request({ port, path });
  if (res.status !== 200 || res.json === undefined) throw new Error(`GET ${path}: ${res.status} ${res.body}`);
  return res.json;
}
