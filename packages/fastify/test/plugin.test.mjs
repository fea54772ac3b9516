// The plugin against the real framework: decorator, draining behaviour of requests,
// close lifecycle, logging, option validation and the https / http2 servers.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import http2 from 'node:http2';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import Fastify from 'fastify';
import graceRestart from '@grace-restart/fastify';
import { assertHealthCheckThroughAdapter } from '../../../test/helpers/adapter-in-process.mjs';
import { request } from '../../../test/helpers/load.mjs';
import { waitFor } from '../../../test/helpers/process.mjs';
import { resolveLocalhostTo } from './fixtures/localhost.mjs';
import { buildApp, inProcess, listen, pinnedAgent } from './helpers.mjs';

const tls = {
  key: readFileSync(new URL('./fixtures/tls-key.pem', import.meta.url)),
  cert: readFileSync(new URL('./fixtures/tls-cert.pem', import.meta.url)),
};

test('decorates the instance with a live, read-only handle', async (t) => {
  const { app } = await buildApp(t);
  const handle = app.graceRestart;
  assert.equal(handle.generation, 1);
  assert.equal(handle.parentPid, undefined);
  assert.equal(handle.isDraining, false);
  assert.equal(handle.isReady, false);
  assert.equal(handle.state, 'starting');
  await assert.rejects(() => handle.upgrade(), { code: 'GRACE_ERR_NOT_READY' });
  assert.throws(() => {
    handle.upgrade = () => undefined;
  }, TypeError);

  await listen(app);
  assert.equal(handle.isReady, true);
  assert.equal(handle.state, 'ready');
  assert.deepEqual(handle.grace.servers, [app.server], 'fastify.server listens through grace-restart');
  await app.close();
  assert.equal(handle.isDraining, true);
  assert.equal(handle.state, 'closed');
});

test('while draining, requests on open keep-alive sockets are served with Connection: close, never a 503', async (t) => {
  // A long idleGrace keeps the idle sockets open during the drain, as a busy client's are.
  const { app, order } = await buildApp(t, { grace: { idleGrace: 10_000 } });
  const port = await listen(app);
  const first = pinnedAgent(t);
  const second = pinnedAgent(t);
  assert.equal((await request({ port, agent: first })).status, 200);
  assert.equal((await request({ port, agent: second, path: '/health' })).status, 200);
  const slow = request({ port, path: '/slow?ms=600' });
  await waitFor(() => order.includes('slow-start'), { what: 'the slow request to reach its handler' });

  const closing = app.close();
  await waitFor(() => app.graceRestart.isDraining, { what: 'the drain to start' });
  // Fastify's own close would answer these with 503 (return503OnClosing defaults to true).
  const served = await request({ port, agent: first });
  assert.equal(served.status, 200);
  assert.equal(served.json.draining, true);
  assert.equal(served.headers.connection, 'close');
  const health = await request({ port, agent: second, path: '/health' });
  assert.equal(health.status, 503, 'the app, not Fastify, says it is draining');
  assert.deepEqual(health.json, { status: 'draining' });
  assert.equal(health.headers.connection, 'close');

  const slowRes = await slow;
  assert.equal(slowRes.status, 200);
  assert.equal(slowRes.headers.connection, 'close');
  await closing;
  assert.deepEqual(order, ['slow-start', 'slow-done', 'onClose'], 'onClose hooks ran once, after the in-flight request');
});

test("host 'localhost': the extra ::1 server listens through grace-restart and keeps its keep-alive sockets while draining", async (t) => {
  t.after(resolveLocalhostTo(['127.0.0.1', '::1']));
  const { app } = await buildApp(t, { grace: { idleGrace: 10_000 } });
  const port = await listen(app, { host: 'localhost' });
  assert.deepEqual(
    app.graceRestart.grace.servers.map((s) => s.address().address),
    ['127.0.0.1', '::1'],
  );
  const v6 = pinnedAgent(t);
  assert.equal((await request({ host: '::1', port, agent: v6 })).status, 200);

  // The main server has no connection left, so it emits 'close' as soon as the drain starts,
  // and Fastify then closes its extra server: that must not destroy the idle ::1 socket.
  const mainClosed = once(app.server, 'close');
  const closing = app.close();
  await mainClosed;
  assert.equal(app.graceRestart.isDraining, true);
  const during = await request({ host: '::1', port, agent: v6 });
  assert.equal(during.status, 200);
  assert.equal(during.headers.connection, 'close');
  await closing;
});

test('fastify.close() is one drain however often it is called, and keeps the callback form', async (t) => {
  const { app, order } = await buildApp(t);
  await listen(app);
  const calls = [app.close(), app.close(), new Promise((resolve) => app.close(resolve))];
  const [first, second, viaCallback] = await Promise.all(calls);
  assert.equal(first, undefined);
  assert.equal(second, undefined);
  assert.equal(viaCallback, undefined, 'the callback gets no error');
  assert.deepEqual(order, ['onClose']);
  assert.equal(app.server.listening, false);
});

