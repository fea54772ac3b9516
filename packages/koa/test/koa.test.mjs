// Request-level behaviour of @grace-restart/koa with a real Koa app and real sockets.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import Koa3 from 'koa';
import Koa2 from 'koa2';
import request from 'supertest';
import { graceRestart } from '@grace-restart/koa';
import {
  IN_PROCESS,
  assertDrainOverKeepAlive,
  assertHealthCheckThroughAdapter,
  closeServer,
  gated,
  whenReady,
} from '../../../test/helpers/adapter-in-process.mjs';

/** An app wrapped by graceRestart, with routes that report what a middleware sees. */
function createApp(t, Koa, options = {}) {
  const app = new Koa();
  const grace = graceRestart(app, { ...IN_PROCESS, ...options });
  t.after(() => grace.close());
  const gate = gated();
  app.use(async (ctx) => {
    const g = ctx.graceRestart;
    if (ctx.path === '/state') {
      ctx.body = { generation: g.generation, isDraining: g.isDraining, isReady: g.isReady, state: g.state, upgrade: typeof g.upgrade };
    } else if (ctx.path === '/health') {
      ctx.status = g.isDraining ? 503 : 200;
    } else if (ctx.path === '/gated') {
      await gate.enter();
      ctx.body = { ok: true };
    }
  });
  return { app, grace, gate };
}

/** app.listen() as a promise; the server is closed at the end even if grace never adopted it. */
function listen(t, app, ...args) {
  return new Promise((resolve, reject) => {
    const server = app.listen(...args, () => resolve(server));
    t.after(() => closeServer(server));
    // Attached after listen(), as apps do: it hears the error once.
    server.once('error', reject);
  });
}
/** Every behaviour, with the Koa major `Koa` is (the adapter imports nothing from koa). */
function behaviours(Koa) {
  test('app.listen() listens through grace-restart and middleware gets ctx.graceRestart', async (t) => {
    const { app, grace } = createApp(t, Koa);
    const server = await listen(t, app, 0, '127.0.0.1');
    await whenReady(grace);
    assert.ok(grace.servers.includes(server), 'the server app.listen() created is adopted');
    const res = await request(server).get('/state').expect(200);
    assert.deepEqual(res.body, { generation: 1, isDraining: false, isReady: true, state: 'ready', upgrade: 'function' });
  });

  test('once draining, /health answers 503 and every response carries Connection: close', async (t) => {
    // A long idleGrace keeps the idle keep-alive socket open long enough to send on it again.
    const { app, grace, gate } = createApp(t, Koa, { idleGrace: 10_000, drainTimeout: 20_000 });
    const server = await listen(t, app, 0, '127.0.0.1');
    await assertDrainOverKeepAlive(t, { server, grace, gate });
  });

  test('invalid options or a missing app throw a GraceError that says what is wrong', () => {
    assert.throws(() => graceRestart(new Koa(), { ...IN_PROCESS, drainTimeOut: 5000 }), {
      name: 'GraceError',
      code: 'GRACE_ERR_OPTIONS',
      message: /unknown option "drainTimeOut"/,
    });
    assert.throws(() => graceRestart(new Koa(), { ...IN_PROCESS, readyTimeout: '30s' }), {
      code: 'GRACE_ERR_OPTIONS',
      message: /"readyTimeout" must be a whole number/,
    });
    assert.throws(() => graceRestart({ pidFile: 'app.pid' }), { code: 'GRACE_ERR_OPTIONS', message: /takes the Koa application first/ });
  });

  test('calling graceRestart twice on one app is refused', (t) => {
    const { app } = createApp(t, Koa);
    assert.throws(() => graceRestart(app, IN_PROCESS), { code: 'GRACE_ERR_OPTIONS', message: /already called for this Koa app/ });
  });

  test('a port in use is reported as an error event with the reason', async (t) => {
    const blocker = net.createServer();
    await new Promise((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    t.after(() => blocker.close());
    const { app, grace } = createApp(t, Koa);
    await assert.rejects(listen(t, app, blocker.address().port, '127.0.0.1'), { code: 'EADDRINUSE' });
    assert.equal(grace.servers.length, 0);
  });

  test('the explicit form: grace.listen() with a server built around app.callback()', async (t) => {
    const { app, grace } = createApp(t, Koa);
    const server = http.createServer(app.callback());
    await grace.listen(server, { port: 0, host: '127.0.0.1' });
    assert.ok(grace.servers.includes(server));
    const res = await request(server).get('/state').expect(200);
    assert.equal(res.body.generation, 1);
  });

  test('one instance shared by two apps: both listen through it, both see it', async (t) => {
    const { app, grace } = createApp(t, Koa);
    const admin = new Koa();
    graceRestart(admin, grace);
    admin.use((ctx) => {
      ctx.body = { same: ctx.graceRestart === grace };
    });
    const [main, second] = [await listen(t, app, 0, '127.0.0.1'), await listen(t, admin, 0, '127.0.0.1')];
    assert.deepEqual(grace.servers, [main, second]);
    assert.deepEqual((await request(second).get('/').expect(200)).body, { same: true });
  });
}

for (const [major, Koa] of [
  [3, Koa3],
  [2, Koa2],
])
  describe(`Koa ${major}`, () => behaviours(Koa));

test('healthCheck as a path is requested through the Koa app before the ready report', async (t) => {
  await assertHealthCheckThroughAdapter(async (status, options) => {
    const app = new Koa3();
    const grace = graceRestart(app, options);
    app.use((ctx) => {
      ctx.status = ctx.path === '/healthz' ? status : 200;
      ctx.body = 'x';
    });
    const server = app.listen(0, '127.0.0.1');
    t.after(() => closeServer(server));
    return grace;
  });
});

test('graceRestart(app) loads the globals Koa 3 tests each JSON body against at boot, not in the first answer', (t) => {
  // A fresh process: this one may have loaded them already. moduleLoadList is Node's list of the
  // built-in modules it loaded (undocumented): without it this test cannot tell, and says so.
  const script = `
    const loaded = () => process.moduleLoadList.some((m) => m.includes('undici'));
    if (!Array.isArray(process.moduleLoadList)) { console.log('null'); process.exit(0); }
    const { default: Koa } = await import('koa');
    const { graceRestart } = await import('@grace-restart/koa');
    const before = loaded();
    graceRestart(new Koa(), { upgradeSignal: false, stopSignals: false, exit: false, controlDir: false });
    console.log(JSON.stringify({ before, after: loaded() }));
    process.exit(0);`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: fileURLToPath(new URL('..', import.meta.url)),
    encoding: 'utf8',
  });
  const seen = JSON.parse(out);
  if (seen === null) return t.skip('process.moduleLoadList is missing in this Node: cannot see which built-ins loaded');
  // Node 22 and later load them with `node:http` imported as ESM (core does): nothing left to move.
  if (seen.before) return t.skip(`Node ${process.version} loaded them before graceRestart(app): nothing to move into the boot`);
  assert.deepEqual(seen, { before: false, after: true });
});
