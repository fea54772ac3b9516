// awaitReady: the race of a new process's ready report against its exit, an error, a deadline
// and an abort. Against real child processes, and a fake child where a real one cannot be
// made to do it on cue (an 'error' event).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { awaitReady } from '@grace-restart/core/internal';

const listeners = (child) => child.listenerCount('exit') + child.listenerCount('error');

/** A child that reports ready over its IPC channel, as a supervisor's worker does. */
const onIpcReady = (child) => (ready) => {
  const onMessage = (message) => {
    if (message?.type === 'ready') ready(message);
  };
  child.on('message', onMessage);
  return () => child.off('message', onMessage);
};

test('a real child that reports ready wins the race; every listener is removed', async (t) => {
  const child = spawn(process.execPath, ['-e', "process.send({ type: 'ready', pid: process.pid }); setTimeout(() => {}, 60_000)"], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  t.after(() => child.kill('SIGKILL'));
  const race = await awaitReady(child, { timeout: 20_000, onReady: onIpcReady(child) });
  assert.deepEqual(race, { kind: 'ready', report: { type: 'ready', pid: child.pid } });
  assert.equal(listeners(child), 0);
  assert.equal(child.listenerCount('message'), 0, 'onReady stopped listening');
});

test('a real child that exits first: its exit code, or the signal that ended it', async () => {
  const exits = spawn(process.execPath, ['-e', 'process.exit(3)']);
  assert.deepEqual(await awaitReady(exits, { timeout: 20_000 }), { kind: 'exited', code: 3, signal: null });
  const killed = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)']);
  const race = awaitReady(killed, { timeout: 20_000 });
  killed.kill('SIGTERM');
  assert.deepEqual(await race, { kind: 'exited', code: null, signal: 'SIGTERM' });
  assert.equal(listeners(killed), 0);
});

test('a command that cannot be spawned ends the race with its error', async () => {
  const child = spawn('/nonexistent/grace-restart-no-such-binary');
  const race = await awaitReady(child, { timeout: 20_000 });
  assert.equal(race.kind, 'error');
  assert.equal(race.error.code, 'ENOENT');
});

test('the deadline: a child that neither reports nor exits is out of time; a later exit is nobody’s business', async (t) => {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)']);
  t.after(() => child.kill('SIGKILL'));
  const started = Date.now();
  assert.deepEqual(await awaitReady(child, { timeout: 200 }), { kind: 'timeout' });
  assert.ok(Date.now() - started >= 190, 'not before the deadline');
  assert.equal(listeners(child), 0);
});

test('an abort ends the race, and a signal aborted already ends it before it begins', async () => {
  const child = new EventEmitter();
  const abort = new AbortController();
  const race = awaitReady(child, { timeout: 20_000, signal: abort.signal });
  abort.abort();
  assert.deepEqual(await race, { kind: 'aborted' });
  assert.equal(listeners(child), 0);
  let listened = false;
  const again = await awaitReady(child, {
    timeout: 20_000,
    signal: abort.signal,
    onReady: () => {
      listened = true;
      return () => undefined;
    },
  });
  assert.deepEqual(again, { kind: 'aborted' });
  assert.equal(listened, false);
});

test('the first to come wins: an exit right after the ready report changes nothing', async () => {
  const child = new EventEmitter();
  let report;
  let stops = 0;
  const race = awaitReady(child, {
    timeout: 20_000,
    onReady: (ready) => {
      report = ready;
      return () => stops++;
    },
  });
  report('first');
  child.emit('exit', 1, null);
  report('second');
  assert.deepEqual(await race, { kind: 'ready', report: 'first' });
  assert.equal(stops, 1, 'the race ended once');
  // With the race over, an 'error' has no listener of ours left: EventEmitter throws it.
  assert.throws(() => child.emit('error', new Error('late')), /late/);
});

test('an error event of a fake child ends the race with it', async () => {
  const child = new EventEmitter();
  const race = awaitReady(child, { timeout: 20_000 });
  const error = new Error('EPERM');
  child.emit('error', error);
  assert.deepEqual(await race, { kind: 'error', error });
});