test('plugin options are validated with errors that name the option', async () => {
  const cases = [
    [{ drainTimeot: 5 }, /unknown option "drainTimeot"/],
    [{ drainTimeout: -1 }, /option "drainTimeout" must be a whole number of milliseconds/],
    [{ upgradeSignal: 'SIGNOPE' }, /option "upgradeSignal" must be a catchable signal name/],
    [{ logger: console.log }, /option "logger" must have error, warn, info and debug methods/],
    [{ exit: 'yes' }, /option "exit" must be true or false/],
  ];
  for (const [options, message] of cases) {
    const app = Fastify();
    app.register(graceRestart, { ...inProcess, ...options });
    await assert.rejects(app.ready(), { name: 'GraceError', code: 'GRACE_ERR_OPTIONS', message }, JSON.stringify(options));
    assert.equal(app.hasDecorator('graceRestart'), false);
  }
});

test('logs through fastify.log by default, or through the logger option', async (t) => {
  const lines = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(
        ...chunk
          .toString()
          .trim()
          .split('\n')
          .map((line) => JSON.parse(line)),
      );
      done();
    },
  });
  const { app } = await buildApp(t, { fastify: { logger: { level: 'info', stream } } });
  await listen(app);
  const ready = lines.find((line) => line.msg === 'ready');
  assert.ok(ready, `no ready line in ${JSON.stringify(lines)}`);
  assert.equal(ready.name, 'grace-restart');
  assert.equal(ready.generation, 1);
  await app.close(); // one live grace-restart instance per process

  const seen = [];
  const logger = { error: () => {}, warn: () => {}, info: (_obj, msg) => seen.push(msg), debug: () => {} };
  const own = await buildApp(t, { fastify: { logger: { level: 'info', stream } }, grace: { logger } });
  const before = lines.length;
  await listen(own.app);
  assert.ok(seen.includes('ready'), `the logger option got ${JSON.stringify(seen)}`);
  assert.equal(
    lines.slice(before).some((line) => line.name === 'grace-restart'),
    false,
    'fastify.log was not used',
  );
});

test('an https instance listens through grace-restart and drains its keep-alive sockets', async (t) => {
  const { app, order } = await buildApp(t, { fastify: { https: tls }, grace: { idleGrace: 10_000 } });
  const port = await listen(app);
  assert.ok(app.graceRestart.grace.servers[0] instanceof https.Server);
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, rejectUnauthorized: false });
  t.after(() => agent.destroy());
  const get = (path) =>
    new Promise((resolve, reject) => {
      https
        .get({ host: '127.0.0.1', port, path, agent }, (res) => {
          res.resume();
          res.on('end', () => resolve(res));
        })
        .on('error', reject);
    });
  assert.equal((await get('/')).statusCode, 200);
  const closing = app.close();
  await waitFor(() => app.graceRestart.isDraining, { what: 'the drain to start' });
  const during = await get('/');
  assert.equal(during.statusCode, 200);
  assert.equal(during.headers.connection, 'close');
  await closing;
  assert.deepEqual(order, ['onClose']);
});

test('an http2 instance gets GOAWAY and its open stream completes', async (t) => {
  const { app, order } = await buildApp(t, { fastify: { http2: true } });
  const port = await listen(app);
  const session = http2.connect(`http://127.0.0.1:${port}`);
  t.after(() => session.destroy());
  const goaway = once(session, 'goaway');
  const stream = session.request({ ':path': '/slow?ms=400' });
  await waitFor(() => order.includes('slow-start'), { what: 'the slow stream to reach its handler' });
  let body = '';
  stream.setEncoding('utf8');
  stream.on('data', (d) => (body += d));
  const ended = once(stream, 'end');
  const drained = once(app.graceRestart.grace, 'drain-end');

  const closing = app.close();
  await goaway;
  const [headers] = await once(stream, 'response');
  await ended;
  assert.equal(headers[':status'], 200);
  assert.equal(JSON.parse(body).pid, process.pid);
  const [result] = await drained;
  assert.equal(result.sessions, 1);
  assert.equal(result.forced, 0);
  await closing;
  assert.deepEqual(order, ['slow-start', 'slow-done', 'onClose']);
});

test('healthCheck as a path is requested through Fastify before the ready report', async (t) => {
  await assertHealthCheckThroughAdapter(async (status, options) => {
    const app = Fastify();
    await app.register(graceRestart, options);
    app.get('/healthz', async (_req, reply) => reply.code(status).send('x'));
    await app.listen({ port: 0, host: '127.0.0.1' });
    t.after(() => app.close().catch(() => undefined));
    return app.graceRestart.grace;
  });
});
