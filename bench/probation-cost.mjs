// What the probation costs (issue #28): the old process waits out its successor's probation
// before it lets go, so it exits (and systemd's MAINPID moves to the successor) that much later,
// holding its memory meanwhile. Measured for a 1 s and a 10 s probation (the default), a few
// self-upgrades each of the core fixture (node:http) under light keep-alive load.
//
//   node bench/probation-cost.mjs [--upgrades 5] [--out FILE.md]
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startLoad } from '../test/helpers/load.mjs';
import { isAlive, startFixture, waitFor } from '../test/helpers/process.mjs';

const APP = fileURLToPath(new URL('../packages/core/test/fixtures/server.mjs', import.meta.url));
const { values } = parseArgs({ options: { upgrades: { type: 'string', default: '5' }, out: { type: 'string' } } });
const UPGRADES = Number(values.upgrades);

const rssMiB = (pid) => {
  try {
    return Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;
  } catch {
    return Number.NaN;
  }
};
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function measure(probation) {
  const app = startFixture(APP, { env: { PORT: '0', GRACE_RESTART_PROBATION: String(probation) } });
  try {
    const { address } = await app.waitForEvent({ event: 'listening' });
    await app.waitForEvent({ event: 'ready', pid: app.pid });
    const load = startLoad({ port: address.port, connections: 10 });
    await waitFor(() => load.stats.ok > 200, { what: 'load to flow' });
    const samples = [];
    let pid = app.pid;
    for (let i = 0; i < UPGRADES; i++) {
      const after = app.events.length;
      const triggered = Date.now();
      process.kill(pid, 'SIGUSR2');
      const ready = await app.waitForEvent((e) => e.event === 'ready' && e.pid !== pid, { after, timeout: 30_000 });
      const readyAt = Date.now();
      const oldRss = rssMiB(pid);
      const newRss = rssMiB(ready.pid);
      await waitFor(() => !isAlive(pid), { timeout: 60_000, interval: 10, what: `old process ${pid} to exit` });
      samples.push({ readyMs: readyAt - triggered, oldExitMs: Date.now() - readyAt, oldRss, newRss });
      pid = ready.pid;
    }
    const stats = await load.stop();
    return {
      probation,
      readyMs: median(samples.map((s) => s.readyMs)),
      oldExitMs: median(samples.map((s) => s.oldExitMs)),
      oldRss: median(samples.map((s) => s.oldRss)),
      newRss: median(samples.map((s) => s.newRss)),
      failed: stats.failed,
      requests: stats.ok + stats.failed,
    };
  } finally {
    app.cleanup();
  }
}

const rows = [];
for (const probation of [1_000, 10_000]) {
  const row = await measure(probation);
  rows.push(row);
  console.log(JSON.stringify(row));
}
const table = [
  '| probation | trigger → successor ready (median) | ready → old process exit (median; MAINPID= moves at the end of the probation, before this) | RSS of the old process while it waits (median) | RSS of the successor | requests | failed |',
  '|---|---|---|---|---|---|---|',
  ...rows.map(
    (r) =>
      `| ${r.probation} ms | ${r.readyMs} ms | ${r.oldExitMs} ms | ${r.oldRss.toFixed(0)} MiB | ${r.newRss.toFixed(0)} MiB | ${r.requests} | ${r.failed} |`,
  ),
];
if (values.out) writeFileSync(values.out, `${table.join('\n')}\n`);
process.exit(0);
