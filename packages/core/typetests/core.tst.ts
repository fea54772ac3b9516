import http from 'node:http';
import { expect, test } from 'tstyche';
import { createGrace, type Grace, type GraceOptions, type UpgradeError, type UpgradeResult } from '@grace-restart/core';
import { createServiceNotifier, takeInheritedListeners, takeNotifyEnv } from '@grace-restart/core/internal';

test('createGrace accepts typed options and returns a Grace', () => {
  expect(createGrace({ readyTimeout: 1000, pidFile: 'app.pid', upgradeSignal: false })).type.toBe<Grace>();
  expect(createGrace).type.not.toBeCallableWith({ readyTimeout: '1s' });
  expect(createGrace).type.not.toBeCallableWith({ drainTimeOut: 5 });
  expect<GraceOptions['onDrain']>().type.toBe<((info: { reason: 'upgrade' | 'stop' }) => void | Promise<void>) | undefined>();
});

test('listen, upgrade and events are typed', () => {
  const grace = createGrace();
  expect(grace.listen(http.createServer(), { port: 3000, host: '127.0.0.1' })).type.toBe<Promise<void>>();
  expect(grace.listen).type.not.toBeCallableWith(http.createServer(), { port: '3000' });
  expect(grace.upgrade()).type.toBe<Promise<UpgradeResult>>();
  expect(grace.adopt(http.createServer())).type.toBe<http.Server>();
  grace.on('upgrade-failed', (error) => {
    expect(error).type.toBe<UpgradeError>();
  });
  grace.on('drain-end', (result) => {
    expect(result.forced).type.toBe<number>();
  });
  expect(grace.generation).type.toBe<number>();
  expect(grace.isDraining).type.toBe<boolean>();
});

test('the notify protocol and socket-activation helpers the CLI builds on are typed', () => {
  const env = takeNotifyEnv(process.env, process.pid);
  expect(env.socket).type.toBe<string | undefined>();
  expect(env.watchdogIntervalMs).type.toBe<number | undefined>();
  const notifier = createServiceNotifier(env, console);
  expect(notifier?.send).type.toBe<((fields: readonly string[]) => void) | undefined>();
  expect(notifier?.flush()).type.toBe<Promise<void> | undefined>();
  expect(takeInheritedListeners(process.env, process.pid).fds[0]?.name).type.toBe<string | undefined>();
});
