// The bench's latency windows around upgrades (bench/lib/upgrade-run.mjs): "while upgrading" must
// be the same length for every method, whatever its old process takes to exit, and neither
// window may reach past the next trigger or into the second steady window.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { upgradeWindows } from '../bench/lib/upgrade-run.mjs';

// Two methods on one schedule (triggers 3 s apart), one whose old process exits after ~0.9 s,
// one after ~2.2 s.
const schedule = (goneMs) => [0, 3000, 6000].map((at, i) => ({ n: i + 1, at: 5000 + at, servingMs: 400, goneMs, triggerMs: 1 }));
const opts = { intervalMs: 3000, settledAt: 14_000, end: 17_000 };

test('"while upgrading" is one interval per upgrade, the same for a quick and a slow drain', () => {
  const quick = upgradeWindows(schedule(900), opts);
  const slow = upgradeWindows(schedule(2200), opts);
  assert.deepEqual(quick.periods, [
    [5000, 8000],
    [8000, 11_000],
    [11_000, 14_000],
  ]);
  assert.deepEqual(slow.periods, quick.periods);
});

test('"the upgrade alone" ends 250 ms after the old process is gone: its length is the method\'s', () => {
  assert.deepEqual(upgradeWindows(schedule(900), opts).windows, [
    [5000, 6150],
    [8000, 9150],
    [11_000, 12_150],
  ]);
  assert.deepEqual(upgradeWindows(schedule(2200), opts).windows, [
    [5000, 7450],
    [8000, 10_450],
    [11_000, 13_450],
  ]);
});

test('neither window reaches past the next trigger nor into the second steady window', () => {
  // An old process that outlives the schedule: both windows stop at the next trigger, the last at settledAt.
  const { windows, periods } = upgradeWindows(schedule(5000), { intervalMs: 3000, settledAt: 13_500, end: 16_500 });
  assert.deepEqual(windows, [
    [5000, 8000],
    [8000, 11_000],
    [11_000, 13_500],
  ]);
  assert.deepEqual(periods, [
    [5000, 8000],
    [8000, 11_000],
    [11_000, 13_500],
  ]);
  // The last upgrade settled later than one interval: its period runs until it settled.
  const late = upgradeWindows(schedule(3500), { intervalMs: 3000, settledAt: 16_000, end: 19_000 });
  assert.deepEqual(late.periods.at(-1), [11_000, 14_750]);
});
