// The five lines latest.md opens with: which method loses how many requests, and what
// grace-restart costs. Computed from the run, never written by hand.
import { judge, noiseFloor } from './noise-floor.mjs';
import { median } from './stats.mjs';

const FAMILIES = [
  { name: 'plain restart', ids: ['restart'] },
  { name: 'graceful close, then start', ids: ['graceful'] },
  { name: 'pm2 reload', ids: ['pm2-1', 'pm2-2'] },
];
const GRACE_IDS = ['grace', 'supervisor-1', 'supervisor-2'];
const int = (v) => Math.round(v).toLocaleString('en-US');
const range = (xs, f = int) => {
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  return lo === hi ? f(lo) : `${f(lo)}–${f(hi)}`;
};
const sum = (xs) => xs.reduce((a, b) => a + b, 0);

/** Markdown lines (at most five). */
export function verdict(run) {
  const rows = (run.upgrades ?? []).filter((r) => !r.skipped && !r.error);
  const lines = [];
  const grace = rows.filter((r) => GRACE_IDS.includes(r.method));
  if (grace.length) lines.push(graceLine(grace, run.settings.connections));
  for (const family of FAMILIES) {
    const fr = rows.filter((r) => family.ids.includes(r.method));
    if (fr.length) lines.push(lossLine(family.name, fr));
  }
  const cost = costLine(run, grace);
  if (cost) lines.push(cost);
  return lines.slice(0, 5).map((l) => `- ${l}`);
}

function graceLine(rows, clients) {
  const failed = sum(rows.map((r) => r.failed));
  const requests = sum(rows.map((r) => r.requests));
  const upgrades = sum(rows.map((r) => r.upgrades.length));
  const frameworks = [...new Set(rows.map((r) => r.framework))].join(', ');
  return `**grace-restart lost ${int(failed)} of ${int(requests)} requests** over ${upgrades} upgrades (SIGUSR2 self-upgrade and \`grace-restart run\`; ${frameworks}; ${clients} keep-alive clients, no retries).`;
}

function lossLine(name, rows) {
  const failed = rows.map((r) => r.failed);
  const perUpgrade = rows.map((r) => r.failed / r.upgrades.length);
  const refused = sum(rows.map((r) => r.failures.refused));
  const timeouts = rows.map((r) => r.failures.timeout);
  const total = sum(failed);
  const k = rows[0].upgrades.length;
  const why =
    total > 0 && refused / total > 0.9
      ? `nearly all refused while the port was closed (longest gap ${range(rows.map((r) => Math.max(...r.upgrades.map((u) => u.gapMs ?? 0))))} ms)`
      : `mostly keep-alive connections reset under a request${sum(timeouts) ? `, plus ${range(timeouts)} timeouts` : ''}`;
  return `**${name}** lost ${range(failed)} requests per ${k} upgrades (≈${range(perUpgrade)} per upgrade): ${why}.`;
}

function costLine(run, grace) {
  const floor = noiseFloor(run.overhead);
  const fw = (run.overhead ?? []).filter((o) => !o.control && !o.skipped);
  const parts = [];
  if (fw.length) parts.push(overheadPhrase(fw, floor));
  const self = grace.filter((r) => r.method === 'grace');
  const p99Ratios = (window) =>
    range(
      self.map((r) => r[window].p99 / r.steady.p99),
      (v) => v.toFixed(1),
    );
  if (self.length && self[0].upgrading)
    parts.push(
      `p99 ${p99Ratios('upgrading')}× steady while SIGUSR2 upgrades run every ${run.settings.intervalMs / 1000} s (${p99Ratios('during')}× from a trigger until the old process is gone)`,
    );
  else if (self.length) parts.push(`p99 ${p99Ratios('during')}× steady during a SIGUSR2 upgrade`);
  if (self.length)
    parts.push(
      `the old process drains for ~${range(
        self.map((r) => median(r.upgrades.map((u) => u.goneMs ?? 0)) / 1000),
        (v) => v.toFixed(1),
      )} s beside the new one`,
    );
  return parts.length ? `**What grace-restart costs**: ${parts.join('; ')}.` : undefined;
}

const FRAMEWORK_NAMES = { node: 'node:http' };

/** "2.4 % fewer req/s on fastify, 4.4 % on node:http (beyond the A/A noise floor of ±0.7 %); none measurable on express, koa". */
function overheadPhrase(rows, floor) {
  const name = (o) => FRAMEWORK_NAMES[o.framework] ?? o.framework;
  if (!floor) {
    const signed = (v) => (v < 0 ? `−${(-v).toFixed(1)}` : v.toFixed(1));
    const pcts = rows.map((o) => o.overheadPct);
    const span = pcts.length > 1 ? `between ${signed(Math.min(...pcts))} % and ${signed(Math.max(...pcts))} %` : `${signed(pcts[0])} %`;
    return `steady-state req/s overhead ${span} — not judged: this run has no A/A control, so no noise floor`;
  }
  const real = rows.filter((o) => judge(o.overheadPct, floor.rpsPct) === 'real');
  const not = rows.filter((o) => !real.includes(o));
  const floorText = `the A/A noise floor of ±${floor.rpsPct.toFixed(1)} %`;
  const head = real.length
    ? `${real.map((o, i) => `${o.overheadPct.toFixed(1)} %${i === 0 ? ' fewer req/s' : ''} on ${name(o)}`).join(', ')} in steady state (beyond ${floorText})`
    : `no steady-state req/s difference beyond ${floorText}`;
  return not.length && real.length ? `${head}, none measurable on ${not.map(name).join(', ')}` : head;
}
