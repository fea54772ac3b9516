// Boot priority (issue #29): a successor boots niced and returns to its parent's priority at its
// ready report, only where it can return by itself. The plan in process against /proc texts; the
// nice values end to end, read from /proc/<pid>/task/*/stat of a real successor.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { syncBuiltinESMExports } from 'node:module';
import os from 'node:os';
import { test } from 'node:test';
import { runCli } from '../../../test/helpers/process.mjs';
import { newChildWithThreads, threadNices } from '../../../test/helpers/proc.mjs';
import { hasCapSysNice, planBootPriority, rlimitNiceFloor, spawnAtBootPriority } from '../dist/boot-priority.js';
import { resolveOptions } from '../dist/options.js';
import { startServer } from './helpers.mjs';

const ROOT_STATUS = 'Name:\tnode\nCapEff:\t000001ffffffffff\n';
const USER_STATUS = 'Name:\tnode\nCapEff:\t0000000000000000\n';
const limits = (soft) =>
  `Limit                     Soft Limit           Hard Limit           Units\nMax nice priority         ${soft}                    ${soft}\n`;

test('the plan: niced where the child can return (CAP_SYS_NICE, or RLIMIT_NICE reaching the parent), else off with how to allow it', () => {
  assert.equal(hasCapSysNice(ROOT_STATUS), true);
  assert.equal(hasCapSysNice('CapEff:\t0000000000800000\n'), true, 'bit 23 alone');
  assert.equal(hasCapSysNice(USER_STATUS), false);
  assert.equal(rlimitNiceFloor(limits(0)), 20);
  assert.equal(rlimitNiceFloor(limits(20)), 0);
  assert.equal(rlimitNiceFloor(limits('unlimited')), -20);
  assert.equal(rlimitNiceFloor(''), 20, 'no /proc: nothing allowed');

  assert.deepEqual(planBootPriority(10, 0, { status: ROOT_STATUS, limits: limits(0) }), {
    mode: 'niced',
    nice: 10,
    restore: 0,
    why: 'CAP_SYS_NICE',
  });
  assert.deepEqual(planBootPriority(10, 0, { status: USER_STATUS, limits: limits(20) }), {
    mode: 'niced',
    nice: 10,
    restore: 0,
    why: 'RLIMIT_NICE allows nice 0',
  });
  assert.equal(planBootPriority(10, 5, { status: USER_STATUS, limits: limits(15) }).mode, 'niced', 'a parent at nice 5 needs only 15');
  assert.equal(planBootPriority(15, 10, { status: ROOT_STATUS, limits: '' }).nice, 19, 'capped at 19');
  const off = planBootPriority(10, 0, { status: USER_STATUS, limits: limits(0) });
  assert.equal(off.mode, 'off');
  assert.match(off.why, /without CAP_SYS_NICE or an RLIMIT_NICE of 20 \(systemd LimitNICE=\+0, docker --ulimit nice=20\)/);
  assert.equal(planBootPriority(0, 0, { status: ROOT_STATUS, limits: '' }).mode, 'off');
  assert.equal(planBootPriority(10, 19, { status: ROOT_STATUS, limits: '' }).mode, 'off', 'already at 19');
});

test('spawnAtBootPriority: a refused lowering still spawns, at this priority; a refused raise spawns and warns', (t) => {
  const original = os.setPriority;
  t.after(() => {
    os.setPriority = original;
    syncBuiltinESMExports();
  });
  const plan = { mode: 'niced', nice: 10, restore: 0, why: 'test' };
  const calls = [];
  os.setPriority = (_pid, value) => {
    calls.push(value);
    throw Object.assign(new Error('EPERM'), { code: 'EPERM' });
  };
  syncBuiltinESMExports();
  assert.equal(
    spawnAtBootPriority(plan, () => 'spawned'),
    'spawned',
  );
  assert.deepEqual(calls, [10], 'no raise after a refused lowering');

  const warnings = [];
  const onWarning = (w) => warnings.push(w.message);
  process.on('warning', onWarning);
  t.after(() => process.off('warning', onWarning));
  os.setPriority = (_pid, value) => {
    if (value === 0) throw new Error('EACCES');
  };
  syncBuiltinESMExports();
  assert.equal(
    spawnAtBootPriority(plan, () => 'spawned'),
    'spawned',
  );
  return new Promise((resolve) => setImmediate(resolve)).then(() =>
    assert.match(warnings.join('\n'), /could not return to nice 0 after starting a process niced: Error: EACCES/),
  );
});

