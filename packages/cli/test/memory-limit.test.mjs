// --max-memory's parts in process: the size parser and the watch's sampling rule, against a fake
// RSS reader (the supervisor that acts on it is tested with real workers in bad-release.test.mjs).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitFor } from '../../../test/helpers/process.mjs';
import { MEMORY_SAMPLES_OVER, MemoryWatch, parseSize, rssBytes } from '../dist/memory-limit.js';

test('sizes read as an operator writes them; anything else is refused', () => {
  const M = 1024 ** 2;
  assert.equal(parseSize('512M'), 512 * M);
  assert.equal(parseSize('512MB'), 512 * M);
  assert.equal(parseSize('1G'), 1024 * M);
  assert.equal(parseSize('1.5g'), 1536 * M);
  assert.equal(parseSize('300MiB'), 300 * M);
  assert.equal(parseSize('1048576'), M);
  for (const bad of ['', 'lots', '-1M', '0', '1T', 'M', '1 M B']) assert.equal(parseSize(bad), undefined, bad);
});

test("this process's RSS is read from /proc, a gone pid's is undefined", () => {
  assert.ok(rssBytes(process.pid) > 10 * 1024 ** 2);
  assert.equal(rssBytes(2 ** 22 + 12345), undefined);
});

test(`a worker is reported after ${MEMORY_SAMPLES_OVER} samples in a row above the limit, not after a burst`, async (t) => {
  const rss = new Map([
    [1, [200, 200, 50, 200, 200, 200, 200]],
    [2, [50, 50, 50, 50, 50, 50, 50]],
  ]);
  const samples = new Map();
  const read = (pid) => {
    const n = samples.get(pid) ?? 0;
    samples.set(pid, n + 1);
    return rss.get(pid)[Math.min(n, 6)];
  };
  const over = [];
  const watch = new MemoryWatch(
    100,
    () => [{ pid: 1 }, { pid: 2 }],
    (w, bytes) => over.push([w.pid, bytes, samples.get(1)]),
    read,
  );
  t.after(() => watch.stop());
  await waitFor(() => over.length > 0, { timeout: 15_000, what: 'the report' });
  // Samples 1-2 over, 3 under (a burst given back), 4-6 over: reported at the 6th.
  assert.deepEqual(over, [[1, 200, 6]]);
});
