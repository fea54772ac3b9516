// The report's charts as Vega-Lite specs, built from a run's JSON. Each chart answers one
// question; bench/lib/vega-render.mjs turns a spec into SVG.
import { ratePoints, samplingNote } from './rates.mjs';
import { median } from './stats.mjs';

const WIDTH = 760;
const FAILURE_COLORS = { refused: '#f59e0b', reset: '#dc2626', timeout: '#7c3aed', non2xx: '#0891b2', other: '#6b7280' };
const ZERO_COLOR = '#16a34a';
// "30k", "1.5k", but a plain "0" (d3's SI format writes "0k" on a shared axis).
const KILO_LABELS = "datum.value === 0 ? '0' : datum.value >= 1000 ? format(datum.value / 1000, '~r') + 'k' : format(datum.value, '~r')";

/** Does this run's upgrades scenario carry per-upgrade connection counts? */
/** One panel per topology (direct, nginx, HAProxy), in the order given, named at its top left. */
const topologyFacet = (topologies) => ({
  row: {
    field: 'topology',
    type: 'nominal',
    sort: topologies,
    title: null,
    header: { labelAngle: 0, labelOrient: 'top', labelAnchor: 'start', labelFontWeight: 'bold', labelFontSize: 13 },
  },
});

export const hasConnectionCounts = (rows) => rows.some((r) => r.upgrades?.some((u) => u.newConnections !== undefined));

/** Throughput over time, one small multiple per method, triggers as dashed rules. */
export function throughputSpec(framework, rows) {
  const labels = rows.map((r) => r.label);
  const end = Math.max(...rows.map((r) => r.timeline.length * ((r.timelineMs ?? 250) / 1000)));
  const values = rows.flatMap((r) => [
    ...ratePoints(r).map((p) => ({ method: r.label, kind: 'rate', t: p.t, rate: p.rate })),
    ...r.upgrades.map((u) => ({ method: r.label, kind: 'trigger', t: u.atMs / 1000 })),
  ]);
  return {
    title: {
      text: `${framework}: successful answers per second during upgrades`,
      subtitle: `${samplingNote(rows[0])}; dashed red lines: upgrade triggers`,
    },
    data: { values },
    facet: {
      row: {
        field: 'method',
        type: 'nominal',
        sort: labels,
        title: null,
        header: { labelAngle: 0, labelOrient: 'top', labelAnchor: 'start', labelFontWeight: 'bold', labelPadding: 4 },
      },
    },
    spacing: 14,
    spec: {
      width: WIDTH,
      height: 70,
      layer: [
        {
          transform: [{ filter: "datum.kind === 'rate'" }],
          mark: { type: 'line', strokeWidth: 1.5, color: '#2563eb', interpolate: 'linear' },
          encoding: {
            x: {
              field: 't',
              type: 'quantitative',
              title: 'seconds since load start',
              scale: { domain: [0, Math.ceil(end)], nice: false },
              axis: { tickMinStep: 1 },
            },
            y: { field: 'rate', type: 'quantitative', title: 'req/s', axis: { labelExpr: KILO_LABELS, tickCount: 3 } },
          },
        },
        {
          transform: [{ filter: "datum.kind === 'trigger'" }],
          mark: { type: 'rule', color: '#dc2626', strokeDash: [4, 3], strokeWidth: 1 },
          encoding: { x: { field: 't', type: 'quantitative' } },
        },
      ],
    },
  };
}

/** Failed requests per method, stacked by kind, with the total written at the bar's end. */
export function failuresSpec(framework, rows, upgrades) {
  const labels = rows.map((r) => r.label);
  const kinds = Object.keys(FAILURE_COLORS).filter((k) => rows.some((r) => r.failures[k] > 0));
  const bars = rows.flatMap((r) => kinds.map((k) => ({ method: r.label, kind: k, n: r.failures[k] })));
  const totals = rows.map((r) => ({ method: r.label, n: r.failed, text: r.failed.toLocaleString('en-US'), zero: r.failed === 0 }));
  const y = { field: 'method', type: 'nominal', sort: labels, title: null, axis: { labelLimit: 0, labelFontSize: 12 } };
  // All zero (a run of grace-restart alone): keep a 0..10 axis rather than one collapsed on 0.
  const allZero = rows.every((r) => r.failed === 0);
  const x = {
    field: 'n',
    type: 'quantitative',
    aggregate: 'sum',
    title: 'failed requests',
    axis: { labelExpr: KILO_LABELS },
    ...(allZero ? { scale: { domain: [0, 10] } } : {}),
  };
  return {
    title: {
      text: `${framework}: failed requests over ${upgrades} upgrades, per method`,
      subtitle: 'as the clients saw them, no retries; refused = port closed, reset = open connection closed under a request',
    },
    width: WIDTH - 300,
    height: { step: 26 },
    layer: [
      {
        data: { values: bars },
        mark: { type: 'bar', height: { band: 0.7 } },
        encoding: {
          y,
          x,
          color: {
            field: 'kind',
            type: 'nominal',
            title: 'kind',
            scale: { domain: kinds, range: kinds.map((k) => FAILURE_COLORS[k]) },
            legend: kinds.length ? { orient: 'bottom', direction: 'horizontal' } : null,
          },
          order: { field: 'kind', sort: 'ascending' },
        },
      },
      {
        data: { values: totals },
        mark: { type: 'text', align: 'left', dx: 4, fontSize: 12 },
        encoding: {
          y,
          x: { field: 'n', type: 'quantitative', ...(allZero ? { scale: { domain: [0, 10] } } : {}) },
          text: { field: 'text' },
          color: { condition: { test: 'datum.zero', value: ZERO_COLOR }, value: '#111' },
        },
      },
    ],
  };
}

