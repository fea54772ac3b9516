#!/usr/bin/env node
// node bench/report.mjs bench/results/<run>.json [--png <dir>]
//
// Redraws a run's report and charts from its JSON, without re-running the benchmark: writes
// <run>.md, <run>-*.svg and latest.md next to the JSON. --png also renders every chart to PNG
// (needs rsvg-convert: apt-get install librsvg2-bin) so it can be checked by eye.
import { readFileSync } from 'node:fs';
import { basename, dirname, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { hasRsvg, writeResults } from './lib/write-results.mjs';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { png: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
});
if (values.help || positionals.length !== 1) {
  console.log('usage: node bench/report.mjs bench/results/<run>.json [--png <dir>]');
  process.exit(values.help ? 0 : 1);
}
if (values.png && !hasRsvg()) {
  console.error('--png needs rsvg-convert (apt-get install librsvg2-bin)');
  process.exit(1);
}
const file = positionals[0];
const run = JSON.parse(readFileSync(file, 'utf8'));
const written = await writeResults(run, basename(file, '.json'), dirname(file), { writeJson: false, pngDir: values.png });
for (const path of written) console.log(`wrote ${relative(process.cwd(), path)}`);
if (values.png) console.log(`PNGs in ${values.png}`);
