// The "upstream pool" section of the report: does a proxy's keep-alive pool to the app survive
// upgrades, with grace-restart's live connection handoff (moveConnections) on and off.
import { upstreamPoolSpec } from './charts.mjs';
import { median } from './stats.mjs';

const ok = (run) => (run.upstreamPool ?? []).filter((r) => !r.skipped && !r.error);

/** Targets: 0 failed and 0 proxy errors with handoff on and off; behind nginx with it on, the pool survives. */
export function upstreamPoolTargets(run) {
  const out = [];
  for (const r of ok(run)) {
    const opened = r.upgrades.map((u) => u.upstream?.opened ?? 0);
    out.push({
      name: `zero failed requests behind ${r.topology}: ${r.method}`,
      pass: r.failed === 0 && r.proxy.proxyErrors === 0 && r.landed === r.upgrades.length,
      detail: `${r.failed} failed of ${r.requests}, ${r.topology} answered ${r.proxy.proxyErrors} with an error, ${r.landed}/${r.upgrades.length} upgrades landed`,
    });
    if (r.method === 'grace-move' && r.topology === 'nginx') {
      const u = r.upstream;
      // Survives: at most a tenth of the pool reopened per upgrade (median); the detail says how many exactly.
      out.push({
        name: 'nginx upstream keep-alive pool survives upgrades (moveConnections on)',
        pass: u.poolSize > 0 && median(opened) <= u.poolSize / 10,
        detail: `new upstream connections per upgrade ${opened.join(', ')} (pool of ${u.poolSize}); ${u.poolSurvived}/${u.poolSize} pool connections open at the end`,
      });
    }
  }
  return out;
}

/** { md: lines, charts: { name: spec } } for run.upstreamPool (empty when the run has none). */
export function upstreamPoolSection(run, svgPrefix) {
  const rows = run.upstreamPool ?? [];
  if (rows.length === 0) return { md: [], charts: {} };
  const md = ['## Upstream keep-alive pool across upgrades: moveConnections on vs off', ''];
  md.push(
    "The proxies of the proxies scenario (`bench/lib/proxy.mjs`: nginx with a `keepalive 64` upstream pool, HAProxy with its defaults) in front of the Fastify example, grace-restart's SIGUSR2 self-upgrade with live connection handoff on (`GRACE_RESTART_MOVE_CONNECTIONS=1`) and off (`=0`), same load and upgrades. **New upstream connections** are the TCP connections the proxy opened to the app from each trigger to the next, counted from the kernel's socket table rather than from the proxy or the app (`bench/lib/upstream-conns.mjs`): `/proc/net/tcp` read every 100 ms, plus `ss -E`, which reports every socket as it is destroyed, so a connection that lives less than 100 ms is counted too; a connection is its ephemeral port on the proxy's side. The app's side of the same connections is counted the same way (*accepted*), as a cross-check. **Pool** is the proxy's established connections just before the first upgrade; *kept* how many of exactly those were still open, never closed, at the end. *Moved* is grace-restart's own count (its \"drained\" log line) per upgrade.",
  );
  const kr = ok(run).find((r) => r.proxyOptions?.keepaliveRequests)?.proxyOptions.keepaliveRequests;
  if (kr)
    md.push(
      '',
      `nginx runs here with \`keepalive_requests ${kr.toLocaleString('en-US')}\` in its upstream block: at its default (1000) nginx closes each upstream connection itself after 1000 requests — every few seconds at this load — and would count its own recycling as reconnects caused by the upgrades. With the limit out of reach, only the app can close a pooled connection.`,
    );
  md.push('');
  md.push(
    '| proxy | method | failed (client) | proxy: answered with an error (5xx) | proxy: upstream errors | pool | new upstream connections per upgrade | accepted by the app (total) | pool kept to the end | moved (core) | req/s | p99 steady → during (ms) | landed |',
  );
  md.push('|---|---|---:|---:|---:|---:|---|---:|---:|---|---:|---|---:|');
  for (const r of rows) {
    if (r.skipped || r.error) {
      md.push(`| ${r.topology} | ${r.label} | – | ${r.skipped ?? `error: ${r.error}`} | | | | | | | | | |`);
      continue;
    }
    const u = r.upstream;
    const opened = r.upgrades.map((x) => x.upstream.opened);
    md.push(
      `| ${r.topology} | ${r.label} | ${r.failed === 0 ? '**0**' : r.failed} of ${r.requests.toLocaleString('en-US')} | ${r.proxy.proxyErrors} | ${r.proxy.upstreamErrors} | ${u.poolSize} | ${opened.join(', ')} (median ${median(opened)}) | ${u.accepted} | ${u.poolSurvived}/${u.poolSize} | ${(r.drains ?? []).map((d) => d.moved).join(', ') || '–'} | ${r.rps} | ${r.steady.p99} → ${r.during.p99} | ${r.landed}/${r.upgrades.length} |`,
    );
  }
  md.push('');
  const sources = [...new Set(ok(run).map((r) => r.upstream.source))];
  if (sources.some((s) => !s.startsWith('ss -E')))
    md.push(`> Counted with ${sources.join('; ')}: a connection shorter than 100 ms may be missed.`, '');
  const charts = {};
  if (ok(run).length) {
    charts['upstream-pool'] = upstreamPoolSpec(ok(run), run.settings.upgrades);
    md.push(`![proxy to app connections opened per upgrade, moveConnections on vs off](${svgPrefix}upstream-pool.svg)`, '');
  }
  return { md, charts };
}
