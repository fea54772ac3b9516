// The move fuzzer's short form (issue #25): one row per framework, between them every topology
// and both modes, 3 upgrades each under random keep-alive traffic (bodies from 0 B to 1 MiB,
// chunked, Expect: 100-continue, trickled uploads, pipelining, split heads, new connections),
// every answer checked byte-exact. 0 failed and 0 wrong, or the row prints its seed and the
// shapes that went wrong. FUZZ_SEED=N replays a run; the long form: test/fuzz/README.md.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatRow, runRow } from './fuzz/move-fuzzer.mjs';

const seed = Number(process.env.FUZZ_SEED ?? 25);
const ROWS = [
  ['node-http', 'direct', 'self'],
  ['express', 'nginx', 'run2'],
  ['fastify', 'haproxy', 'self'],
  ['koa', 'direct', 'run2'],
];

for (const [framework, topology, mode] of ROWS) {
  test(`move fuzzer, ${framework} ${topology} ${mode === 'self' ? 'self-upgrade' : 'grace-restart run --workers 2'}: 3 upgrades, 0 failed, 0 wrong (seed ${seed})`, async (t) => {
    const row = await runRow({ framework, topology, mode, upgrades: 3, connections: 12, seed });
    if (row.skipped) return t.skip(row.skipped);
    t.diagnostic(formatRow(row));
    assert.equal(row.error, undefined, formatRow(row));
    assert.equal(row.upgrades, 3);
    assert.ok(row.ok > 100, `traffic flowed: ${row.ok} answers`);
    assert.deepEqual({ failed: row.failed, wrong: row.wrong }, { failed: 0, wrong: 0 }, formatRow(row));
  });
}
