// Steady-state overhead: the bare app vs the same app with grace-restart, same load.
//
// autocannon drives this part: nothing restarts here, so its silent reconnects cannot hide
// anything, and it is the most efficient Node load generator at hand (well kept by the Node and
// Fastify maintainers; it is what Fastify's own benchmarks use). Both variants run side by side
// on two ports and are measured in alternating rounds (A B, B A, …), so drift on a shared machine
// (CPU frequency, other tenants) hits both alike; we report the mean over rounds.
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';
import { join } from 'node:path';
import { adapterApp, bareApp, ROOT } from '../lib/apps.mjs';
import { freePort, startProcess, waitForHttp } from '../lib/procs.mjs';

// Linux reports process CPU time in clock ticks of 10 ms (CLK_TCK 100).
const TICK_US = 10_000;

/** CPU time (user + system, every thread) the process `pid` has used so far, in µs. */
function cpuUs(pid) {
  // Fields after the command name (which may contain spaces): utime and stime are the 12th and 13th.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * TICK_US;
}

/**
 * One round of load on `port`. Besides req/s, the server's CPU time per request: unlike
 * throughput it does not depend on how the two cores are shared with the load generator.
 */
async function cannon({ port, pid }, { durationS, connections, warmupS }) {
  const url = `http://127.0.0.1:${port}/`;
  if (warmupS > 0) await autocannon({ url, connections, duration: warmupS });
  const cpuBefore = cpuUs(pid);
  const r = await autocannon({ url, connections, duration: durationS });
  const cpuPerReqUs = (cpuUs(pid) - cpuBefore) / Math.max(1, r.requests.total);
  return { rps: r.requests.average, p99: r.latency.p99, p50: r.latency.p50, cpuPerReqUs, errors: r.errors + r.timeouts + r.non2xx };
}

async function startVariant(file, framework, variant) {
  const port = await freePort();
  const proc = startProcess(process.execPath, [file], { env: { PORT: String(port), HOST: '127.0.0.1', NODE_ENV: 'production' } });
  await waitForHttp({ port, proc, what: `${framework} (${variant})` });
  return { port, pid: proc.child.pid, proc };
}

const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;

/**
 * Measures two app files side by side. On two cores the process started second measured up to
 * 3 % slower than its identical twin, so half the rounds run with one start order and half,
 * after a restart of both, with the other.
 */
async function measurePair(framework, files, { rounds, durationS, warmupS, connections }) {
  const runs = { bare: [], grace: [] };
  for (const startOrder of [
    ['bare', 'grace'],
    ['grace', 'bare'],
  ]) {
    const procs = {};
    try {
      for (const variant of startOrder) procs[variant] = await startVariant(files[variant], framework, variant);
      for (let round = 0; round < Math.ceil(rounds / 2); round++) {
        const order = round % 2 === 0 ? ['bare', 'grace'] : ['grace', 'bare'];
        for (const variant of order)
          runs[variant].push(await cannon(procs[variant], { durationS, connections, warmupS: round === 0 ? warmupS : 0 }));
      }
    } finally {
      for (const v of Object.values(procs)) {
        v.proc.child.kill('SIGKILL');
        await v.proc.exited;
      }
    }
  }
  const summary = (list) => ({
    rps: Math.round(mean(list.map((r) => r.rps))),
    p99: mean(list.map((r) => r.p99)),
    cpuPerReqUs: mean(list.map((r) => r.cpuPerReqUs)),
    errors: list.reduce((a, r) => a + r.errors, 0),
  });
  const b = summary(runs.bare);
  const g = summary(runs.grace);
  return {
    framework,
    bare: b,
    grace: g,
    rpsRatio: g.rps / b.rps,
    p99Ratio: b.p99 > 0 ? g.p99 / b.p99 : undefined,
    overheadPct: (1 - g.rps / b.rps) * 100,
    cpuOverheadPct: (g.cpuPerReqUs / b.cpuPerReqUs - 1) * 100,
    rounds: runs,
  };
}

/**
 * For each framework: bare app vs the same app with the adapter. With `control`, first the bare
 * node:http app against itself (an A/A run): the difference it shows is the noise floor of the
 * method on this machine, against which the overhead figures should be read.
 */
export async function runOverhead({ frameworks, rounds, durationS, warmupS = 1, connections = 50, control = false, log }) {
  const results = [];
  const settings = { rounds, durationS, warmupS, connections };
  if (control) {
    const bare = bareApp('node').path;
    const row = { ...(await measurePair('node', { bare, grace: bare }, settings)), control: true };
    log(
      `  overhead control (bare node vs itself): ${row.bare.rps} vs ${row.grace.rps} req/s, difference ${row.overheadPct.toFixed(1)} %, CPU/request ${row.cpuOverheadPct.toFixed(1)} %`,
    );
    results.push(row);
    // What counting answers costs (issue #28), against the floor the A/A row just measured.
    const counting = join(ROOT, 'bench', 'apps', 'node-counting.mjs');
    const cost = { ...(await measurePair('node', { bare, grace: counting }, settings)), framework: 'node, answer counting only' };
    log(
      `  answer counting (bare node vs bare node counting answers): ${cost.bare.rps} vs ${cost.grace.rps} req/s, difference ${cost.overheadPct.toFixed(1)} %, CPU/request ${cost.cpuOverheadPct.toFixed(1)} %`,
    );
    results.push(cost);
  }
  for (const framework of frameworks) {
    const adapter = adapterApp(framework);
    if (adapter.missing) {
      log(`  overhead ${framework}: skipped (${adapter.missing})`);
      results.push({ framework, skipped: adapter.missing });
      continue;
    }
    const row = await measurePair(framework, { bare: bareApp(framework).path, grace: adapter.path }, settings);
    log(
      `  overhead ${framework}: bare ${row.bare.rps} req/s p99 ${row.bare.p99.toFixed(1)} ms | grace-restart ${row.grace.rps} req/s p99 ${row.grace.p99.toFixed(1)} ms | overhead ${row.overheadPct.toFixed(1)} %, CPU/request ${row.bare.cpuPerReqUs.toFixed(1)} vs ${row.grace.cpuPerReqUs.toFixed(1)} µs (${row.cpuOverheadPct.toFixed(1)} %)`,
    );
    results.push(row);
  }
  return results;
}
