// The latency bench's open-loop load (bench/lib/load.mjs with `rate`, issue #29): it keeps its
// schedule, and a server that stalls is charged for every request the stall made wait, timed from
// when the schedule meant to send it (coordinated omission corrected), where the time from the
// actual send shows one slow request per connection. And the bench's verdict of a level.
import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';
import { histogramBetween, startLoad } from '../bench/lib/load.mjs';
import { judgeLevel } from '../bench/lib/report-latency.mjs';

test('open loop: the rate is kept, and a 300 ms stall of the server shows in the latency from the intended send', async () => {
  let stalledUntil = 0;
  const server = http.createServer((_req, res) => {
    const answer = () => res.end('{"pid":1}');
    const wait = stalledUntil - performance.now();
    if (wait > 0) setTimeout(answer, wait);
    else answer();
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const load = startLoad({ port: server.address().port, connections: 5, rate: 500 });
  try {
    await new Promise((r) => setTimeout(r, 700));
    stalledUntil = performance.now() + 300;
    await new Promise((r) => setTimeout(r, 1300));
  } finally {
    const stats = await load.stop();
    server.close();
    server.closeAllConnections();
    const rate = (stats.ok * 1000) / stats.durationMs;
    assert.ok(rate > 400 && rate < 520, `answers per second ${rate.toFixed(0)} for a rate of 500`);
    const intended = histogramBetween(stats.slots, 0, stats.durationMs);
    const sent = histogramBetween(stats.slots, 0, stats.durationMs, 'svc');
    // 300 ms at 500/s: ~150 of ~1 000 requests were due during the stall, ~100 of them 100 ms
    // or more before it ended: from their intended send, over 5 % waited ≥ 100 ms and the first
    // nearly 300. From the actual send only the five in flight when it began (one per
    // connection) waited, so its p90 stays small.
    assert.ok(intended.percentileMs(95) >= 100, `p95 from the intended send ${intended.percentileMs(95)} ms`);
    assert.ok(intended.percentileMs(100) >= 250, `max from the intended send ${intended.percentileMs(100)} ms`);
    assert.ok(sent.percentileMs(90) < 50, `p90 from the actual send ${sent.percentileMs(90)} ms`);
  }
});

const level = (p99s, upgrade, cold) => ({
  failed: 0,
  control: { medianP99: p99s.p99, medianP999: p99s.p999 },
  upgrade: { all: upgrade },
  cold: { all: cold },
});

test("a level's verdict: ≤ 1.3× the controls' p99 and ≤ 2× their p99.9, and ≤ 1.15× the cold-start floor", () => {
  const pass = judgeLevel(level({ p99: 10, p999: 20 }, { p99: 13, p999: 40 }, { p99: 12 }));
  assert.equal(pass.vsControl, true);
  assert.equal(pass.vsCold, true);
  assert.equal(judgeLevel(level({ p99: 10, p999: 20 }, { p99: 13.1, p999: 20 }, { p99: 20 })).vsControl, false);
  assert.equal(judgeLevel(level({ p99: 10, p999: 20 }, { p99: 10, p999: 40.1 }, { p99: 20 })).vsControl, false);
  assert.equal(judgeLevel(level({ p99: 10, p999: 20 }, { p99: 13, p999: 20 }, { p99: 11.3 })).vsCold, false);
});