test('bootNice: the option wins over GRACE_RESTART_BOOT_NICE; both are checked', () => {
  assert.equal(resolveOptions({}, {}).bootNice, 10);
  assert.equal(resolveOptions({}, { GRACE_RESTART_BOOT_NICE: '0' }).bootNice, 0);
  assert.equal(resolveOptions({ bootNice: 5 }, { GRACE_RESTART_BOOT_NICE: '0' }).bootNice, 5);
  assert.throws(() => resolveOptions({ bootNice: 20 }, {}), /option "bootNice" must be a whole number from 0 to 19, got 20/);
  assert.throws(() => resolveOptions({}, { GRACE_RESTART_BOOT_NICE: 'low' }), {
    code: 'GRACE_ERR_ENV',
    message: /GRACE_RESTART_BOOT_NICE must be a whole number from 0 to 19, got "low"/,
  });
});

test('a successor boots at nice 10, every thread of it, and serves at nice 0 after its ready report; the parent never left nice 0', async (t) => {
  assert.equal(hasCapSysNice(readFileSync('/proc/self/status', 'utf8')), true, 'this test runs where CAP_SYS_NICE is held (root)');
  const dir = mkdtempSync(join(tmpdir(), 'grace-boot-nice-'));
  const behaviour = join(dir, 'behaviour');
  const pidFile = join(dir, 'app.pid');
  writeFileSync(behaviour, 'ok');
  const { fixture } = await startServer(t, { BEHAVIOUR_FILE: behaviour, PID_FILE: pidFile, GRACE_RESTART_BOOT_NICE: '' });
  // The successor's boot lasts 2 s: long enough to read its threads while it boots.
  writeFileSync(behaviour, 'slow-boot:2000');
  const upgrade = runCli(['upgrade', '--pid-file', pidFile]);
  const successor = await newChildWithThreads(fixture.pid, { what: 'the successor and its threads' });
  const booting = threadNices(successor);
  assert.ok(
    booting.every((n) => n === 10),
    `successor threads while booting: ${booting}`,
  );
  assert.ok(
    threadNices(fixture.pid).every((n) => n === 0),
    `parent threads: ${threadNices(fixture.pid)}`,
  );
  const result = await upgrade;
  assert.equal(result.code, 0, result.stdout + result.stderr);
  const serving = threadNices(successor);
  assert.ok(serving.length > 1 && serving.every((n) => n === 0), `successor threads after ready: ${serving}`);
});

test("GRACE_RESTART_BOOT_NICE=0: the successor boots at its parent's priority", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'grace-boot-nice-'));
  const behaviour = join(dir, 'behaviour');
  const pidFile = join(dir, 'app.pid');
  writeFileSync(behaviour, 'ok');
  const { fixture } = await startServer(t, { BEHAVIOUR_FILE: behaviour, PID_FILE: pidFile, GRACE_RESTART_BOOT_NICE: '0' });
  writeFileSync(behaviour, 'slow-boot:2000');
  const upgrade = runCli(['upgrade', '--pid-file', pidFile]);
  const successor = await newChildWithThreads(fixture.pid, { what: 'the successor and its threads' });
  assert.ok(
    threadNices(successor).every((n) => n === 0),
    `successor threads while booting: ${threadNices(successor)}`,
  );
  assert.equal((await upgrade).code, 0);
});
