// An operator who upgrades and then stops the service (`kill -USR2 $(cat app.pid)`, then
// `kill -TERM $(cat app.pid)` as the examples' READMEs say) expects it to stop. Found by hand
// while checking those READMEs: when the SIGTERM reaches the successor within the old process's
// ~1 s after its drain, the old process reads the successor's clean exit as a crash ("exited
// (exit code 0) after it was ready: this process serves again") and serves on, stray.
// Fixed: a successor that exits 0 after its takeover is a stop (lifecycle event successor-stopped).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startApp } from './helpers/app-process.mjs';
import { request } from './helpers/load.mjs';
import { isAlive, waitFor } from './helpers/process.mjs';

const SCRIPT = fileURLToPath(new URL('../examples/express/dist/server.js', import.meta.url));

test('SIGTERM to the successor right after an upgrade stops the service: no process serves on', async (t) => {
  const { app, port, pid } = await startApp(t, SCRIPT);
  const after = app.events.length;
  process.kill(pid, 'SIGUSR2');
  const { successorPid } = await app.waitForEvent({ event: 'upgrade-ready', pid }, { after });
  await app.waitForEvent({ event: 'drain-end', pid }, { after });
  process.kill(successorPid, 'SIGTERM');
  await waitFor(() => !isAlive(successorPid), { what: 'the successor to stop' });
  await waitFor(() => !isAlive(pid), { timeout: 5_000, what: `the old process ${pid} to exit rather than serve again` });
  await assert.rejects(request({ port }), { code: 'ECONNREFUSED' });
});
