// Signal storms: many upgrade triggers at once, and a stop signal in the middle of an upgrade.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkLeftovers, fdInfo, flows, isAlive, request, startLoad, waitFor, settledFds } from '../lib.mjs';

/** 10 SIGUSR2 within ~100 ms: exactly one upgrade, one successor, nothing orphaned. */
export async function usr2Storm(scope) {
  const { app, port } = await scope.startApp({ IDLE_GRACE: '100' });
  scope.row.fdsBefore = fdInfo(app.pid).structural;
  const load = startLoad({ port, connections: 10 });
  scope.onCleanup(() => load.stop());
  await flows(load, 200);
  const after = app.events.length;
  // The spacing creates the condition (signals spread over the upgrade's start); nothing waits on it.
  for (let i = 0; i < 10; i++) {
    process.kill(app.pid, 'SIGUSR2');
    await new Promise((r) => setTimeout(r, 10));
  }
  const ready = await app.waitForEvent((e) => e.event === 'upgrade-ready' && e.pid === app.pid, { after });
  const successor = ready.data.pid;
  await waitFor(() => !isAlive(app.pid), { what: 'the old process to exit' });
  await flows(load, 200, 'the successor to serve');
  const stats = await load.stop();
  scope.count(stats);
  scope.check(stats.failed === 0, `${stats.failed} requests failed`);
  const starts = app.events.filter((e) => e.event === 'upgrade-start' && e.pid === app.pid).length;
  const boots = app.events.filter((e) => e.event === 'boot' && e.parentPid === app.pid).length;
  scope.check(starts === 1, `${starts} upgrades started`);
  scope.check(boots === 1, `${boots} successors spawned`);
  const { code, signal } = await app.exited;
  scope.check(code === 0, `old process exited with ${code ?? signal}`);
  scope.check((await request({ port })).json.pid === successor, 'the successor serves');
  scope.row.fdsAfter = await settledFds(successor, scope.row.fdsBefore);
  await checkLeftovers(scope, [successor]);
}

/** SIGTERM while a (slow-booting) successor is starting: the process drains and exits 0, the successor is stopped. */
export async function sigtermMidUpgrade(scope) {
  const behaviour = join(scope.dir, 'behaviour');
  const pidFile = join(scope.dir, 'app.pid');
  writeFileSync(behaviour, 'ok');
  const { app, port } = await scope.startApp({ BEHAVIOUR_FILE: behaviour, PID_FILE: pidFile, KILL_TIMEOUT: '2000' });
  scope.row.fdsBefore = fdInfo(app.pid).structural;
  const slow = request({ port, path: '/slow?ms=1500' }).then(
    (res) => res,
    (error) => ({ error: error.code ?? error.message }),
  );
  await request({ port }); // answered after the slow one was sent: it reached the server
  writeFileSync(behaviour, 'slow-boot:1500');
  const after = app.events.length;
  process.kill(app.pid, 'SIGUSR2');
  // The successor printed its first line: the upgrade is under way and not finished.
  const boot = await app.waitForEvent((e) => e.event === 'boot' && e.parentPid === app.pid, { after });
  process.kill(app.pid, 'SIGTERM');
  const { code, signal } = await app.exited;
  const res = await slow;
  scope.row.requests = 2;
  scope.row.failed = res.status === 200 ? 0 : 1;
  scope.check(code === 0, `the process exited with ${code ?? signal}, expected 0`);
  scope.check(res.status === 200, `the in-flight request got ${JSON.stringify(res.error ?? res.status)}`);
  await waitFor(() => !isAlive(boot.pid), { timeout: 5000, what: 'the successor to be stopped' }).catch(() => undefined);
  scope.check(!isAlive(boot.pid), `successor ${boot.pid} still alive`);
  scope.check(!app.events.some((e) => e.event === 'ready' && e.pid === boot.pid), 'the successor became ready');
  const failed = app.events.find((e) => e.event === 'upgrade-failed');
  scope.check(failed?.reason === 'aborted', `upgrade outcome: ${JSON.stringify(failed)}`);
  const logged = await waitFor(() => app.logs().some((l) => l.level === 50 && l.reason === 'aborted'), {
    timeout: 3000,
    what: 'the log line',
  }).catch(() => false);
  scope.check(logged, 'no error log line with reason "aborted"');
  const drains = app.events.filter((e) => e.event === 'drain-end');
  scope.check(drains.length === 1 && drains[0].data.reason === 'stop', `drains: ${JSON.stringify(drains.map((d) => d.data))}`);
  scope.check(!existsSync(pidFile), 'PID file left behind');
  scope.row.fdsAfter = '-';
  await checkLeftovers(scope, []);
}

export const scenarios = [
  { name: 'signal-storm-usr2', run: usr2Storm },
  { name: 'signal-sigterm-mid-upgrade', run: sigtermMidUpgrade },
];
