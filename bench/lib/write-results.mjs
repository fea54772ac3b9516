// Writes a run's report: <base>.md, one SVG per chart, latest.md (and <base>.json for a fresh
// run). Shared by bench/run.mjs (after a run) and bench/report.mjs (from a committed JSON), so a
// report can be redrawn without re-running the benchmark.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderReport } from './report.mjs';
import { renderSvg } from './vega-render.mjs';

/**
 * Reports the summary links to: the newest fault-suite table, the lifecycle driver's, and — when
 * this run did not go through the proxies — the newest run that did.
 */
function longFormLinks(resultsDir, run) {
  const files = readdirSync(resultsDir).sort();
  const faults = files.filter((f) => /^faults-.*-long\.md$/.test(f)).at(-1);
  const proxies = run.proxies
    ? undefined
    : files.filter((f) => /^\d{4}-\d{2}-\d{2}.*\.json$/.test(f) && hasProxies(join(resultsDir, f))).at(-1);
  return [
    ...(faults ? [{ text: 'fault suite, long form', href: faults }] : []),
    // Written by the lifecycle driver; linked even before its first run, so the place is known.
    { text: 'lifecycle driver, long form', href: 'lifecycle-long.md' },
    ...(proxies
      ? [{ text: 'behind nginx and HAProxy', href: `${proxies.replace(/\.json$/, '.md')}#behind-a-proxy-direct-nginx-haproxy` }]
      : []),
  ];
}

function hasProxies(file) {
  try {
    return Array.isArray(JSON.parse(readFileSync(file, 'utf8')).proxies);
  } catch {
    return false;
  }
}

/**
 * Options: writeJson (false when re-rendering a committed JSON, which stays byte for byte),
 * pngDir (also render each SVG to PNG there with rsvg-convert, to check the charts by eye).
 * Returns the paths written.
 */
export async function writeResults(run, base, resultsDir, { writeJson = true, pngDir } = {}) {
  mkdirSync(resultsDir, { recursive: true });
  const { markdown, charts } = renderReport(run, { svgPrefix: `${base}-`, links: longFormLinks(resultsDir, run) });
  const written = [];
  for (const [name, spec] of Object.entries(charts)) {
    const svgPath = join(resultsDir, `${base}-${name}.svg`);
    writeFileSync(svgPath, await renderSvg(spec));
    written.push(svgPath);
    if (pngDir) {
      mkdirSync(pngDir, { recursive: true });
      execFileSync('rsvg-convert', ['--background-color', 'white', svgPath, '-o', join(pngDir, `${base}-${name}.png`)]);
    }
  }
  if (writeJson) writeFileSync(join(resultsDir, `${base}.json`), `${JSON.stringify(run, null, 1)}\n`);
  writeFileSync(join(resultsDir, `${base}.md`), markdown);
  written.push(join(resultsDir, `${base}.md`));
  // latest.md is the newest full run; a run of some scenarios only (--only) does not replace it.
  if (!run.only) {
    copyFileSync(join(resultsDir, `${base}.md`), join(resultsDir, 'latest.md'));
    written.push(join(resultsDir, 'latest.md'));
  }
  return written;
}

export const hasRsvg = () => {
  try {
    execFileSync('rsvg-convert', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};
