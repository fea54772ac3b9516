// Boot priority under `grace-restart run` (issue #29): a worker started while others serve boots
// niced and serves at nice 0 after its ready report; the first workers (nobody serving yet) are
// not niced. Nice values read from /proc/<pid>/task/*/stat of the real workers.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { childrenOf, newChildWithThreads, threadNices } from '../../../test/helpers/proc.mjs';
import { runCli as cli, startFixture, waitFor } from '../../../test/helpers/process.mjs';

const BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const APP = fileURLToPath(new URL('../../core/test/fixtures/server.mjs', import.meta.url));

/** `grace-restart run --workers 1` of core's fixture, boot priority at its default; its behaviour and PID files. */
function startSupervisor(t) {
  const dir = mkdtempSync(join(tmpdir(), 'grace-cli-nice-'));
  const behaviour = join(dir, 'behaviour');
  const pidFile = join(dir, 'sup.pid');
  writeFileSync(behaviour, 'ok');
  const supervisor = startFixture(BIN, {
    args: ['run', '--workers', '1', '--pid-file', pidFile, '--', 'node', APP],
    env: { PORT: '0', BEHAVIOUR_FILE: behaviour, GRACE_RESTART_BOOT_NICE: '' },
  });
  t.after(() => supervisor.cleanup());
  return { supervisor, behaviour, pidFile };
}

test('run: a worker started while another serves boots at nice 10 and serves at nice 0; the first worker booted at nice 0', async (t) => {
  const { supervisor, behaviour, pidFile } = startSupervisor(t);
  await supervisor.waitForEvent({ event: 'listening' });
  await waitFor(() => childrenOf(supervisor.pid).length === 1, { what: 'the first worker' });
  const [first] = childrenOf(supervisor.pid);
  assert.ok(
    threadNices(first).every((n) => n === 0),
    `first worker: ${threadNices(first)}`,
  );
  assert.match(supervisor.stderr, /"bootPriority":"nice 10 until ready \(CAP_SYS_NICE\)"/);

  writeFileSync(behaviour, 'slow-boot:2000');
  const upgrade = cli(['upgrade', '--pid-file', pidFile]);
  const fresh = await newChildWithThreads(supervisor.pid, { except: [first], what: 'the new worker and its threads' });
  const booting = threadNices(fresh);
  assert.ok(
    booting.every((n) => n === 10),
    `new worker while booting: ${booting}`,
  );
  assert.ok(
    threadNices(supervisor.pid).every((n) => n === 0),
    `supervisor: ${threadNices(supervisor.pid)}`,
  );
  assert.equal((await upgrade).code, 0);
  const serving = threadNices(fresh);
  assert.ok(
    serving.every((n) => n === 0),
    `new worker after ready: ${serving}`,
  );
});

test('upgrade --supervisor: the new supervisor boots niced and returns before it starts workers, which boot niced while the old ones serve and serve at nice 0', async (t) => {
  const { supervisor, behaviour, pidFile } = startSupervisor(t);
  await supervisor.waitForEvent({ event: 'ready' });
  const [oldWorker] = childrenOf(supervisor.pid);

  writeFileSync(behaviour, 'slow-boot:2000');
  const upgrade = cli(['upgrade', '--supervisor', '--pid-file', pidFile]);
  const successor = await waitFor(() => childrenOf(supervisor.pid).find((pid) => pid !== oldWorker), { what: 'the new supervisor' });
  t.after(() => process.kill(successor, 'SIGKILL'));
  const worker = await newChildWithThreads(successor, { what: "the new supervisor's first worker" });
  const booting = threadNices(worker);
  assert.ok(
    booting.every((n) => n === 10),
    `its first worker while the old one serves: ${booting}`,
  );
  assert.ok(
    threadNices(successor).every((n) => n === 0),
    `new supervisor: ${threadNices(successor)}`,
  );
  assert.match(supervisor.stderr, /boot priority: back to nice 0 before starting workers/);
  const result = await upgrade;
  assert.equal(result.code, 0, result.stdout + result.stderr);
  const serving = threadNices(worker);
  assert.ok(
    serving.every((n) => n === 0),
    `its worker after ready: ${serving}`,
  );
});

test('run: a GRACE_RESTART_BOOT_NICE that is not 0 to 19 is a usage error, before anything starts', async () => {
  const result = await cli(['run', '--', 'node', APP], { env: { ...process.env, GRACE_RESTART_BOOT_NICE: '25' } });
  assert.equal(result.code, 2, result.stderr);
  assert.match(result.stderr, /GRACE_RESTART_BOOT_NICE must be a whole number from 0 to 19 \(0: off\), got "25"/);
  assert.doesNotMatch(result.stderr, /grace-restart: grace-restart:/);
});
