// Steady-state overhead: the bare app vs the same app with grace-restart, same load.
//
// autocannon drives this part: nothing restarts here, so its silent reconnects cannot hide
// anything, and it is the most efficient Node load generator at hand (well kept by the Node and
// Fastify maintainers; it is what Fastify's own benchmarks use). Both variants run side by side
// on two ports and are measured in alternating rounds (A B, B A, …), so drift on a shared machine
// (CPU frequency, other tenants) hits both alike; we report the mean over rounds.
import autocannon from 'autocannon';
import { adapterApp, bareApp } from '../lib/apps.mjs';
import { freePort, startProcess, waitForHttp } from '../lib/procs.mjs';

async function cannon(port, { durationS, connections, warmupS }) {
  const url = `http://127.0.0.1:${port}/`;
  if (warmupS > 0) await autocannon({ url, connections, duration: warmupS });
  const r = await autocannon({ url, connections, duration: durationS });
  return { rps: r.requests.average, p99: r.latency.p99, p50: r.latency.p50, errors: r.errors + r.timeouts + r.non2xx };
}

async function startVariant(file, framework, variant) {
  const port = await freePort();
  const proc = startProcess(process.execPath, [file], { env: { PORT: String(port), HOST: '127.0.0.1', NODE_ENV: 'production' } });
  await waitForHttp({ port, proc, what: `${framework} (${variant})` });
  return { port, proc };
}

const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;

export async function runOverhead({ frameworks, rounds, durationS, warmupS = 1, connections = 50, log }) {
  const results = [];
  for (const framework of frameworks) {
    const adapter = adapterApp(framework);
    if (adapter.missing) {
      log(`  overhead ${framework}: skipped (${adapter.missing})`);
      results.push({ framework, skipped: adapter.missing });
      continue;
    }
    const bare = await startVariant(bareApp(framework).path, framework, 'bare');
    const grace = await startVariant(adapter.path, framework, 'grace-restart');
    try {
      const runs = { bare: [], grace: [] };
      for (let round = 0; round < rounds; round++) {
        const order = round % 2 === 0 ? ['bare', 'grace'] : ['grace', 'bare'];
        for (const variant of order) {
          const { port } = variant === 'bare' ? bare : grace;
          runs[variant].push(await cannon(port, { durationS, connections, warmupS: round === 0 ? warmupS : 0 }));
        }
      }
      const summary = (list) => ({ rps: Math.round(mean(list.map((r) => r.rps))), p99: mean(list.map((r) => r.p99)), errors: list.reduce((a, r) => a + r.errors, 0) });
      const b = summary(runs.bare);
      const g = summary(runs.grace);
      const row = { framework, bare: b, grace: g, rpsRatio: g.rps / b.rps, p99Ratio: b.p99 > 0 ? g.p99 / b.p99 : undefined, overheadPct: (1 - g.rps / b.rps) * 100, rounds: runs };
      log(`  overhead ${framework}: bare ${b.rps} req/s p99 ${b.p99.toFixed(1)} ms | grace-restart ${g.rps} req/s p99 ${g.p99.toFixed(1)} ms | overhead ${row.overheadPct.toFixed(1)} %`);
      results.push(row);
    } finally {
      for (const v of [bare, grace]) {
        v.proc.child.kill('SIGKILL');
        await v.proc.exited;
      }
    }
  }
  return results;
}
