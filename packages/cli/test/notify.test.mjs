// The supervisor speaks systemd's notify protocol for the whole service: READY=1 once every
// worker is ready, RELOADING=1 … READY=1 around each rolling upgrade, STOPPING=1, watchdog
// pings; its workers never see NOTIFY_SOCKET. Against a real datagram socket
// (test/helpers/notify-socket.py), through systemd's own systemd-notify.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { carrying, startNotifySocket } from '../../../test/helpers/notify-socket.mjs';
import { runCli as cli, startFixture, waitFor } from '../../../test/helpers/process.mjs';

const BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const APP = fileURLToPath(new URL('../../core/test/fixtures/server.mjs', import.meta.url));
const senderIs = (message, pid) => process.getuid?.() !== 0 || message.pid === pid;

test('grace-restart run under NOTIFY_SOCKET: READY=1 from the supervisor once both workers serve, RELOADING=1 … READY=1 per upgrade (also a failed one), STOPPING=1, watchdog; no worker ever notifies', async (t) => {
  const notify = await startNotifySocket(t);
  const dir = mkdtempSync(join(tmpdir(), 'grace-cli-notify-'));
  const pidFile = join(dir, 'sup.pid');
  const behaviour = join(dir, 'behaviour');
  writeFileSync(behaviour, 'ok');
  const sup = startFixture(BIN, {
    args: ['run', '--workers', '2', '--pid-file', pidFile, '--', 'node', APP],
    env: { PORT: '0', BEHAVIOUR_FILE: behaviour, NOTIFY_SOCKET: notify.path, WATCHDOG_USEC: '400000', WATCHDOG_PID: '' },
  });
  t.after(() => sup.cleanup());
  const exited = new Promise((resolve) => sup.child.once('exit', (code, signal) => resolve({ code, signal })));
  await waitFor(() => existsSync(pidFile), { what: `the supervisor to serve: ${sup.stderr}` });
  const ready = await notify.waitForMessage(carrying('READY=1', `MAINPID=${sup.pid}`, 'STATUS=serving, generation 1, 2 workers'));
  assert.ok(senderIs(ready, sup.pid), JSON.stringify(ready));
  await notify.waitForMessage((m) => carrying('WATCHDOG=1')(m) && senderIs(m, sup.pid));

  let before = notify.messages.length;
  const upgraded = await cli(['upgrade', '--pid-file', pidFile]);
  assert.equal(upgraded.code, 0, upgraded.stdout + upgraded.stderr);
  await notify.waitForMessage(carrying('RELOADING=1', /^MONOTONIC_USEC=[0-9]+$/, 'STATUS=upgrading to generation 2'), { after: before });
  await notify.waitForMessage(carrying('READY=1', 'STATUS=serving, generation 2, 2 workers'), { after: before });

  // A release whose workers cannot start: the old ones serve on, and systemd hears why.
  before = notify.messages.length;
  writeFileSync(behaviour, 'crash-at-boot');
  const failed = await cli(['upgrade', '--pid-file', pidFile]);
  assert.equal(failed.code, 1, failed.stdout + failed.stderr);
  await notify.waitForMessage(carrying('RELOADING=1', 'STATUS=upgrading to generation 3'), { after: before });
  await notify.waitForMessage(
    carrying('READY=1', /^STATUS=upgrade failed, serving, generation 2, 2 workers: worker [0-9]+ \(slot 0\) exited/),
    { after: before },
  );

  before = notify.messages.length;
  process.kill(sup.pid, 'SIGTERM');
  await notify.waitForMessage(carrying('STOPPING=1'), { after: before });
  assert.deepEqual(await exited, { code: 0, signal: null });
  if (process.getuid?.() === 0) {
    const senders = new Set(notify.messages.map((m) => m.pid));
    assert.deepEqual(
      [...senders],
      [sup.pid],
      `only the supervisor spoke to systemd: ${JSON.stringify(notify.messages.filter((m) => m.pid !== sup.pid))}`,
    );
  }
});
