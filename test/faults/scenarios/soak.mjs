// Soak: many consecutive upgrades under keep-alive load. Nothing may fail, and the
// serving process's fds (client connections excluded) and RSS must stay flat.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { APP, BIN, checkLeftovers, cli, fdInfo, flows, liveTagged, startLoad, upgradeOnce, vmRssKb, waitFor } from '../lib.mjs';

const every = (long, n) => (long ? 100 : n);

/**
 * fds and RSS of `pid`. A connection that is closing (the last control request, an old
 * worker's IPC channel) may still hold an fd for a moment: with a baseline, poll (bounded)
 * until the count is back to it, so only a real leak stays above.
 */
async function sample(i, pid, baseline) {
  let fds = fdInfo(pid);
  if (baseline !== undefined) {
    await waitFor(() => (fds = fdInfo(pid))?.structural <= baseline.fds, { timeout: 5000, what: 'fds to settle' }).catch(() => undefined);
  }
  return { upgrades: i, pid, fds: fds?.structural, totalFds: fds?.total, rssKb: vmRssKb(pid) };
}

function judgeSamples(scope, samples, what) {
  const first = samples[0];
  const last = samples[samples.length - 1];
  scope.row.fdsBefore = first.fds;
  scope.row.fdsAfter = last.fds;
  scope.row.samples = samples;
  scope.check(last.fds <= first.fds, `${what} fds grew: ${first.fds} -> ${last.fds}`);
  // A fresh process's RSS wobbles with GC timing: a leak shows as steady growth, far above this.
  scope.check(last.rssKb <= first.rssKb * 1.5 + 10_240, `${what} RSS grew: ${first.rssKb} -> ${last.rssKb} kB`);
  scope.note(`${what} RSS ${Math.round(first.rssKb / 1024)} -> ${Math.round(last.rssKb / 1024)} MiB`);
  if (scope.long) scope.note(`per 100: ${samples.map((s) => `${s.upgrades}:${s.fds}fd/${Math.round(s.rssKb / 1024)}M`).join(' ')}`);
}

/** N self-upgrades (SIGUSR2) in a row. */
export async function selfUpgradeSoak(scope) {
  const n = scope.long ? 1000 : 50;
  const pidFile = join(scope.dir, 'app.pid');
  const { app, port } = await scope.startApp({ PID_FILE: pidFile }); // default options, idleGrace included
  const load = startLoad({ port, connections: 10 });
  scope.onCleanup(() => load.stop());
  await flows(load, 200);
  let pid = app.pid;
  const samples = [];
  for (let i = 1; i <= n; i++) {
    pid = await upgradeOnce(app, pid);
    await flows(load, 30, `load to flow after upgrade ${i}`);
    // The first successor is the baseline: generation 1 bound its socket, successors inherit.
    if (i === 1 || i % every(scope.long, n) === 0) samples.push(await sample(i, pid, samples[0]));
  }
  const stats = await load.stop();
  scope.count(stats);
  scope.check(stats.failed === 0, `${stats.failed} requests failed`);
  judgeSamples(scope, samples, 'serving process');
  const forced = app.events.filter((e) => e.event === 'drain-end' && e.data.forced > 0);
  scope.check(forced.length === 0, `${forced.length} drains destroyed connections`);
  scope.check(existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() === String(pid), 'PID file names the last generation');
  await checkLeftovers(scope, [pid]);
}

/** N rolling upgrades of `grace-restart run --workers 2` through `grace-restart upgrade`. */
export async function supervisorSoak(scope) {
  const n = scope.long ? 1000 : 20;
  const pidFile = join(scope.dir, 'sup.pid');
  const sup = scope.launch(BIN, {
    args: ['run', '--workers', '2', '--pid-file', pidFile, '--drain-timeout', '10000', '--log-level', 'warn', '--', 'node', APP],
    env: { PORT: '0' },
  });
  const listening = await sup.waitForEvent({ event: 'listening' });
  await waitFor(() => existsSync(pidFile), { what: 'the supervisor PID file' });
  const port = listening.address.port;
  const load = startLoad({ port, connections: 10 });
  scope.onCleanup(() => load.stop());
  await flows(load, 200);
  const settled = () => waitFor(() => liveTagged(scope.tag).length === 3, { timeout: 15_000, what: 'old workers to exit' });
  const supSamples = [];
  const workerSamples = [];
  for (let i = 1; i <= n; i++) {
    const result = await cli(['upgrade', '--pid-file', pidFile, '--json'], { tag: scope.tag, timeout: 30_000 });
    if (!scope.check(result.code === 0, `upgrade ${i} exited ${result.code}: ${result.stdout}${result.stderr}`)) break;
    await flows(load, 30, `load to flow after rolling upgrade ${i}`);
    if (i === 1 || i % every(scope.long, n) === 0) {
      await settled();
      supSamples.push(await sample(i, sup.pid, supSamples[0]));
      const worker = JSON.parse(result.stdout).outcome.replaced[0].newPid;
      workerSamples.push(await sample(i, worker, workerSamples[0]));
    }
  }
  const stats = await load.stop();
  scope.count(stats);
  scope.check(stats.failed === 0, `${stats.failed} requests failed`);
  judgeSamples(scope, supSamples, 'supervisor');
  const wFirst = workerSamples[0];
  const wLast = workerSamples[workerSamples.length - 1];
  scope.check(wLast.fds <= wFirst.fds, `worker fds grew: ${wFirst.fds} -> ${wLast.fds}`);
  scope.note(`worker fds ${wFirst.fds} -> ${wLast.fds}, RSS ${Math.round(wFirst.rssKb / 1024)} -> ${Math.round(wLast.rssKb / 1024)} MiB`);
  const status = await cli(['status', '--pid-file', pidFile, '--json'], { tag: scope.tag });
  const workers = JSON.parse(status.stdout).workers.map((w) => w.pid);
  scope.check(workers.length === 2, `status lists ${workers.length} workers`);
  await checkLeftovers(scope, [sup.pid, ...workers]);
}

export const scenarios = [
  { name: 'soak-self-upgrades', run: selfUpgradeSoak },
  { name: 'soak-supervisor-upgrades', run: supervisorSoak },
];
