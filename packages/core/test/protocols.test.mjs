// Long-lived protocols across an upgrade: WebSocket (close 1001 via onDrain) and HTTP/2 (GOAWAY).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import http2 from 'node:http2';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { isAlive, waitFor } from '../../../test/helpers/process.mjs';
import { startServer, upgrade } from './helpers.mjs';

const fixture = (name) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

test('WebSocket clients receive close code 1001 from the old process and reconnect to the new one', async (t) => {
  const { fixture: app, port } = await startServer(t, {}, { script: fixture('websocket.mjs') });
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
  const hello = await new Promise((resolve, reject) => ws.once('message', (m) => resolve(JSON.parse(m))).once('error', reject));
  assert.equal(hello.pid, app.pid);
  const closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: String(reason) })));
  const next = await upgrade(app, app.pid);
  assert.deepEqual(await closed, { code: 1001, reason: 'server upgrading' });
  const drain = app.events.find((e) => e.event === 'drain-end' && e.pid === app.pid);
  assert.equal(drain.forced, 0, 'the WebSocket was closed by the app, not destroyed at the deadline');
  const again = new WebSocket(`ws://127.0.0.1:${port}/`);
  const second = await new Promise((resolve, reject) => again.once('message', (m) => resolve(JSON.parse(m))).once('error', reject));
  assert.equal(second.pid, next);
  again.close();
});

test('HTTP/2 sessions get GOAWAY; the stream in flight completes; new sessions reach the successor', async (t) => {
  const { fixture: app, port } = await startServer(t, {}, { script: fixture('http2.mjs') });
  const session = http2.connect(`http://127.0.0.1:${port}`);
  t.after(() => session.destroy());
  const goaway = new Promise((resolve) => session.once('goaway', () => resolve(true)));
  const stream = session.request({ ':path': '/slow?ms=800' });
  const body = new Promise((resolve, reject) => {
    let data = '';
    stream.setEncoding('utf8');
    stream
      .on('data', (d) => (data += d))
      .on('end', () => resolve(JSON.parse(data)))
      .on('error', reject);
  });
  await new Promise((resolve) => stream.once('ready', resolve));
  process.kill(app.pid, 'SIGUSR2');
  assert.equal(await goaway, true);
  assert.equal((await body).pid, app.pid, 'the in-flight stream was answered by the old process');
  await waitFor(() => !isAlive(app.pid), { what: 'old process to exit' });
  const fresh = http2.connect(`http://127.0.0.1:${port}`);
  t.after(() => fresh.destroy());
  const res = await new Promise((resolve, reject) => {
    const s = fresh.request({ ':path': '/' });
    let data = '';
    s.setEncoding('utf8');
    s.on('data', (d) => (data += d))
      .on('end', () => resolve(JSON.parse(data)))
      .on('error', reject);
  });
  assert.notEqual(res.pid, app.pid);
  const drain = app.events.find((e) => e.event === 'drain-end' && e.pid === app.pid);
  assert.equal(drain.sessions, 1);
  assert.equal(drain.forced, 0);
});

test('HTTPS keep-alive clients are drained with Connection: close and fail no request', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'grace-tls-'));
  const [key, cert] = [join(dir, 'key.pem'), join(dir, 'cert.pem')];
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1'],
    { stdio: 'ignore' },
  );
  const { fixture: app, port } = await startServer(t, { TLS_KEY: key, TLS_CERT: cert }, { script: fixture('https.mjs') });
  const agent = new https.Agent({ keepAlive: true, maxSockets: 4, rejectUnauthorized: false });
  t.after(() => agent.destroy());
  const get = () =>
    new Promise((resolve, reject) => {
      https
        .get({ host: '127.0.0.1', port, agent, rejectUnauthorized: false }, (res) => {
          let body = '';
          res.on('data', (d) => (body += d)).on('end', () => resolve({ pid: JSON.parse(body).pid, connection: res.headers.connection }));
        })
        .on('error', reject);
    });
  let running = true;
  const results = [];
  const errors = [];
  const loops = Array.from({ length: 4 }, async () => {
    while (running)
      await get().then(
        (r) => results.push(r),
        (e) => errors.push(e.code ?? e.message),
      );
  });
  await waitFor(() => results.length > 20, { what: 'https load' });
  const next = await upgrade(app, app.pid);
  const after = results.length;
  await waitFor(() => results.slice(after).some((r) => r.pid === next), { what: 'the successor to serve https' });
  running = false;
  await Promise.all(loops);
  assert.deepEqual(errors, []);
  assert.ok(
    results.some((r) => r.pid === app.pid && r.connection === 'close'),
    'old process answered with Connection: close while draining',
  );
  const drain = app.events.find((e) => e.event === 'drain-end' && e.pid === app.pid);
  assert.equal(drain.forced, 0);
});
