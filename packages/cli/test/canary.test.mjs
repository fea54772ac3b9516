// The canary's verdict (canary.ts) in process, against counts the test sets: the rule, not the
// workers (bad-release.test.mjs runs real ones).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CANARY_MIN_REQUESTS, errorRate } from '@grace-restart/core/internal';
import { judgeCanaryWindow as judgeCanary } from '../dist/canary.js';

const counts = (requests, errors5xx = 0, unanswered = 0) => ({ requests, errors5xx, unanswered });

test('the error rate counts 5xx answers and requests left unanswered', () => {
  assert.deepEqual(errorRate(counts(100, 1), counts(200, 11)), { requests: 100, errors: 10, percent: 10 });
  assert.deepEqual(errorRate(counts(0), counts(90, 0, 10)), { requests: 100, errors: 10, percent: 10 });
  assert.deepEqual(errorRate(counts(5), counts(5)), { requests: 0, errors: 0, percent: 0 });
});

/** Runs a verdict whose counts move from `from` to `to` during a (short) window. */
async function verdict({ canary, baseline }, maxErrorPoints = 1) {
  let reading = 0;
  const subject = {
    canary: () => (canary[reading] === null ? undefined : canary[reading]),
    baseline: () => baseline[reading],
  };
  const pending = judgeCanary(subject, { windowMs: 10, maxErrorPoints }, new AbortController().signal);
  reading = 1;
  return pending;
}

test('a canary worse than the old generation by more than the limit fails, with the numbers', async () => {
  const v = await verdict({ canary: [counts(0), counts(100, 10)], baseline: [counts(1000), counts(1100)] });
  assert.equal(v.ok, false);
  assert.match(
    v.note,
    /canary failed: 10\.0% \(10 of 100\) errors against 0\.0% \(0 of 100\) for the old generation \(limit: 1 points worse\)/,
  );
});

test('a canary as good as the old generation, or within the limit, passes', async () => {
  assert.equal((await verdict({ canary: [counts(0), counts(100, 1)], baseline: [counts(0), counts(100, 1)] })).ok, true);
  assert.equal((await verdict({ canary: [counts(0), counts(100, 3)], baseline: [counts(0), counts(100, 1)] }, 5)).ok, true);
});

test('one worker: the old generation served nothing in the window, so its whole life is the baseline', async () => {
  const v = await verdict({ canary: [counts(0), counts(100, 50)], baseline: [counts(1000, 0), counts(1000, 0)] });
  assert.equal(v.ok, false);
  assert.equal(v.baseline.requests, 1000);
});

test('too few answers to judge: promoted, and said; a canary that exited: failed', async () => {
  const few = await verdict({ canary: [counts(0), counts(CANARY_MIN_REQUESTS - 1, 5)], baseline: [counts(0), counts(100)] });
  assert.equal(few.ok, true);
  assert.match(few.note, /too few to judge/);
  const gone = await verdict({ canary: [counts(0), null], baseline: [counts(0), counts(100)] });
  assert.equal(gone.ok, false);
  assert.match(gone.note, /exited during its window/);
});
