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

test('run: a worker started while another serves boots at nice 10 and serves at nice 0; the first worker booted at nice 0', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'grace-cli-nice-'));
  const behaviour = join(dir, 'behaviour');
  const pidFile = join(dir, 'sup.pid');
  writeFileSync(behaviour, 'ok');
  const supervisor = startFixture(BIN, {
    args: ['run', '--workers', '1', '--pid-file', pidFile, '--', 'node', APP],
    env: { PORT: '0', BEHAVIOUR_FILE: behaviour, GRACE_RESTART_BOOT_NICE: '' },
  });
  t.after(() => supervisor.cleanup());
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
