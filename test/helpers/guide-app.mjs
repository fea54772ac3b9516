// What every guide's end-to-end test does with the app its guide wires (docs/guides/): upgrade
// it with `kill -USR2 $(cat app.pid)` under keep-alive load, then stop it with
// `kill -TERM $(cat app.pid)`, as the guides say, counting every failed request.
import { readFileSync } from 'node:fs';
import { startLoad } from './load.mjs';
import { isAlive, waitFor } from './process.mjs';

/** The pid in `pidFile`, or undefined while it is missing or being replaced. */
function readPid(pidFile) {
  try {
    return Number(readFileSync(pidFile, 'utf8').trim()) || undefined;
  } catch {
    return undefined;
  }
}

/**
 * `upgrades` SIGUSR2 upgrades of the app whose pid `pidFile` names (first `firstPid`) under
 * keep-alive load on `port`, each until the old process is gone and answers flow from the new
 * one, then SIGTERM to the last one, until no process that answered is left. Resolves with the
 * load's figures and the last pid.
 */
export async function upgradeAndStopUnderLoad({ pidFile, firstPid, port, upgrades = 2, timeout = 30_000 }) {
  await waitFor(() => readPid(pidFile) === firstPid, { what: `${pidFile} to name ${firstPid}`, timeout });
  const load = startLoad({ port, connections: 10 });
  try {
    await waitFor(() => load.stats.ok > 200, { what: 'load to flow' });
    let pid = firstPid;
    for (let i = 0; i < upgrades; i++) {
      const old = pid;
      process.kill(old, 'SIGUSR2');
      pid = await waitFor(
        () => {
          const now = readPid(pidFile);
          return now !== old && now;
        },
        { what: `upgrade ${i + 1}`, timeout },
      );
      await waitFor(() => !isAlive(old), { what: `old process ${old} to exit`, timeout });
      const ok = load.stats.ok;
      await waitFor(() => load.stats.ok > ok + 200, { what: 'load to flow on the new process' });
    }
    const stats = await load.stop();
    process.kill(pid, 'SIGTERM');
    await waitFor(() => !isAlive(pid), { what: 'the stop', timeout });
    // No orphan: every process that answered, of every generation, is gone.
    const answered = Object.keys(stats.pids).map(Number);
    await waitFor(() => answered.every((p) => !isAlive(p)), { what: `no process left of ${answered.join(', ')}`, timeout });
    return { stats, pid };
  } finally {
    await load.stop();
  }
}
