// The markdown of a latency run (bench/latency.mjs): one line per app, method, boot nice and load
// level, each latency figure beside its noise (the spread of ten control windows) and its floor
// (a cold start of the same app beside it), and issue #29's two targets judged from them.

/** Issue #29's targets: with boot priority against the controls, without it against the floor. */
export const TARGETS = { p99VsControl: 1.3, p999VsControl: 2, p99VsCold: 1.15 };

const ratio = (a, b) => (a === undefined || b === undefined || b === 0 ? undefined : a / b);
const x2 = (r) => (r === undefined ? '–' : `${r.toFixed(2)}×`);
const ms = (v) => (v === undefined ? '–' : v.toFixed(2));
const ints = (xs) => xs.map((v) => (v === undefined ? '–' : Math.round(v))).join(', ');

/** { vsControl, vsCold }: each { pass, text } for one level. */
export function judgeLevel(l) {
  const p99 = ratio(l.upgrade.all.p99, l.control.medianP99);
  const p999 = ratio(l.upgrade.all.p999, l.control.medianP999);
  const cold = ratio(l.upgrade.all.p99, l.cold.all.p99);
  const vsControl = p99 !== undefined && p999 !== undefined && p99 <= TARGETS.p99VsControl && p999 <= TARGETS.p999VsControl;
  const vsCold = cold !== undefined && cold <= TARGETS.p99VsCold;
  return { p99, p999, cold, vsControl, vsCold, failed: l.failed > 0 };
}

function levelRow(row, l) {
  const j = judgeLevel(l);
  const served = l.offered === 'closed' ? `${l.served} (closed)` : `${l.offered} → ${l.served}`;
  const failed =
    l.failed === 0
      ? '0'
      : `**${l.failed}** (${Object.entries(l.failures)
          .map(([k, n]) => `${k} ${n}`)
          .join(', ')})`;
  const verdict = [
    j.failed ? 'FAIL (failed requests)' : undefined,
    `${j.vsControl ? 'pass' : 'FAIL'} vs control`,
    `${j.vsCold ? 'pass' : 'FAIL'} vs floor`,
  ].filter(Boolean);
  return `| ${row.framework} | ${row.method} | ${row.user} | ${row.bootNice} | ${row.lever} | ${l.level} | ${served} | ${failed} | ${ms(l.control.medianP99)} (${l.control.spreadP99.map(ms).join('–')}) | ${ms(l.upgrade.all.p99)} (${x2(j.p99)}) | ${ms(l.control.medianP999)} → ${ms(l.upgrade.all.p999)} (${x2(j.p999)}) | ${ms(l.cold.all.p99)} (${x2(j.cold)}) | ${ints(l.upgrades.map((u) => u.servingMs))} | ${ints(l.coldStarts.map((c) => c.coldMs))} | ${ms(l.clientLagP99.control)} / ${ms(l.clientLagP99.upgrade)} | ${verdict.join(', ')} |`;
}

function sentFromRow(row, l) {
  if (!l.sentFrom) return undefined;
  return `| ${row.framework} | ${row.method} | ${row.bootNice} | ${l.level} | ${ms(l.sentFrom.control.p99)} → ${ms(l.sentFrom.upgrade.p99)} | ${ms(l.control.all.p99)} → ${ms(l.upgrade.all.p99)} |`;
}

export function renderLatency(run) {
  const rows = run.rows.filter((r) => !r.skipped);
  const lines = [
    `# Upgrade latency against noise and floor, ${run.date}`,
    '',
    `Machine: ${run.machine.cpus} × ${run.machine.cpuModel}, Node ${run.machine.node}, uid ${run.machine.uid}; load average ${run.loadAverageBefore} before the run; CPU pinning: ${run.pinning ?? 'none'}; ${run.connections} keep-alive connections; probation ${run.probationMs} ms; ${run.durationS} s in all.`,
    '',
    "Per app: X is its closed-loop throughput; 0.5X and 0.75X are open-loop (latency from the intended send), the saturated row closed-loop. Each level runs 3 upgrades (trigger until the old processes are gone + 2 s), 10 control windows of the first upgrade window's length (their p99s' median and spread: the noise) and 3 cold starts of the same app on another port beside it (the floor), alternating. Targets (issue #29): with boot priority, upgrade p99 ≤ " +
      `${TARGETS.p99VsControl}× and p99.9 ≤ ${TARGETS.p999VsControl}× the controls' medians; without it, upgrade p99 ≤ ${TARGETS.p99VsCold}× the cold-start windows' p99. Times in ms.`,
    '',
    '| app | method | user | boot nice | lever | load | req/s offered → served | failed | control p99 median (spread) | upgrade p99 (× control) | p99.9 control → upgrade (×) | cold-start-beside p99 (upgrade ÷ it) | trigger → new version serving | cold start | client lag p99 control / upgrade | verdict |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows.flatMap((r) => r.levels.map((l) => levelRow(r, l))),
    '',
    "What coordinated omission hides: the open-loop levels' p99 timed from the actual send, beside the same windows timed from the intended send.",
    '',
    '| app | method | boot nice | load | p99 from the send: control → upgrade | p99 from the intended send: control → upgrade |',
    '| --- | --- | --- | --- | --- | --- |',
    ...rows.flatMap((r) => r.levels.map((l) => sentFromRow(r, l)).filter(Boolean)),
    '',
  ];
  for (const r of run.rows.filter((x) => x.skipped)) lines.push(`- ${r.framework} / ${r.method}: ${r.skipped}`);
  return `${lines.join('\n')}\n`;
}