/** New TCP connections per upgrade (median), per method: churn beside the failures. */
export function connectionsSpec(framework, rows, clients) {
  const labels = rows.map((r) => r.label);
  const values = rows.map((r) => {
    const n = median(r.upgrades.map((u) => u.newConnections ?? 0));
    return { method: r.label, n, text: `${n.toLocaleString('en-US')} (steady: ${r.steadyConnects ?? '–'})` };
  });
  const y = { field: 'method', type: 'nominal', sort: labels, title: null, axis: { labelLimit: 0, labelFontSize: 12 } };
  return {
    title: {
      text: `${framework}: new TCP connections per upgrade, per method`,
      subtitle: `median over the upgrades, from each trigger to the next; ${clients} keep-alive clients, so ${clients} = every client reconnected once. In brackets: opened before the first trigger`,
    },
    data: { values },
    width: WIDTH - 340,
    height: { step: 26 },
    layer: [
      {
        mark: { type: 'bar', height: { band: 0.7 }, color: '#0891b2' },
        encoding: { y, x: { field: 'n', type: 'quantitative', title: 'new connections per upgrade (median)' } },
      },
      {
        mark: { type: 'text', align: 'left', dx: 4, fontSize: 12 },
        encoding: { y, x: { field: 'n', type: 'quantitative' }, text: { field: 'text' } },
      },
    ],
  };
}

/** Handoff and drain time against open keep-alive connections, on a log axis. */
export function scalingSpec(byConnections) {
  const counts = byConnections.map((s) => s.connections);
  const medians = byConnections.flatMap((s) => [
    { connections: s.connections, what: 'handoff (trigger → successor ready)', ms: s.handoffMs, label: `${s.handoffMs} ms` },
    { connections: s.connections, what: 'drain (drain start → last old connection closed)', ms: s.drainMs, label: `${s.drainMs} ms` },
  ]);
  const samples = byConnections.flatMap((s) =>
    (s.samples ?? []).flatMap((x) => [
      { connections: s.connections, what: 'handoff (trigger → successor ready)', ms: x.handoffMs },
      { connections: s.connections, what: 'drain (drain start → last old connection closed)', ms: x.drainMs },
    ]),
  );
  const x = {
    field: 'connections',
    type: 'quantitative',
    title: 'open keep-alive connections (log scale)',
    scale: { type: 'log', domain: [Math.min(...counts) * 0.7, Math.max(...counts) * 2] },
    axis: { values: counts, format: ',d', grid: true },
  };
  const color = {
    field: 'what',
    type: 'nominal',
    title: null,
    scale: { range: ['#2563eb', '#d97706'] },
    legend: { orient: 'bottom', direction: 'vertical' },
  };
  return {
    title: {
      text: 'Handoff and drain time against open keep-alive connections',
      subtitle: 'node:http + core; line: median, dots: each upgrade',
    },
    width: WIDTH - 160,
    height: 300,
    layer: [
      {
        data: { values: medians },
        mark: { type: 'line', point: { size: 60 } },
        encoding: { x, y: { field: 'ms', type: 'quantitative', title: 'ms' }, color },
      },
      {
        data: { values: samples },
        mark: { type: 'point', size: 30, opacity: 0.6 },
        encoding: { x, y: { field: 'ms', type: 'quantitative' }, color },
      },
      // Handoff labels above its flat line; drain labels below-right, away from its rising line.
      {
        data: { values: medians.filter((m) => m.what.startsWith('handoff')) },
        mark: { type: 'text', dy: -12, fontSize: 11 },
        encoding: { x, y: { field: 'ms', type: 'quantitative' }, text: { field: 'label' }, color },
      },
      {
        data: { values: medians.filter((m) => m.what.startsWith('drain')) },
        mark: { type: 'text', align: 'left', dx: 7, dy: 13, fontSize: 11 },
        encoding: { x, y: { field: 'ms', type: 'quantitative' }, text: { field: 'label' }, color },
      },
    ],
  };
}

