// docs/guides/socket-io.md, run as written: its server block in a scratch app outside the
// repository (packed @grace-restart/core and socket.io installed), 20 socket.io-client clients (the guide's client options) emitting with acks
// through two SIGUSR2 upgrades: 0 failed emits, every client reconnected to the last version.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { io } from 'socket.io-client';
import { freePort, isAlive, startFixture, waitFor } from './helpers/process.mjs';
import { scratchApp } from './helpers/scratch-app.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const GUIDE = readFileSync(join(ROOT, 'docs/guides/socket-io.md'), 'utf8');
const SERVER = [...GUIDE.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]).find((b) => b.startsWith('// server.mjs'));
const readPid = (file) => {
  try {
    return Number(readFileSync(file, 'utf8').trim()) || undefined;
  } catch {
    return undefined;
  }
};

test('the Socket.IO guide, as written: 20 clients emitting with acks through 2 upgrades, 0 failed emits', async (t) => {
  assert.ok(SERVER, 'the guide has the server block');
  assert.match(GUIDE, /transports: \['websocket'\], retries: 3, ackTimeout: 5000/, 'the client options the test uses');
  const dir = await scratchApp(t, { deps: ['socket.io'] });
  writeFileSync(join(dir, 'server.mjs'), SERVER);
  const pidFile = join(dir, 'app.pid');
  const port = await freePort();
  const app = startFixture(join(dir, 'server.mjs'), { env: { PORT: String(port) }, cwd: dir });
  t.after(() => app.cleanup());
  await waitFor(() => readPid(pidFile) === app.pid, { what: 'app.pid' });

  const stats = { ok: 0, failed: 0, errors: {}, lastPid: new Map() };
  let running = true;
  const clients = Array.from({ length: 20 }, (_, i) => {
    const socket = io(`http://127.0.0.1:${port}`, { transports: ['websocket'], retries: 3, ackTimeout: 5000 });
    const loop = (async () => {
      for (let n = 0; running; n++) {
        try {
          const reply = await socket.emitWithAck('ping', n);
          if (reply.n !== n) throw new Error(`answer ${reply.n} to ${n}`);
          stats.ok += 1;
          stats.lastPid.set(i, reply.pid);
        } catch (error) {
          stats.failed += 1;
          stats.errors[error.message] = (stats.errors[error.message] ?? 0) + 1;
        }
      }
    })();
    return { socket, loop };
  });
  t.after(() => {
    for (const c of clients) c.socket.close();
  });
  await waitFor(() => stats.ok > 500, { what: 'emits to flow' });
  let pid = app.pid;
  for (let i = 0; i < 2; i++) {
    const old = pid;
    process.kill(old, 'SIGUSR2');
    pid = await waitFor(
      () => {
        const now = readPid(pidFile);
        return now !== old && now;
      },
      { what: `upgrade ${i + 1}`, timeout: 30_000 },
    );
    await waitFor(() => !isAlive(old), { what: `old process ${old} to exit (its clients reconnected)`, timeout: 30_000 });
    const ok = stats.ok;
    await waitFor(() => stats.ok > ok + 500, { what: 'emits to flow on the new version' });
  }
  await waitFor(() => [...stats.lastPid.values()].every((p) => p === pid), { what: 'every client to be answered by the last version' });
  running = false;
  await Promise.all(clients.map((c) => c.loop));
  assert.deepEqual({ failed: stats.failed, errors: stats.errors }, { failed: 0, errors: {} }, `${stats.ok} emits answered`);
  process.kill(pid, 'SIGTERM');
  await waitFor(() => !isAlive(pid), { what: 'the stop', timeout: 30_000 });
});
