// systemd's notify protocol from a self-upgrading app: what systemd hears on NOTIFY_SOCKET
// (a real datagram socket, test/helpers/notify-socket.py) through every step of a life, sent
// by systemd's own systemd-notify, and which process the kernel says each message came from.
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { carrying, startNotifySocket } from '../../../test/helpers/notify-socket.mjs';
import { isAlive, waitFor } from '../../../test/helpers/process.mjs';
import { startServer, upgrade } from './helpers.mjs';

// As root, systemd-notify sends with its parent's credentials: the message is this process's,
// which NotifyAccess=main accepts. Otherwise the kernel names systemd-notify itself.
const senderIs = (message, pid) => process.getuid?.() !== 0 || message.pid === pid;

test('READY=1 and MAINPID at start; RELOADING=1, then MAINPID=<successor> READY=1 from the old process at the handover; STOPPING=1; watchdog pings from whoever serves', async (t) => {
  const notify = await startNotifySocket(t);
  const { fixture } = await startServer(t, { NOTIFY_SOCKET: notify.path, WATCHDOG_USEC: '300000', IDLE_GRACE: '100' });
  const first = fixture.pid;
  const ready = await notify.waitForMessage(carrying('READY=1', `MAINPID=${first}`, 'STATUS=serving, generation 1'));
  assert.ok(senderIs(ready, first), `sent as ${first}: ${JSON.stringify(ready)}`);
  await notify.waitForMessage((m) => carrying('WATCHDOG=1')(m) && senderIs(m, first));

  const before = notify.messages.length;
  const second = await upgrade(fixture, first);
  const reloading = await notify.waitForMessage(
    carrying('RELOADING=1', /^MONOTONIC_USEC=[0-9]+$/, 'STATUS=upgrading: starting generation 2'),
    { after: before },
  );
  assert.ok(senderIs(reloading, first));
  const handover = await notify.waitForMessage(carrying(`MAINPID=${second}`, 'READY=1', 'STATUS=serving, generation 2'), { after: before });
  assert.ok(senderIs(handover, first), 'the old process names its successor while it is still the main one');
  // The successor inherited NOTIFY_SOCKET and WATCHDOG_USEC (not WATCHDOG_PID, which named its parent).
  const afterHandover = notify.messages.length;
  await notify.waitForMessage((m) => carrying('WATCHDOG=1')(m) && senderIs(m, second) && m.pid !== first, { after: afterHandover });
  if (process.getuid?.() === 0) {
    // Gone, the old process sends nothing more; nothing ever claimed MAINPID for it again.
    assert.equal(
      notify.messages.slice(afterHandover).some((m) => m.pid === first),
      false,
    );
    assert.equal(notify.messages.filter((m) => m.fields.includes(`MAINPID=${first}`)).length, 1);
  }

  const beforeStop = notify.messages.length;
  process.kill(second, 'SIGTERM');
  const stopping = await notify.waitForMessage(carrying('STOPPING=1'), { after: beforeStop });
  assert.ok(senderIs(stopping, second));
  await waitFor(() => !isAlive(second), { what: 'the successor to stop' });
});

test('a successor that crashes at boot: RELOADING=1, then READY=1 with the failure in STATUS, from the process that still serves', async (t) => {
  const notify = await startNotifySocket(t);
  const behaviour = join(mkdtempSync(join(tmpdir(), 'grace-notify-')), 'behaviour');
  writeFileSync(behaviour, 'ok');
  const { fixture } = await startServer(t, { NOTIFY_SOCKET: notify.path, BEHAVIOUR_FILE: behaviour });
  await notify.waitForMessage(carrying('READY=1'));
  writeFileSync(behaviour, 'crash-at-boot');
  const before = notify.messages.length;
  process.kill(fixture.pid, 'SIGUSR2');
  await fixture.waitForEvent({ event: 'upgrade-failed' });
  await notify.waitForMessage(carrying('RELOADING=1'), { after: before });
  const back = await notify.waitForMessage(carrying('READY=1', /^STATUS=upgrade failed \(exited\): serving generation 1$/), {
    after: before,
  });
  assert.ok(senderIs(back, fixture.pid));
  assert.equal(
    notify.messages.some((m) => m.fields.some((f) => f.startsWith('MAINPID=') && f !== `MAINPID=${fixture.pid}`)),
    false,
    'MAINPID never left the serving process',
  );
});

// The default logger writes JSON lines: the quotes around a value arrive escaped.
test('NOTIFY_SOCKET that is not an absolute path, WATCHDOG_USEC that is not a number: named in an error line, and the app serves', async (t) => {
  const { fixture } = await startServer(t, { NOTIFY_SOCKET: 'relative/notify' });
  assert.match(fixture.stderr, /ignoring NOTIFY_SOCKET=\\"relative\/notify\\": expected an absolute path/);
  const notify = await startNotifySocket(t);
  const { fixture: other } = await startServer(t, { NOTIFY_SOCKET: notify.path, WATCHDOG_USEC: '10s' });
  assert.match(other.stderr, /ignoring WATCHDOG_USEC=\\"10s\\"/);
  await notify.waitForMessage(carrying('READY=1'));
});

test('NOTIFY_SOCKET set but no systemd-notify on PATH: one clear error, and the app serves and upgrades', async (t) => {
  const notify = await startNotifySocket(t);
  const { fixture } = await startServer(t, { NOTIFY_SOCKET: notify.path, PATH: join(tmpdir(), 'no-such-dir') });
  await waitFor(() => /systemd-notify is not on PATH/.test(fixture.stderr), {
    what: `the missing systemd-notify to be logged: ${fixture.stderr}`,
  });
  await upgrade(fixture, fixture.pid);
  assert.equal(notify.messages.length, 0);
});
