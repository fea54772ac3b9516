// The bench's load generator records its own event-loop delay per slot (bench/lib/load.mjs): a
// stall of the clients' process must show there, and not in the slots around it.
import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';
import { histogramBetween, SLOT_MS, startLoad } from '../bench/lib/load.mjs';

test("a 250 ms stall of the clients' event loop is in their delay histogram, at its time", async () => {
  const server = http.createServer((_req, res) => res.end('{"pid":1}'));
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const load = startLoad({ port: server.address().port, connections: 2 });
  try {
    // Let the probe run a while unstalled, then block this process's event loop.
    await new Promise((r) => setTimeout(r, 400));
    const stalledAt = load.now();
    const until = performance.now() + 250;
    while (performance.now() < until);
    await new Promise((r) => setTimeout(r, 300));
    const stats = await load.stop();
    // The probe that was due during the stall fires at its end, late by most of it.
    const stalled = histogramBetween(stats.slots, stalledAt, stalledAt + 250 + SLOT_MS, 'lag');
    assert.ok(stalled.percentileMs(100) >= 200, `max delay around the stall ${stalled.percentileMs(100)} ms`);
    const before = histogramBetween(stats.slots, 0, stalledAt - SLOT_MS, 'lag');
    assert.ok(before.total > 10, `probes before the stall: ${before.total}`);
    assert.ok(before.percentileMs(100) < 200, `max delay before the stall ${before.percentileMs(100)} ms`);
  } finally {
    server.close();
    server.closeAllConnections();
  }
});
