// The randomized lifecycle driver's short form (test/faults/lifecycle-driver.mjs): a few
// seeds per mode, 12 random operations each, on real processes under keep-alive load.
// The long form (`node test/faults/lifecycle-driver.mjs --steps 200 --write`) writes
// bench/results/lifecycle-long.md. A seed that ever failed joins SHORT_SEEDS.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { drive, SHORT_SEEDS } from './faults/lifecycle-driver.mjs';

for (const [mode, seeds] of Object.entries(SHORT_SEEDS)) {
  for (const seed of seeds) {
    test(`lifecycle driver: ${mode} mode, seed ${seed}, 12 random operations`, { timeout: 240_000 }, async (t) => {
      const row = await drive({ seed, steps: 12, mode });
      t.diagnostic(
        `${row.requests} requests, ${row.failed} failed (${row.excused} excused: a SIGKILLed or crashed process held them); ops ${JSON.stringify(row.ops)}`,
      );
      assert.deepEqual(row.problems, [], `replay: node test/faults/lifecycle-driver.mjs --mode ${mode} --seeds ${seed} --steps 12`);
      assert.equal(row.failed, row.excused, 'every failed request is excused by a kill or a crash');
    });
  }
}
