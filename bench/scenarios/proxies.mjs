// The topologies users run, side by side in one run: clients straight to the app, behind nginx
// (upstream keepalive pool) and behind HAProxy, each with grace-restart, a plain restart and pm2
// reload. Failures are counted as the client in front of the proxy sees them; the proxy's own
// log says what it hid (upstream errors it retried) and what it made up (502s).
import { join } from 'node:path';
import { METHODS } from '../lib/methods.mjs';
import { proxyUnavailable, startProxy } from '../lib/proxy.mjs';
import { freePort } from '../lib/procs.mjs';
import { runUpgradesUnderLoad } from '../lib/upgrade-run.mjs';

export const TOPOLOGIES = ['direct', 'nginx', 'haproxy'];
export const PROXY_METHODS = ['grace', 'restart', 'pm2-1'];

const kinds = (f) =>
  Object.entries(f)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${k} ${n}`)
    .join(', ') || 'none';

/**
 * One method under one topology; the proxy (if any) is started before and stopped after the app.
 * `watchUpstream` also counts the TCP connections the proxy opens to the app (upgrade-run.mjs);
 * `proxyOptions` go to startProxy.
 */
export async function runOne({ topology, method, framework, dir, settings, watchUpstream = false, proxyOptions = {} }) {
  const port = await freePort();
  const proxyPort = topology === 'direct' ? undefined : await freePort();
  const proxy =
    proxyPort &&
    (await startProxy(topology, {
      dir: join(dir, `${topology}-${method.id}-${proxyPort}`),
      port: proxyPort,
      upstreamPort: port,
      ...proxyOptions,
    }));
  let r;
  try {
    r = await runUpgradesUnderLoad({
      method,
      framework,
      port,
      loadPort: proxyPort ?? port,
      dir,
      ...settings,
      ...(watchUpstream && proxyPort ? { watchPort: port } : {}),
    });
  } finally {
    await proxy?.stop();
  }
  // Read after stop: both proxies flush their logs on the way out.
  return { topology, ...r, ...(proxy ? { proxy: proxy.summary() } : {}) };
}

/**
 * Runs `runMethod(topology, method)` for every topology × method id, in order, and collects its
 * results. A proxy or method that is unavailable here is a `skipped` row, a run that throws an
 * `error` row: one missing prerequisite or one failed run never ends the scenario.
 */
export async function forEachTopologyMethod({ topologies, methodIds, framework, log, runMethod }) {
  const results = [];
  for (const topology of topologies) {
    const missing = topology === 'direct' ? undefined : proxyUnavailable(topology);
    for (const id of methodIds) {
      const method = METHODS[id];
      const skip = missing ?? method.unavailable(framework);
      if (skip) {
        log(`  ${topology} / ${id}: ${skip}`);
        results.push({ topology, framework, method: id, label: method.label, skipped: skip });
        continue;
      }
      try {
        results.push(await runMethod(topology, method));
      } catch (error) {
        log(`  ${topology} / ${id}: ERROR ${error.message}`);
        results.push({ topology, framework, method: id, label: method.label, error: String(error.message) });
      }
    }
  }
  return results;
}

export function runProxies({ framework = 'fastify', dir, upgrades, intervalMs, steadyMs, tailMs, connections, log }) {
  const settings = { upgrades, intervalMs, steadyMs, tailMs, connections };
  return forEachTopologyMethod({
    topologies: TOPOLOGIES,
    methodIds: PROXY_METHODS,
    framework,
    log,
    runMethod: async (topology, method) => {
      const r = await runOne({ topology, method, framework, dir, settings });
      const hidden = r.proxy
        ? `; ${topology} logged ${r.proxy.upstreamErrors} upstream errors, retried ${r.proxy.retried}, answered ${r.proxy.proxyErrors} itself with an error`
        : '';
      log(
        `  ${topology} / ${method.id}: ${r.failed} failed (${kinds(r.failures)}) of ${r.requests}, p99 ${r.steady.p99} -> ${r.during.p99} ms${hidden}`,
      );
      return r;
    },
  });
}
