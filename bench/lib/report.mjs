// Turns a bench run's JSON into the markdown report and its SVG charts.
import { barChart, lineChart } from './svg.mjs';

const n = (v, digits = 0) => (v === undefined || v === null || Number.isNaN(v) ? '–' : Number(v).toFixed(digits));
const ms = (v) => (v === undefined ? '–' : `${n(v)} ms`);
const median = (xs) => {
  const s = xs.filter((x) => x !== undefined).sort((a, b) => a - b);
  return s.length === 0 ? undefined : s[Math.floor((s.length - 1) / 2)];
};
const max = (xs) => (xs.filter((x) => x !== undefined).length === 0 ? undefined : Math.max(...xs.filter((x) => x !== undefined)));
const isGrace = (id) => id === 'grace' || id.startsWith('supervisor');

/** Evaluates the targets; each { name, pass, detail }. */
export function targets(run) {
  const out = [];
  for (const o of run.overhead ?? []) {
    if (o.skipped || o.control) continue;
    out.push({ name: `overhead under 2 % (${o.framework})`, pass: o.overheadPct < 2, detail: `${n(o.overheadPct, 1)} % fewer req/s, ${n(o.cpuOverheadPct, 1)} % more CPU per request (req/s rounds: ${o.rounds.grace.map((r) => Math.round(r.rps)).join(', ')} vs ${o.rounds.bare.map((r) => Math.round(r.rps)).join(', ')})` });
  }
  const graceRuns = (run.upgrades ?? []).filter((r) => isGrace(r.method) && !r.skipped);
  for (const r of graceRuns) {
    out.push({ name: `zero failed requests: ${r.framework} / ${r.method}`, pass: r.failed === 0 && !r.error && r.landed === r.upgrades.length, detail: r.error ?? `${r.failed} failed of ${r.requests}, ${r.landed}/${r.upgrades.length} upgrades landed` });
  }
  for (const key of ['byConnections', 'byListeners']) {
    for (const s of run.scaling?.[key] ?? []) {
      const what = s.connections !== undefined ? `${s.connections} keep-alive connections` : `${s.listeners} listeners`;
      out.push({ name: `zero failed requests: scaling, ${what}`, pass: s.failed === 0, detail: `${s.failed} failed of ${s.requests}${s.failed ? ` (${kinds(s.failures)})` : ''}` });
    }
  }
  for (const r of graceRuns.filter((x) => !x.error)) {
    const ratio = r.during.p99 / r.steady.p99;
    out.push({ name: `p99 during upgrades within 2× steady: ${r.framework} / ${r.method}`, pass: ratio <= 2, detail: `${n(r.steady.p99, 1)} -> ${n(r.during.p99, 1)} ms (${n(ratio, 1)}×)` });
  }
  return out;
}

