// The bench's upstream connection counter (bench/lib/upstream-conns.mjs): it must count every
// connection opened to a port, a short-lived one included, on both ends, and tell the ones still
// open at the end from the ones closed.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { waitFor } from './helpers/process.mjs';
import { parseProcNetTcp, parseSsLine, summarizeConnections, watchConnections } from '../bench/lib/upstream-conns.mjs';

const connect = (port) =>
  new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => resolve(socket));
    socket.on('error', reject);
  });

test('parses /proc/net/tcp and ss -E lines', () => {
  const proc =
    '  sl  local_address rem_address   st tx_queue rx_queue\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000\n   1: 0100007F:A5C4 0100007F:1F90 01 00000000:00000000\n';
  assert.deepEqual(parseProcNetTcp(proc), [
    { localPort: 8080, peerPort: 0, state: '0A' },
    { localPort: 42436, peerPort: 8080, state: '01' },
  ]);
  assert.deepEqual(parseSsLine('UNCONN 0      0      127.0.0.1:42436 127.0.0.1:9911'), { localPort: 42436, peerPort: 9911 });
  assert.equal(parseSsLine('UNCONN 0 0 0.0.0.0:9911 0.0.0.0:*'), undefined);
});

test('counts long- and short-lived connections to a port, on both ends', {
  skip: process.platform !== 'linux' && 'reads /proc/net/tcp',
}, async (t) => {
  const server = net.createServer((socket) => socket.on('error', () => {}));
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  const t0 = performance.now();
  const now = () => performance.now() - t0;
  const watch = watchConnections({ port, now, intervalMs: 100 });
  // stop() is idempotent enough for a second call: a failed assertion must not leave ss running.
  t.after(() => {
    watch.stop().catch(() => undefined);
    server.close();
  });
  await watch.ready;
  // ss -E prints nothing once it has subscribed: a probe's close, once reported, proves it has.
  let probes = 0;
  if (watch.destroyEvents) {
    await waitFor(
      async () => {
        const probe = await connect(port);
        const localPort = probe.localPort;
        probes += 1;
        probe.destroy();
        return waitFor(() => watch.seenClosed(localPort) || !watch.destroyEvents, { timeout: 2_000, what: 'the probe close' }).then(
          () => true,
          () => false,
        );
      },
      { timeout: 20_000, what: 'ss -E to report a close' },
    );
  }
  const kept = [await connect(port), await connect(port)];
  const pool = await watch.snapshot(); // reads the table now: both are established
  assert.equal(pool.size, 2);
  const trigger = now();
  // Opened and closed between two reads of the table: only the destroy events see these.
  const short = [];
  for (let i = 0; i < 5; i++) {
    const socket = await connect(port);
    short.push(socket.localPort);
    socket.destroy();
  }
  const keptPort = kept[0].localPort; // read before destroy(), which forgets it
  kept[0].destroy();
  // Seen by the next table read at the latest (gone from it), or by ss -E at once.
  await waitFor(() => watch.seenClosed(keptPort) && (!watch.destroyEvents || short.every((p) => watch.seenClosed(p))), {
    timeout: 20_000,
    what: 'the closes to be seen',
  });
  const end = now();
  const watched = await watch.stop();
  const s = summarizeConnections({ watch: watched, triggers: [trigger], warmupMs: 0, end, pool });
  for (const socket of kept) socket.destroy();
  server.close();
  assert.equal(s.beforeFirst, 2 + probes);
  assert.equal(s.poolSize, 2);
  assert.equal(s.poolSurvived, 1);
  if (watched.source.startsWith('ss -E')) {
    assert.deepEqual(s.perUpgrade, [{ opened: 5, accepted: 5 }]);
  } else {
    assert.ok(s.perUpgrade[0].opened <= 5);
  }
});
