import http from 'node:http';
import express from 'express';
import { expect, test } from 'tstyche';
import { graceRestart, type Grace, type GraceRestartMiddleware, type UpgradeResult } from '@grace-restart/express';

test('graceRestart takes core options or an instance and mounts with app.use', () => {
  const restart = graceRestart({ pidFile: 'app.pid', drainTimeout: 5000 });
  expect(restart).type.toBe<GraceRestartMiddleware>();
  expect(graceRestart(restart.grace)).type.toBe<GraceRestartMiddleware>();
  expect(graceRestart).type.not.toBeCallableWith({ drainTimeOut: 5000 });
  expect(graceRestart).type.not.toBeCallableWith({ readyTimeout: '30s' });
  const app = express();
  expect(app.use(restart)).type.toBe<express.Express>();
  expect(app.listen(3000)).type.toBe<http.Server>();
});

test('route handlers see the instance as req.graceRestart', () => {
  express().get('/health', (req, res) => {
    expect(req.graceRestart).type.toBe<Grace>();
    expect(req.graceRestart.isDraining).type.toBe<boolean>();
    expect(req.graceRestart.generation).type.toBe<number>();
    expect(req.graceRestart.upgrade()).type.toBe<Promise<UpgradeResult>>();
    res.sendStatus(200);
  });
});

test('the explicit form listens with a server built by the app', () => {
  const restart = graceRestart();
  expect(restart.grace.listen(http.createServer(express()), { port: 3000 })).type.toBe<Promise<void>>();
});