const kinds = (f = {}) => Object.entries(f).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${v}`).join(', ') || '0';

/** Returns { markdown, svgs: { name: svgText } }; `svgPrefix` is how the .md links to the files. */
export function renderReport(run, { svgPrefix }) {
  const svgs = {};
  const md = [];
  const t = targets(run);
  md.push(`# grace-restart benchmark — ${run.date}${run.quick ? ' (quick)' : ''}`);
  md.push('');
  md.push(`Machine: ${run.machine.cpus}× ${run.machine.cpuModel}, ${run.machine.memGb} GB, Node ${run.machine.node}, ${run.machine.platform}. Run took ${n(run.durationS)} s (${Object.entries(run.phaseSeconds ?? {}).map(([k, v]) => `${k} ${v} s`).join(', ')}). Load average before/after: ${run.machine.loadAverage?.before ?? '–'} / ${run.machine.loadAverage?.after ?? '–'}${(run.machine.loadAverage?.before ?? 0) > 0.5 ? ' — **the machine was busy with other work: absolute numbers and ratios are noisier than usual**' : ''}.`);
  md.push(`Load: ${run.settings.connections} keep-alive connections on 127.0.0.1, no retries; ${run.settings.upgrades} upgrades ${run.settings.intervalMs / 1000} s apart per method; every request counted as the client saw it. Load generator and server share the same ${run.machine.cpus} cores.`);
  // Free-form caveats added to the JSON by hand (e.g. the code changed during the run).
  for (const note of run.notes ?? []) md.push(`> **Note:** ${note}`);
  md.push('');
  md.push('## Targets');
  md.push('');
  const failedTargets = t.filter((x) => !x.pass);
  md.push(failedTargets.length === 0 ? `**All ${t.length} targets met.**` : `**${failedTargets.length} of ${t.length} targets missed** — see FAIL rows.`);
  md.push('');
  md.push('| target | result | measured |');
  md.push('|---|---|---|');
  for (const x of t) md.push(`| ${x.name} | ${x.pass ? 'PASS' : '**FAIL**'} | ${x.detail} |`);
  md.push('');

  if (run.upgrades?.length) {
    md.push('## Upgrades under load');
    md.push('');
    md.push('Failed requests are split by kind: *refused* (connect refused: nobody listening), *reset* (connection reset / socket hang up with a request outstanding), *timeout* (no answer within the request timeout), *non2xx*. "Serving" is the time from the trigger to the first answer from a new process; "old gone" to the exit of every process that served before; "gap" the longest stretch without any successful answer (medians / max over the upgrades).');
    md.push('');
    md.push('| framework | method | failed | by kind | req/s | p99 steady → during (ms) | serving (median) | old gone (median) | max gap | landed |');
    md.push('|---|---|---:|---|---:|---|---:|---:|---:|---:|');
    for (const r of run.upgrades) {
      if (r.skipped || r.error) {
        md.push(`| ${r.framework} | ${r.label} | – | ${r.skipped ?? `error: ${r.error}`} | | | | | | |`);
        continue;
      }
      const u = r.upgrades;
      md.push(`| ${r.framework} | ${r.label} | ${r.failed === 0 ? '**0**' : r.failed} | ${kinds(r.failures)} | ${r.rps} | ${n(r.steady.p99, 1)} → ${n(r.during.p99, 1)} | ${ms(median(u.map((x) => x.servingMs)))} | ${ms(median(u.map((x) => x.goneMs)))} | ${ms(max(u.map((x) => x.gapMs)))} | ${r.landed}/${u.length} |`);
    }
    md.push('');
    for (const framework of [...new Set(run.upgrades.map((r) => r.framework))]) {
      const rows = run.upgrades.filter((r) => r.framework === framework && r.timeline);
      if (rows.length === 0) continue;
      const name = `throughput-${framework}`;
      svgs[name] = lineChart({
        title: `${framework}: successful answers per second during upgrades (dashed: triggers)`,
        xLabel: 'seconds since load start',
        yLabel: 'req/s',
        series: rows.map((r) => ({ name: r.label, points: r.timeline.map((p) => [p.t, p.rps]), markers: r.upgrades.map((x) => x.atMs / 1000) })),
      });
      // Refused connects are listed apart (as in the anchors): their count depends on how fast a
      // client reconnects, and they would dwarf the requests lost on open connections.
      svgs[`failures-${framework}`] = barChart({
        title: `${framework}: requests lost on open connections over ${run.settings.upgrades} upgrades (reset + timeout + non-2xx)`,
        bars: rows.map((r) => ({ label: `${r.label}${r.failures.refused ? ` (+${r.failures.refused} refused)` : ''}`, value: r.failed - r.failures.refused, color: r.failed === 0 ? '#16a34a' : '#dc2626' })),
      });
      md.push(`### ${framework}`);
      md.push('');
      md.push(`![${framework} throughput](${svgPrefix}${name}.svg)`);
      md.push('');
      md.push(`![${framework} failed requests](${svgPrefix}failures-${framework}.svg)`);
      md.push('');
    }
  }

  if (run.overhead?.length) {
    md.push('## Steady-state overhead');
    md.push('');
    md.push(`autocannon, ${run.settings.connections} connections, ${run.settings.overheadRounds} alternating rounds of ${run.settings.overheadDurationS} s per variant, mean over rounds; both processes are restarted in the other start order halfway, because on this machine the process started second can measure a few % slower than its identical twin. autocannon reports latency in whole milliseconds, so p99 ratios near 1 ms are coarse.`);
    const control = run.overhead.find((o) => o.control);
    if (control) md.push('', `The first row is an A/A control: the bare node:http app measured against itself the same way. Its difference (${n(control.overheadPct, 1)} %) is the noise floor of the method on this machine: overhead figures within it are not distinguishable from zero.`);
    md.push('', 'CPU/request is the server process\'s CPU time (user + system, from /proc, 10 ms ticks) divided by the requests answered: it does not depend on how the load generator and the server share the cores, so it is the steadier figure of the two.');
    md.push('');
    md.push('| framework | bare req/s | grace-restart req/s | ratio | overhead | bare CPU/request | grace-restart CPU/request | CPU overhead | bare p99 | grace-restart p99 |');
    md.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const o of run.overhead) {
      const cpu = (x) => (x.cpuPerReqUs === undefined ? '–' : `${n(x.cpuPerReqUs, 2)} µs`);
      const cpuPct = o.cpuOverheadPct === undefined ? '–' : `${n(o.cpuOverheadPct, 1)} %`;
      const name = o.control ? 'control: bare node vs itself' : o.framework;
      if (o.skipped) md.push(`| ${o.framework} | – | – | – | ${o.skipped} | | | | | |`);
      else md.push(`| ${name} | ${o.bare.rps} | ${o.grace.rps} | ${n(o.rpsRatio, 3)} | ${n(o.overheadPct, 1)} % | ${cpu(o.bare)} | ${cpu(o.grace)} | ${cpuPct} | ${n(o.bare.p99, 1)} ms | ${n(o.grace.p99, 1)} ms |`);
    }
    md.push('');
  }

  if (run.scaling) {
    md.push('## Scaling: handoff and drain');
    md.push('');
    md.push('node:http + core (`bench/apps/grace-node.mjs`). Handoff = trigger → successor ready, drain = drain start → last old connection gone, both as the core measures them (median over the upgrades). Connections are mostly idle keep-alive clients (one request every ~1–2 s each), counted with the same no-retry loader.');
    md.push('');
    md.push('| keep-alive connections | handoff | drain | open at drain start | closed idle | forced | failed (kinds) |');
    md.push('|---:|---:|---:|---:|---:|---:|---|');
    for (const s of run.scaling.byConnections) md.push(`| ${s.connections} | ${n(s.handoffMs)} ms | ${n(s.drainMs)} ms | ${n(s.drainedConnections)} | ${n(s.closedIdle)} | ${n(s.forced)} | ${s.failed} of ${s.requests} (${kinds(s.failures)}) |`);
    md.push('');
    md.push('| listeners | handoff | drain | failed |');
    md.push('|---:|---:|---:|---|');
    for (const s of run.scaling.byListeners) md.push(`| ${s.listeners} | ${n(s.handoffMs)} ms | ${n(s.drainMs)} ms | ${s.failed} of ${s.requests} |`);
    md.push('');
    const conn = run.scaling.byConnections;
    if (conn.length > 1) {
      svgs['scaling-connections'] = lineChart({
        title: 'handoff and drain time vs open keep-alive connections',
        xLabel: 'open keep-alive connections',
        yLabel: 'ms',
        series: [
          { name: 'handoff (ms)', points: conn.map((s) => [s.connections, s.handoffMs ?? 0]) },
          { name: 'drain (ms)', points: conn.map((s) => [s.connections, s.drainMs ?? 0]) },
        ],
      });
      md.push(`![scaling](${svgPrefix}scaling-connections.svg)`);
      md.push('');
    }
  }

  md.push('## How to read this');
  md.push('');
  md.push('See [bench/README.md](../README.md) for what each method does and how failures are counted. Every number comes from this one run on this one machine; compare rows, not absolute values across machines.');
  md.push('');
  return { markdown: md.join('\n'), svgs };
}