/**
 * Failed requests as the client in front of the proxy saw them, one panel per topology; the text
 * beside each bar adds what the proxy's log shows (upstream errors it hid by retrying).
 */
export function proxiesSpec(rows, upgrades) {
  const topologies = [...new Set(rows.map((r) => r.topology))];
  const labels = [...new Set(rows.map((r) => r.label))];
  const kinds = Object.keys(FAILURE_COLORS).filter((k) => rows.some((r) => r.failures[k] > 0));
  const proxyNote = (r) =>
    r.proxy
      ? ` · proxy log: ${r.proxy.upstreamErrors.toLocaleString('en-US')} upstream errors, ${r.proxy.retried.toLocaleString('en-US')} retried`
      : '';
  const values = rows.flatMap((r) => [
    ...kinds.map((k) => ({ topology: r.topology, method: r.label, row: 'bar', kind: k, n: r.failures[k] })),
    {
      topology: r.topology,
      method: r.label,
      row: 'text',
      n: r.failed,
      text: `${r.failed.toLocaleString('en-US')} failed${proxyNote(r)}`,
      zero: r.failed === 0,
    },
  ]);
  const y = { field: 'method', type: 'nominal', sort: labels, title: null, axis: { labelLimit: 0, labelFontSize: 12 } };
  const x = { field: 'n', type: 'quantitative', title: 'failed requests, as the client saw them', axis: { labelExpr: KILO_LABELS } };
  return {
    title: {
      text: `Failed requests over ${upgrades} upgrades: direct, behind nginx, behind HAProxy`,
      subtitle: "fastify; counted by the client in front of the proxy (no retries); the proxy's own log in the label",
    },
    data: { values },
    facet: topologyFacet(topologies),
    spacing: 16,
    spec: {
      width: WIDTH - 420,
      height: { step: 26 },
      layer: [
        {
          transform: [{ filter: "datum.row === 'bar'" }],
          mark: { type: 'bar', height: { band: 0.7 } },
          encoding: {
            y,
            x: { ...x, aggregate: 'sum' },
            color: {
              field: 'kind',
              type: 'nominal',
              title: 'kind',
              scale: { domain: kinds, range: kinds.map((k) => FAILURE_COLORS[k]) },
              legend: { orient: 'bottom', direction: 'horizontal' },
            },
            order: { field: 'kind' },
          },
        },
        {
          transform: [{ filter: "datum.row === 'text'" }],
          mark: { type: 'text', align: 'left', dx: 4, fontSize: 12 },
          encoding: { y, x, text: { field: 'text' }, color: { condition: { test: 'datum.zero', value: ZERO_COLOR }, value: '#111' } },
        },
      ],
    },
  };
}

/**
 * New TCP connections the proxy opened to the app per upgrade (median), one panel per proxy,
 * moveConnections on vs off; a dashed rule marks the pool's size before the first upgrade (what
 * "every pooled connection reopened" would be). The label adds each upgrade's count, the pool
 * connections still open at the end, failed requests and the proxy's own error answers.
 */
