// Upgrades under load: each method replaces the app K times while keep-alive clients hammer it;
// every request is counted as the client saw it (see lib/load.mjs and lib/upgrade-run.mjs).
import { METHODS } from '../lib/methods.mjs';
import { freePort } from '../lib/procs.mjs';
import { runUpgradesUnderLoad } from '../lib/upgrade-run.mjs';

const kinds = (f) =>
  Object.entries(f)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${k} ${n}`)
    .join(', ') || 'none';

// The latency targets are grace-restart's: its runs also get a second steady window (the noise
// floor) and a cold start of the same app under the same load (what trigger -> serving is held to).
const isGrace = (id) => id === 'grace' || id.startsWith('supervisor');

export async function runUpgrades({ frameworks, methods, dir, upgrades, intervalMs, steadyMs, tailMs, steadyAfterMs, connections, log }) {
  const results = [];
  for (const framework of frameworks) {
    for (const id of methods(framework)) {
      const method = METHODS[id];
      const missing = method.unavailable(framework);
      if (missing) {
        log(`  ${framework} / ${id}: ${missing.startsWith('skipped') ? missing : `skipped: ${missing}`}`);
        results.push({ framework, method: id, label: method.label, skipped: missing });
        continue;
      }
      try {
        const grace = isGrace(id);
        // A freshly started app serves slower for its first seconds (its JIT warms up): grace-restart's
        // runs measure steady state from 2 s on, so that both steady windows see a warm process.
        const r = await runUpgradesUnderLoad({
          method,
          framework,
          port: await freePort(),
          dir,
          upgrades,
          intervalMs,
          steadyMs,
          tailMs,
          warmupMs: grace ? 2000 : 500,
          steadyAfterMs: grace ? steadyAfterMs : 0,
          coldStart: grace,
          connections,
        });
        const serving = r.upgrades.map((u) => (u.servingMs === undefined ? '–' : Math.round(u.servingMs))).join('/');
        const cold = r.coldStartMs === undefined ? '' : ` (cold start ${Math.round(r.coldStartMs)} ms)`;
        const tail = r.steady.p999 === undefined ? '' : `, p99.9 ${r.steady.p999} -> ${r.upgrading.p999} ms`;
        log(
          `  ${framework} / ${id}: ${r.failed} failed (${kinds(r.failures)}) of ${r.requests}, ${r.rps} req/s, p99 ${r.steady.p99} -> ${r.upgrading.p99} ms while upgrading (${r.during.p99} ms trigger -> old gone)${tail}, new version serving after ${serving} ms${cold}`,
        );
        for (const u of r.upgrades.filter((x) => x.error)) log(`    upgrade ${u.n}: ${u.error}`);
        results.push(r);
      } catch (error) {
        log(`  ${framework} / ${id}: ERROR ${error.message}`);
        results.push({ framework, method: id, label: method.label, error: String(error.message) });
      }
    }
  }
  return results;
}
