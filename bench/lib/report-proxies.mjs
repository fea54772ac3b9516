// The "behind a proxy" section of the report: the same methods direct, behind nginx and behind
// HAProxy, with what the proxy's own log shows next to what the client saw.
import { proxiesSpec } from './charts.mjs';

const n = (v, digits = 0) => (v === undefined || v === null || Number.isNaN(v) ? '–' : Number(v).toFixed(digits));
const kinds = (f = {}) =>
  Object.entries(f)
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ') || '0';
const top = (o = {}, k = 3) =>
  Object.entries(o)
    .sort((a, b) => b[1] - a[1])
    .slice(0, k)
    .map(([msg, c]) => `${c}× ${msg.replace(/\|/g, '/')}`)
    .join('; ');

/** { md: lines, charts: { name: spec } } for run.proxies (empty when the run has none). */
export function proxiesSection(run, svgPrefix) {
  const rows = run.proxies ?? [];
  if (rows.length === 0) return { md: [], charts: {} };
  const md = ['## Behind a proxy: direct, nginx, HAProxy', ''];
  md.push(
    'The same app (Fastify) and load, three ways in: clients straight to the app, through **nginx** (one upstream server, `keepalive 64` pool, HTTP/1.1 with `Connection: ""` — the recommended setup) and through **HAProxy** (defaults: keep-alive on both sides, idle server connections reused in `safe` mode, `retries 3` on connect failure). Failures are counted by the client in front of the proxy; the proxy\'s own log shows the upstream errors it hid from the client by retrying (they still cost latency) and the answers it made up (502/503). Configs: `bench/lib/proxy.mjs`.',
  );
  md.push('');
  md.push(
    '| topology | method | failed (client) | by kind | p99 steady → during (ms) | max gap | proxy: upstream errors | proxy: retried, then answered | proxy: answered with an error | landed |',
  );
  md.push('|---|---|---:|---|---|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    if (r.skipped || r.error) {
      md.push(`| ${r.topology} | ${r.label} | – | ${r.skipped ?? `error: ${r.error}`} | | | | | | |`);
      continue;
    }
    const gap = Math.max(0, ...r.upgrades.map((u) => u.gapMs ?? 0));
    const p = r.proxy;
    md.push(
      `| ${r.topology} | ${r.label} | ${r.failed === 0 ? '**0**' : r.failed} | ${kinds(r.failures)} | ${n(r.steady.p99, 1)} → ${n(r.during.p99, 1)} | ${gap} ms | ${p ? p.upstreamErrors : '–'} | ${p ? p.retried : '–'} | ${p ? p.proxyErrors : '–'} | ${r.landed}/${r.upgrades.length} |`,
    );
  }
  md.push('');
  const logged = rows.filter((r) => r.proxy && Object.keys(r.proxy.byMessage).length);
  if (logged.length) {
    md.push('What the proxies logged (most frequent first):', '');
    for (const r of logged) md.push(`- ${r.topology} / ${r.label}: ${top(r.proxy.byMessage)}`);
    md.push('');
  }
  // Measured: when the app closes an idle keep-alive connection, HAProxy (these defaults) closes
  // the client's connection with it; nginx does not. Resets are therefore the client failures a
  // proxy log cannot show: no request reached the proxy's logger.
  const resets = rows.filter((r) => r.proxy && r.failures.reset > 0);
  if (resets.length) {
    md.push(
      `Resets the client saw behind a proxy (${resets.map((r) => `${r.topology} / ${r.label}: ${r.failures.reset}`).join('; ')}) have no line in the proxy's log: the proxy closed the client's keep-alive connection itself — HAProxy does so when the app closes the upstream connection it was paired with — and a request racing that close is reset before the proxy logs a request. nginx keeps client connections open when an upstream connection closes.`,
      '',
    );
  }
  const charts = {};
  const ok = rows.filter((r) => !r.skipped && !r.error);
  if (ok.length) {
    charts.proxies = proxiesSpec(ok, run.settings.upgrades);
    md.push(`![failed requests per method: direct, behind nginx, behind HAProxy](${svgPrefix}proxies.svg)`, '');
  }
  return { md, charts };
}
