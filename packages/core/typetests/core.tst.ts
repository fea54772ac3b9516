import http from 'node:http';
import { expect, test } from 'tstyche';
import { createGrace, type Grace, type GraceOptions, type UpgradeError, type UpgradeResult } from '@grace-restart/core';

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
