// Does a proxy's upstream keep-alive pool survive upgrades? nginx (`keepalive 64`) and HAProxy in
// front of the Fastify example, grace-restart's self-upgrade with live connection handoff
// (moveConnections) on and off, the same K upgrades under the same load as the proxies scenario.
// Besides what the client saw and what the proxy logged, it counts — from the kernel's socket
// table, lib/upstream-conns.mjs — the TCP connections the proxy opened to the app per upgrade:
// with handoff on the pool's connections move to the successor (≈ 0 new), with it off every
// pooled connection is closed by the drain and reopened (≈ the pool's size).
//
// nginx closes an upstream connection itself after `keepalive_requests` requests (default 1000):
// at ~7,000 req/s over 50 connections that is every 7 s, which would count nginx's own recycling
// as reconnects (a first run at the default saw 0, 36 and 14 with handoff on). So nginx runs here
// with keepalive_requests raised out of reach and only the app can close a pooled connection;
// HAProxy has no such limit by default (`max-reuse` -1).
import { forEachTopologyMethod, runOne } from './proxies.mjs';
import { median } from '../lib/stats.mjs';

export const POOL_TOPOLOGIES = ['nginx', 'haproxy'];
export const POOL_METHODS = ['grace-move', 'grace-nomove'];
export const NGINX_KEEPALIVE_REQUESTS = 1_000_000;

export function runUpstreamPool({ framework = 'fastify', dir, upgrades, intervalMs, steadyMs, tailMs, connections, log }) {
  const settings = { upgrades, intervalMs, steadyMs, tailMs, connections };
  return forEachTopologyMethod({
    topologies: POOL_TOPOLOGIES,
    methodIds: POOL_METHODS,
    framework,
    log,
    runMethod: async (topology, method) => {
      const proxyOptions = topology === 'nginx' ? { keepaliveRequests: NGINX_KEEPALIVE_REQUESTS } : {};
      const r = { ...(await runOne({ topology, method, framework, dir, settings, watchUpstream: true, proxyOptions })), proxyOptions };
      const u = r.upstream;
      const opened = r.upgrades.map((x) => x.upstream.opened);
      const moved = (r.drains ?? []).map((d) => d.moved);
      log(
        `  ${topology} / ${method.id}: ${r.failed} failed of ${r.requests}; ${topology}: ${r.proxy.proxyErrors} answered with an error, ${r.proxy.upstreamErrors} upstream errors; ` +
          `upstream pool ${u.poolSize}, new upstream connections per upgrade ${opened.join(', ')} (median ${median(opened)}), ${u.poolSurvived}/${u.poolSize} of the pool open at the end; core moved ${moved.join(', ') || '–'}`,
      );
      return r;
    },
  });
}