export function upstreamPoolSpec(rows, upgrades) {
  const topologies = [...new Set(rows.map((r) => r.topology))];
  const labels = [...new Set(rows.map((r) => r.label))];
  const values = rows.flatMap((r) => {
    const each = r.upgrades.map((u) => u.upstream?.opened ?? 0);
    const n = median(each);
    const u = r.upstream;
    return [
      { topology: r.topology, method: r.label, row: 'bar', n, on: r.method === 'grace-move' },
      { topology: r.topology, method: r.label, row: 'pool', n: u.poolSize },
      {
        topology: r.topology,
        method: r.label,
        row: 'text',
        n,
        text: `${each.join(', ')} new · ${u.poolSurvived}/${u.poolSize} of the pool kept · ${r.failed.toLocaleString('en-US')} failed, ${r.proxy.proxyErrors} 5xx from ${r.topology}`,
        zero: r.failed === 0 && r.proxy.proxyErrors === 0,
      },
    ];
  });
  const y = { field: 'method', type: 'nominal', sort: labels, title: null, axis: { labelLimit: 0, labelFontSize: 12 } };
  const maxX = Math.max(...values.map((v) => v.n), 1);
  const x = {
    field: 'n',
    type: 'quantitative',
    title: 'new upstream TCP connections per upgrade (median)',
    scale: { domain: [0, maxX * 1.05] },
  };
  return {
    title: {
      text: `Proxy → app connections opened per upgrade, over ${upgrades} upgrades`,
      subtitle: [
        "fastify, grace-restart self-upgrade; counted from the kernel's socket table (ss -E + /proc/net/tcp). Dashed: the proxy's pool before",
        'the first upgrade. Label: new connections at each upgrade, pool connections still open at the end, client failures, proxy 5xx',
      ],
    },
    data: { values },
    facet: topologyFacet(topologies),
    spacing: 16,
    spec: {
      width: WIDTH - 420,
      height: { step: 30 },
      layer: [
        {
          transform: [{ filter: "datum.row === 'bar'" }],
          mark: { type: 'bar', height: { band: 0.7 } },
          encoding: {
            y,
            x,
            color: { field: 'on', type: 'nominal', scale: { domain: [true, false], range: ['#16a34a', '#0891b2'] }, legend: null },
          },
        },
        { transform: [{ filter: "datum.row === 'pool'" }], mark: { type: 'rule', strokeDash: [4, 3], color: '#6b7280' }, encoding: { x } },
        {
          transform: [{ filter: "datum.row === 'text'" }],
          mark: { type: 'text', align: 'left', dx: 4, fontSize: 12 },
          encoding: { y, x, text: { field: 'text' }, color: { condition: { test: 'datum.zero', value: ZERO_COLOR }, value: '#111' } },
        },
      ],
    },
  };
}

/** Does this run's upgrades scenario carry the per-100 ms p99 profile around each upgrade? */
export const hasP99Around = (rows) => rows.some((r) => r.upgrades?.some((u) => u.p99Around?.length));

/**
 * p99 of each 100 ms window around each upgrade (one line per upgrade, x = ms from its trigger),
 * one small multiple per method, on a log axis with the method's steady p99 as a dashed rule:
 * a spike shows as lines leaving the rule, its absence as lines hugging it.
 */
export function p99AroundSpec(framework, rows) {
  const shown = rows.filter((r) => r.upgrades?.some((u) => u.p99Around?.length));
  const labels = shown.map((r) => r.label);
  const values = shown.flatMap((r) => [
    ...r.upgrades.flatMap((u) =>
      (u.p99Around ?? []).map((p) => ({ method: r.label, kind: 'p99', upgrade: `#${u.n}`, t: p.t, p99: Math.max(p.p99, 0.1) })),
    ),
    { method: r.label, kind: 'steady', p99: r.steady.p99 },
  ]);
  return {
    title: {
      text: `${framework}: p99 latency per 100 ms window around each upgrade`,
      subtitle: "one line per upgrade, x = ms from its trigger (0, solid rule); dashed: the method's steady-state p99; log scale",
    },
    data: { values },
    facet: {
      row: {
        field: 'method',
        type: 'nominal',
        sort: labels,
        title: null,
        header: { labelAngle: 0, labelOrient: 'top', labelAnchor: 'start', labelFontWeight: 'bold', labelPadding: 4 },
      },
    },
    spacing: 14,
    resolve: { scale: { y: 'shared' } },
    spec: {
      width: WIDTH - 120,
      height: 90,
      layer: [
        {
          transform: [{ filter: "datum.kind === 'p99'" }],
          mark: { type: 'line', strokeWidth: 1.2, interpolate: 'step-after', opacity: 0.85 },
          encoding: {
            x: { field: 't', type: 'quantitative', title: 'ms from the upgrade trigger', scale: { domain: [-500, 2500], nice: false } },
            y: { field: 'p99', type: 'quantitative', title: 'p99 (ms)', scale: { type: 'log' }, axis: { tickCount: 4 } },
            color: { field: 'upgrade', type: 'nominal', title: 'upgrade', legend: { orient: 'right' } },
          },
        },
        {
          transform: [{ filter: "datum.kind === 'steady'" }],
          mark: { type: 'rule', color: '#111827', strokeDash: [5, 3], strokeWidth: 1.2 },
          encoding: { y: { field: 'p99', type: 'quantitative' } },
        },
        {
          data: { values: [{ t: 0 }] },
          mark: { type: 'rule', color: '#dc2626', strokeWidth: 1 },
          encoding: { x: { field: 't', type: 'quantitative' } },
        },
      ],
    },
  };
}
