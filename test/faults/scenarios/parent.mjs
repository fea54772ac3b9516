// Parent faults: the old process dies hard while it drains. The successor must not care.
import { checkLeftovers, establishedCount, fdInfo, flows, isAlive, request, startLoad, waitFor, settledFds } from '../lib.mjs';

export async function parentKilledDuringDrain(scope) {
  const { app, port } = await scope.startApp({ IDLE_GRACE: '100', DRAIN_TIMEOUT: '30000' });
  scope.row.fdsBefore = fdInfo(app.pid).structural;
  const load = startLoad({ port, connections: 10 });
  scope.onCleanup(() => load.stop());
  await flows(load, 200);
  // A long request keeps the old process draining; it is the one request SIGKILL may take.
  const slow = request({ port, path: '/slow?ms=20000' }).then(
    (res) => ({ status: res.status }),
    (error) => ({ error: error.code ?? error.message }),
  );
  await request({ port });
  const after = app.events.length;
  process.kill(app.pid, 'SIGUSR2');
  const ready = await app.waitForEvent((e) => e.event === 'upgrade-ready' && e.pid === app.pid, { after });
  const successor = ready.data.pid;
  await app.waitForEvent((e) => e.event === 'drain-start' && e.pid === app.pid, { after });
  // Kill only once the load's keep-alive sockets have moved: then only the slow request is on it.
  await waitFor(() => establishedCount(app.pid) <= 1, { timeout: 10_000, what: 'the load to leave the old process' });
  process.kill(app.pid, 'SIGKILL');
  const { signal } = await app.exited;
  scope.check(signal === 'SIGKILL', `old process ended with ${signal}`);
  const lost = await slow;
  scope.note(`the request in flight on the killed process: ${JSON.stringify(lost)}`);
  await flows(load, 500, 'the successor to keep serving');
  const stats = await load.stop();
  scope.count(stats);
  scope.check(stats.failed === 0, `${stats.failed} requests failed`);
  scope.check(isAlive(successor), 'the successor died');
  scope.check((await request({ port })).json.pid === successor, 'the successor does not serve');
  scope.row.fdsAfter = await settledFds(successor, scope.row.fdsBefore);
  await checkLeftovers(scope, [successor]);
}

export const scenarios = [{ name: 'parent-sigkilled-during-drain', run: parentKilledDuringDrain }];
