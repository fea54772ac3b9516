// Request-level behaviour of @grace-restart/express with a real Express app and real sockets.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { describe, test } from 'node:test';
import express5 from 'express';
import express4 from 'express4';
import request from 'supertest';
import { graceRestart } from '@grace-restart/express';
import {
  IN_PROCESS,
  assertDrainOverKeepAlive,
  assertHealthCheckThroughAdapter,
  closeServer,
  gated,
  whenReady,
} from '../../../test/helpers/adapter-in-process.mjs';

/** An app with graceRestart mounted and routes that report what a handler sees. */
function createApp(t, express, options = {}) {
  const restart = graceRestart({ ...IN_PROCESS, ...options });
  t.after(() => restart.grace.close());
  const app = express();
  app.disable('x-powered-by');
  app.use(restart);
  const gate = gated();
  app.get('/state', (req, res) => {
    const g = req.graceRestart;
    res.json({
      generation: g.generation,
      isDraining: g.isDraining,
      isReady: g.isReady,
      state: g.state,
      upgrade: typeof g.upgrade,
      locals: req.app.locals.graceRestart === restart.grace,
    });
  });
  app.get('/health', (req, res) => res.sendStatus(req.graceRestart.isDraining ? 503 : 200));
  app.get('/gated', async (_req, res) => {
    await gate.enter();
    res.json({ ok: true });
  });
  return { app, restart, gate };
}

/** app.listen() as a promise; the server is closed at the end even if grace never adopted it. */
function listen(t, app, ...args) {
  return new Promise((resolve, reject) => {
    const server = app.listen(...args, (error) => (error ? reject(error) : resolve(server)));
    t.after(() => closeServer(server));
  });
}

/**
 * Every behaviour, with the Express major `express` is. The adapter itself imports whatever
 * `express` resolves to (5 here), so with Express 4 this checks a v5 sub-app mounted on a v4
 * app: 'mount', app.listen, the request prototype and the drain, which is what differs.
 */
function behaviours(express) {
  test('app.listen() listens through grace-restart and route handlers get the handle', async (t) => {
    const { app, restart } = createApp(t, express);
    const server = await listen(t, app, 0, '127.0.0.1');
    await whenReady(restart.grace);
    assert.ok(restart.grace.servers.includes(server), 'the server app.listen() created is adopted');
    const res = await request(server).get('/state').expect(200);
    assert.deepEqual(res.body, { generation: 1, isDraining: false, isReady: true, state: 'ready', upgrade: 'function', locals: true });
    assert.equal(res.headers['x-powered-by'], undefined, 'the sub-app must not add X-Powered-By back');
  });

  test('once draining, /health answers 503 and every response carries Connection: close', async (t) => {
    // A long idleGrace keeps the idle keep-alive socket open long enough to send on it again.
    const { app, restart, gate } = createApp(t, express, { idleGrace: 10_000, drainTimeout: 20_000 });
    const server = await listen(t, app, 0, '127.0.0.1');
    await assertDrainOverKeepAlive(t, { server, grace: restart.grace, gate });
  });

  test('invalid options throw a GraceError that names the option', () => {
    assert.throws(() => graceRestart({ ...IN_PROCESS, drainTimeOut: 5000 }), {
      name: 'GraceError',
      code: 'GRACE_ERR_OPTIONS',
      message: /unknown option "drainTimeOut"/,
    });
    assert.throws(() => graceRestart({ ...IN_PROCESS, idleGrace: -1 }), {
      code: 'GRACE_ERR_OPTIONS',
      message: /"idleGrace" must be a whole number/,
    });
    assert.throws(() => graceRestart('app.pid'), { code: 'GRACE_ERR_OPTIONS', message: /options must be an object/ });
  });

  test('a port in use reaches the app.listen() callback, as in Express 5', async (t) => {
    const blocker = net.createServer();
    await new Promise((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    t.after(() => blocker.close());
    const { app, restart } = createApp(t, express);
    await assert.rejects(listen(t, app, blocker.address().port, '127.0.0.1'), { code: 'EADDRINUSE' });
    assert.equal(restart.grace.servers.length, 0);
  });

  test('the explicit form: grace.listen() with a server built around the app', async (t) => {
    const { app, restart } = createApp(t, express);
    const server = http.createServer(app);
    await restart.grace.listen(server, { port: 0, host: '127.0.0.1' });
    assert.ok(restart.grace.servers.includes(server));
    const res = await request(server).get('/state').expect(200);
    assert.equal(res.body.generation, 1);
  });

  test('one instance shared by two apps: both listen through it, both see it', async (t) => {
    const { app, restart } = createApp(t, express);
    const admin = express();
    admin.use(graceRestart(restart.grace));
    admin.get('/', (req, res) => res.json({ same: req.graceRestart === restart.grace }));
    const [main, second] = [await listen(t, app, 0, '127.0.0.1'), await listen(t, admin, 0, '127.0.0.1')];
    assert.deepEqual(restart.grace.servers, [main, second]);
    assert.deepEqual((await request(second).get('/').expect(200)).body, { same: true });
  });

  test('mounting twice on the same app wraps app.listen once', async (t) => {
    const { app, restart } = createApp(t, express);
    const listenAfterFirst = app.listen;
    app.use(restart);
    assert.equal(app.listen, listenAfterFirst);
    await listen(t, app, 0, '127.0.0.1');
    assert.equal(restart.grace.servers.length, 1);
  });
}

for (const [major, express] of [
  [5, express5],
  [4, express4],
])
  describe(`Express ${major}`, () => behaviours(express));

test('requests do not pass through the mounted sub-app: its router layer is taken out', async (t) => {
  const app = express5();
  const before = app.router.stack.length;
  const restart = graceRestart(IN_PROCESS);
  app.use(restart);
  t.after(() => restart.grace.close());
  assert.equal(app.router.stack.length, before, 'no layer left for the sub-app');
  app.get('/', (req, res) => res.json({ generation: req.graceRestart.generation }));
  const res = await request(app).get('/');
  assert.equal(res.body.generation, 1, 'the handle is still on every request');
});

test('healthCheck as a path is requested through the Express app before the ready report', async (t) => {
  await assertHealthCheckThroughAdapter(async (status, options) => {
    const restart = graceRestart(options);
    const app = express5();
    app.use(restart);
    app.get('/healthz', (_req, res) => res.status(status).send('x'));
    const server = app.listen(0, '127.0.0.1');
    t.after(() => closeServer(server));
    return restart.grace;
  });
});
