// LISTEN_* and GRACE_RESTART_* environment: systemd semantics, validation, clear errors.
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { takeHandoffEnv } from '../dist/handoff.js';
import { listenFdsEnv, takeInheritedListeners, uniqueNames } from '../dist/listen-fds.js';
import { servingPid, startServer } from './helpers.mjs';

/** The `msg` of every JSON log line the fixture wrote on stderr. */
const logMessages = (fixture) =>
  fixture.stderr
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line).msg);

test('no LISTEN_FDS: nothing inherited, nothing reported', () => {
  assert.deepEqual(takeInheritedListeners({}, 42), { fds: [], problems: [] });
});

test('LISTEN_PID of another process: the variables are ignored silently and removed', () => {
  const env = { LISTEN_FDS: '1', LISTEN_PID: '1', LISTEN_FDNAMES: 'x' };
  assert.deepEqual(takeInheritedListeners(env, 42), { fds: [], problems: [] });
  assert.deepEqual(env, {});
});

test('malformed values are reported with the variable and value, and nothing is inherited', () => {
  const cases = [
    [{ LISTEN_FDS: 'abc' }, /LISTEN_FDS="abc": expected a whole number/],
    [{ LISTEN_FDS: '-1' }, /LISTEN_FDS="-1"/],
    [{ LISTEN_FDS: '99999' }, /LISTEN_FDS="99999"/],
    [{ LISTEN_FDS: '1', LISTEN_PID: 'me' }, /LISTEN_PID="me" is not a pid/],
    [{ LISTEN_FDS: '2', LISTEN_FDNAMES: 'a' }, /LISTEN_FDNAMES has 1 names/],
  ];
  for (const [env, message] of cases) {
    const result = takeInheritedListeners(env, 42);
    assert.deepEqual(result.fds, []);
    assert.equal(result.problems.length, 1);
    assert.match(result.problems[0], message);
    assert.deepEqual(env, {}, 'variables removed');
  }
});

test('an inherited fd that is not a socket is refused with a reason', async () => {
  const file = join(mkdtempSync(join(tmpdir(), 'grace-env-')), 'plain');
  const fd = openSync(file, 'w');
  try {
    // This process's fd 3.. are not ours to test with, so describe them through a fake count:
    // the check itself is fstat-based, exercised here on a regular file at `fd`.
    const env = { LISTEN_FDS: String(fd - 2), LISTEN_PID: String(process.pid) };
    const { problems } = takeInheritedListeners(env, process.pid);
    assert.ok(
      problems.some((p) => p.includes(`fd ${fd}`) && p.includes('a regular file, not a socket')),
      problems.join('\n'),
    );
  } finally {
    closeSync(fd);
  }
});

test('repeated LISTEN_FDNAMES (every socket of a .socket unit is named after the unit) are made unique in fd order', () => {
  assert.deepEqual(uniqueNames(['app.socket', 'app.socket', 'web', 'app.socket']), ['app.socket', 'app.socket#2', 'web', 'app.socket#3']);
  assert.deepEqual(
    uniqueNames(['unknown', 'unknown#2', 'unknown']),
    ['unknown', 'unknown#2', 'unknown#3'],
    'a name systemd gave is never taken',
  );
  assert.deepEqual(uniqueNames(['a', 'b']), ['a', 'b']);
});

test('listener names never contain the LISTEN_FDNAMES separator', () => {
  assert.deepEqual(listenFdsEnv(['tcp/127.0.0.1/3000', 'unix/%2Frun%2Fa.sock']), {
    LISTEN_FDS: '2',
    LISTEN_FDNAMES: 'tcp/127.0.0.1/3000:unix/%2Frun%2Fa.sock',
  });
  assert.throws(() => listenFdsEnv(['a:b']), /must not contain ':'/);
});

test('handoff variables are validated: bad values are reported and defaults used', () => {
  const env = { GRACE_RESTART_GENERATION: 'x', GRACE_RESTART_READY_FD: '1', GRACE_RESTART_PARENT_PID: '12' };
  const result = takeHandoffEnv(env);
  assert.equal(result.generation, 1);
  assert.equal(result.readyFd, undefined);
  assert.equal(result.parentPid, 12);
  assert.equal(result.problems.length, 2);
  assert.deepEqual(env, {});
});

test('a process started with forged LISTEN_* variables logs a clear error and binds fresh', async (t) => {
  const { fixture, port } = await startServer(t, { LISTEN_FDS: 'lots', LISTEN_FDNAMES: 'tcp/127.0.0.1/0' });
  assert.equal(await servingPid({ port }), fixture.pid);
  assert.ok(
    logMessages(fixture).some((m) => m.includes('ignoring LISTEN_FDS="lots"')),
    fixture.stderr,
  );
  assert.doesNotMatch(fixture.stderr, /\n\s+at /, 'no stack trace');
});

test('a process told to inherit fd 3 that is not a socket refuses it and binds fresh', async (t) => {
  const { fixture, port } = await startServer(t, { LISTEN_FDS: '1', GRACE_RESTART_READY_FD: 'nope' });
  assert.equal(await servingPid({ port }), fixture.pid);
  const messages = logMessages(fixture);
  assert.ok(
    messages.some((m) => /ignoring inherited fd 3 .*not a socket/.test(m)),
    fixture.stderr,
  );
  assert.ok(
    messages.some((m) => m.includes('ignoring GRACE_RESTART_READY_FD="nope"')),
    fixture.stderr,
  );
});

test('a port in use is a clear listen error, not a hang', async (t) => {
  const blocker = net.createServer();
  await new Promise((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.after(() => blocker.close());
  const { port } = blocker.address();
  const { startFixture } = await import('../../../test/helpers/process.mjs');
  const { FIXTURE } = await import('./helpers.mjs');
  const fixture = startFixture(FIXTURE, { env: { PORT: String(port) } });
  t.after(() => fixture.cleanup());
  const error = await fixture.waitForEvent({ event: 'listen-error' });
  assert.equal(error.code, 'GRACE_ERR_LISTEN');
  assert.match(error.message, new RegExp(`cannot listen on 127.0.0.1:${port}: the address is already in use`));
  assert.equal((await fixture.exited).code, 2);
});
