// `grace-restart status` and `upgrade` without --pid or --pid-file (issue #26): the one
// grace-restart process of this user that answers on a control socket is the target; with
// several, they are listed and nothing is touched. Each test has its own control directory.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isAlive, runCli, startFixture, waitFor } from '../../../test/helpers/process.mjs';

const APP = fileURLToPath(new URL('../../core/test/fixtures/server.mjs', import.meta.url));

async function startApp(t, controlDir) {
  const app = startFixture(APP, { env: { PORT: '0', CONTROL_DIR: controlDir } });
  t.after(() => app.cleanup());
  await app.waitForEvent({ event: 'ready', pid: app.pid });
  await waitFor(
    async () =>
      (await runCli(['status', '--pid', String(app.pid), '--control-dir', controlDir, '--json'])).stdout.includes('"mode":"self"'),
    { what: 'its control socket' },
  );
  return app;
}

test('one self-upgrading app in the control directory: status and upgrade find it without a pid', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'grace-discover-'));
  const app = await startApp(t, dir);
  const status = await runCli(['status', '--control-dir', dir, '--json']);
  assert.equal(status.code, 0, status.stderr);
  assert.equal(JSON.parse(status.stdout).pid, app.pid);
  const upgrade = await runCli(['upgrade', '--control-dir', dir]);
  assert.equal(upgrade.code, 0, upgrade.stdout + upgrade.stderr);
  await waitFor(() => !isAlive(app.pid), { what: 'the old process to exit' });
  // The successor answers now, alone.
  const after = await runCli(['status', '--control-dir', dir, '--json']);
  assert.equal(after.code, 0, after.stderr);
  assert.notEqual(JSON.parse(after.stdout).pid, app.pid);
});

test('two apps in the control directory: both listed with what they are, exit 2, neither upgraded', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'grace-discover-'));
  const [a, b] = [await startApp(t, dir), await startApp(t, dir)];
  const result = await runCli(['upgrade', '--control-dir', dir]);
  assert.equal(result.code, 2);
  assert.match(
    result.stderr,
    new RegExp(
      `2 grace-restart processes of this user answer in .*: .*\\b(${a.pid}|${b.pid}) \\(self-upgrading, ready, generation 1\\).*; give --pid N`,
    ),
  );
  assert.ok(isAlive(a.pid) && isAlive(b.pid));
  assert.ok(
    !a.events.some((e) => e.event === 'upgrade-start') && !b.events.some((e) => e.event === 'upgrade-start'),
    'nothing was upgraded',
  );
});

test('a SIGKILLed app leaves its control socket; the next app to start there removes it, and only a dead one', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'grace-discover-'));
  const killed = await startApp(t, dir);
  killed.child.kill('SIGKILL');
  await killed.exited;
  const left = join(dir, `${killed.pid}.sock`);
  assert.ok(existsSync(left), 'SIGKILL left the socket file');
  // A socket whose pid this process cannot see but that answers: another pid namespace's, kept.
  const foreign = join(dir, `${2 ** 22 + 1}.sock`);
  const listener = net.createServer((socket) => socket.end());
  await new Promise((resolve) => listener.listen(foreign, resolve));
  t.after(() => listener.close());
  const next = await startApp(t, dir);
  await waitFor(() => !existsSync(left), { what: `the dead socket ${left} to be removed` });
  assert.ok(existsSync(foreign), 'a socket that answers is kept');
  const status = await runCli(['status', '--control-dir', dir, '--json']);
  assert.equal(JSON.parse(status.stdout).pid, next.pid);
});
