import Fastify from 'fastify';
import { expect, test } from 'tstyche';
import graceRestart, { type GraceRestartHandle, type GraceRestartOptions, type UpgradeResult } from '@grace-restart/fastify';
import type { Grace, GraceState } from '@grace-restart/core';

test('the plugin takes the typed core options', () => {
  const app = Fastify();
  expect(
    app.register(graceRestart, { pidFile: 'app.pid', drainTimeout: 10_000, onShutdown: async ({ reason }) => void reason }),
  ).type.not.toRaiseError();
  expect(app.register(graceRestart)).type.not.toRaiseError();
  expect(app.register).type.not.toBeCallableWith(graceRestart, { drainTimeout: '10s' });
  expect(app.register).type.not.toBeCallableWith(graceRestart, { drainTimeot: 5 });
  expect<GraceRestartOptions['upgradeSignal']>().type.toBe<NodeJS.Signals | false | undefined>();
});

test('fastify.graceRestart is a typed, read-only handle', () => {
  const app = Fastify();
  expect(app.graceRestart).type.toBe<GraceRestartHandle>();
  expect(app.graceRestart.generation).type.toBe<number>();
  expect(app.graceRestart.parentPid).type.toBe<number | undefined>();
  expect(app.graceRestart.isDraining).type.toBe<boolean>();
  expect(app.graceRestart.state).type.toBe<GraceState>();
  expect(app.graceRestart.upgrade()).type.toBe<Promise<UpgradeResult>>();
  expect(app.graceRestart.grace).type.toBe<Grace>();
  expect(() => {
    // @ts-expect-error read-only
    app.graceRestart.generation = 2;
  }).type.not.toRaiseError();
});

test('any server flavour can register it', () => {
  const h2 = Fastify({ http2: true });
  expect(h2.register(graceRestart, { idleGrace: 100 })).type.not.toRaiseError();
  expect(h2.graceRestart.isDraining).type.toBe<boolean>();
});

test('fastify.listen() takes the fdName of a systemd socket', () => {
  const app = Fastify();
  expect(app.listen({ port: 3000, fdName: 'web' })).type.not.toRaiseError();
  expect(app.listen).type.not.toBeCallableWith({ port: 3000, fdName: 3 });
});
