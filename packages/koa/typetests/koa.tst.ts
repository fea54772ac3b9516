import http from 'node:http';
import Koa from 'koa';
import { expect, test } from 'tstyche';
import { graceRestart, type Grace, type UpgradeResult } from '@grace-restart/koa';

test('graceRestart takes the app and core options or an instance', () => {
  const app = new Koa();
  const grace = graceRestart(app, { pidFile: 'app.pid', idleGrace: 200 });
  expect(grace).type.toBe<Grace>();
  expect(graceRestart(new Koa(), grace)).type.toBe<Grace>();
  expect(graceRestart).type.not.toBeCallableWith({ pidFile: 'app.pid' });
  expect(graceRestart).type.not.toBeCallableWith(app, { drainTimeOut: 5000 });
  expect(app.listen(3000)).type.toBe<http.Server>();
  expect(grace.listen(http.createServer(app.callback()), 3000)).type.toBe<Promise<void>>();
});

test('middleware sees the instance as ctx.graceRestart', () => {
  const app = new Koa<{ user: string }>();
  app.use((ctx) => {
    expect(ctx.graceRestart).type.toBe<Grace>();
    expect(ctx.graceRestart.isDraining).type.toBe<boolean>();
    expect(ctx.graceRestart.upgrade()).type.toBe<Promise<UpgradeResult>>();
    expect(ctx.state.user).type.toBe<string>();
  });
});
