// The public API in-process: options validation, listen argument parsing, PID files,
// and the two internals isolated in server-internals.ts.
import assert from 'node:assert/strict';
import { existsSync, fstatSync, lstatSync, mkdtempSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { addressName, createGrace, GraceError, readPidFile, removePidFile, writePidFile } from '@grace-restart/core';
import { parseListenArgs } from '../dist/listen-args.js';
import { resolveOptions } from '../dist/options.js';
import { bindUnixSocket, closeKeepingSocketFile, listeningFd, pendingResponse } from '../dist/server-internals.js';

const tempDir = () => mkdtempSync(join(tmpdir(), 'grace-api-'));
const quiet = { stopSignals: false, upgradeSignal: false, exit: false };

test('bad options are rejected with the option named', () => {
  const cases = [
    [{ readyTimeout: -1 }, /"readyTimeout" must be a whole number of milliseconds/],
    [{ drainTimeout: '30s' }, /"drainTimeout" must be a whole number/],
    [{ upgradeSignal: 'SIGFOO' }, /"upgradeSignal" must be a catchable signal name/],
    [{ upgradeSignal: 'SIGKILL' }, /"upgradeSignal" must be a catchable signal/],
    [{ stopSignals: 'SIGTERM' }, /"stopSignals" must be an array/],
    [{ pidFile: '' }, /"pidFile" must be a non-empty path/],
    [{ autoReady: 'yes' }, /"autoReady" must be true or false/],
    [{ logger: console.log }, /"logger" must have error, warn, info and debug/],
    [{ onDrain: 'close' }, /"onDrain" must be a function/],
    [{ drainTimeOut: 5 }, /unknown option "drainTimeOut"/],
    [{ probation: 1.5 }, /"probation" must be a whole number of milliseconds/],
    [{ slowStart: -1 }, /"slowStart" must be a whole number of milliseconds/],
  ];
  for (const [options, message] of cases) {
    assert.throws(
      () => createGrace(options),
      (error) => error instanceof GraceError && error.code === 'GRACE_ERR_OPTIONS' && message.test(error.message),
    );
  }
  assert.throws(() => createGrace('fast'), /options must be an object/);
});

for (const { name, option, fallback } of [
  { name: 'GRACE_RESTART_PROBATION', option: 'probation', fallback: 10_000 },
  { name: 'GRACE_RESTART_SLOW_START', option: 'slowStart', fallback: 3_000 },
]) {
  test(`${name} sets the default ${option}; a malformed value names the variable; the option wins`, () => {
    assert.equal(resolveOptions({}, {})[option], fallback);
    assert.equal(resolveOptions({}, { [name]: '' })[option], fallback);
    assert.equal(resolveOptions({}, { [name]: '2500' })[option], 2_500);
    assert.equal(resolveOptions({}, { [name]: '0' })[option], 0);
    assert.equal(resolveOptions({ [option]: 3_000 }, { [name]: 'nonsense' })[option], 3_000);
    for (const bad of ['10s', '-1', '1e4', ' 100', '007', '2147483648']) {
      assert.throws(
        () => resolveOptions({}, { [name]: bad }),
        (error) =>
          error instanceof GraceError &&
          error.code === 'GRACE_ERR_ENV' &&
          error.message.includes(`${name} must be a whole number of milliseconds (0 to 2147483647), got ${JSON.stringify(bad)}`),
        bad,
      );
    }
  });
}

test('server.listen signatures are understood', () => {
  const cb = () => undefined;
  assert.deepEqual(parseListenArgs([3000]), { options: { port: 3000 }, callback: undefined });
  assert.deepEqual(parseListenArgs(['3000', '127.0.0.1', cb]), { options: { port: 3000, host: '127.0.0.1' }, callback: cb });
  assert.deepEqual(parseListenArgs([3000, '::1', 128]), { options: { port: 3000, host: '::1', backlog: 128 }, callback: undefined });
  assert.deepEqual(parseListenArgs([3000, 64, cb]), { options: { port: 3000, backlog: 64 }, callback: cb });
  assert.deepEqual(parseListenArgs(['/run/app.sock', cb]), { options: { path: '/run/app.sock' }, callback: cb });
  assert.deepEqual(parseListenArgs([{ port: 0, host: 'localhost' }]), { options: { port: 0, host: 'localhost' }, callback: undefined });
  assert.deepEqual(parseListenArgs([cb]), { options: {}, callback: cb });
  assert.throws(() => parseListenArgs([{ fd: 3 }]), /handle or fd is not supported/);
});

test('address names are stable, separator-free and validated', () => {
  assert.equal(addressName({ port: 3000, host: '127.0.0.1' }), 'tcp/127.0.0.1/3000');
  assert.equal(addressName({ port: 0, host: '::1' }), 'tcp/%3A%3A1/0');
  assert.equal(addressName({ port: 8080 }), 'tcp/*/8080');
  assert.equal(addressName({ path: '/run/a b.sock' }), 'unix/%2Frun%2Fa%20b.sock');
  assert.throws(() => addressName({ port: 70000 }), /"port" must be an integer from 0 to 65535/);
  assert.throws(() => addressName({ path: '/x', port: 1 }), /either "path" or "port"/);
});

test('adopt() routes server.listen() through grace; listening callbacks already see the server', async (t) => {
  const grace = createGrace(quiet);
  const server = http.createServer((_req, res) => res.end('ok'));
  grace.adopt(server);
  const seen = await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve([...grace.servers])));
  assert.deepEqual(seen, [server]);
  t.after(() => grace.close());
  assert.equal(grace.servers[0], server);
  const { port } = server.address();
  const body = await fetch(`http://127.0.0.1:${port}/`).then((r) => r.text());
  assert.equal(body, 'ok');
  await new Promise((resolve) => grace.once('ready', resolve).isReady && resolve());
  assert.equal(grace.isReady, true);
  assert.equal(grace.generation, 1);
});

test('adopt() reports a port in use as an error event with a clear message', async (t) => {
  const blocker = net.createServer();
  await new Promise((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.after(() => blocker.close());
  const grace = createGrace(quiet);
  t.after(() => grace.close());
  const server = grace.adopt(http.createServer());
  const error = await new Promise((resolve) => {
    server.once('error', resolve);
    server.listen(blocker.address().port, '127.0.0.1');
  });
  assert.match(error.message, /EADDRINUSE|already in use/);
});

test('close() drains an idle keep-alive socket only after idleGrace and resolves', async () => {
  const grace = createGrace({ ...quiet, idleGrace: 200 });
  const server = http.createServer((_req, res) => res.end('ok'));
  await grace.listen(server, { port: 0, host: '127.0.0.1' });
  const agent = new http.Agent({ keepAlive: true });
  const { port } = server.address();
  await new Promise((resolve) => http.get({ port, host: '127.0.0.1', agent }, (res) => res.resume().on('end', resolve)));
  const socket = Object.values(agent.freeSockets)[0][0];
  let closedAt = 0;
  socket.once('close', () => (closedAt = Date.now()));
  const drained = new Promise((resolve) => grace.once('drain-end', resolve));
  const startedAt = Date.now();
  await grace.close();
  const result = await drained;
  assert.equal(result.closedIdle, 1);
  assert.ok(closedAt - startedAt >= 200, `idle socket closed after ${closedAt - startedAt} ms, before its grace`);
  assert.equal(grace.state, 'closed');
  agent.destroy();
});

test('PID files are written atomically with mode 0644 and removed only by their owner', () => {
  const dir = tempDir();
  const file = join(dir, 'app.pid');
  writePidFile(file, 1234);
  assert.equal(readFileSync(file, 'utf8'), '1234\n');
  assert.equal(statSync(file).mode & 0o777, 0o644);
  assert.equal(removePidFile(file, 999), false, 'a stranger pid does not remove it');
  assert.equal(readPidFile(file), 1234);
  assert.equal(removePidFile(file, 1234), true);
  assert.equal(existsSync(file), false);
});

test('a symlink planted at the PID file path is replaced, never followed', () => {
  const dir = tempDir();
  const victim = join(dir, 'victim');
  writeFileSync(victim, 'precious');
  const file = join(dir, 'app.pid');
  symlinkSync(victim, file);
  writePidFile(file, 77);
  assert.equal(readFileSync(victim, 'utf8'), 'precious');
  assert.equal(lstatSync(file).isSymbolicLink(), false);
  assert.equal(readPidFile(file), 77);
});

test('listeningFd returns the socket fd of a listening server and refuses otherwise', async (t) => {
  const server = net.createServer();
  assert.throws(() => listeningFd(server), /not listening/);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const fd = listeningFd(server);
  assert.ok(Number.isInteger(fd) && fd > 2);
  assert.ok(fstatSync(fd).isSocket());
});

test('a unix socket bound by bindUnixSocket survives closeKeepingSocketFile', async () => {
  const path = join(tempDir(), 'x.sock');
  const server = net.createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject).once('listening', resolve);
    bindUnixSocket(server, { path });
  });
  assert.ok(lstatSync(path).isSocket());
  const cwd = process.cwd();
  closeKeepingSocketFile(() => server.close());
  assert.equal(process.cwd(), cwd);
  assert.ok(existsSync(path), 'libuv must not have unlinked the socket file');
});

test('pendingResponse names the response a socket is writing, and nothing once it is finished', async (t) => {
  let inFlight;
  const handled = new Promise((resolve) => {
    inFlight = resolve;
  });
  const server = http.createServer((req, res) => inFlight({ req, res, found: pendingResponse(req.socket) === res }));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const agent = new http.Agent({ keepAlive: true });
  t.after(() => agent.destroy());
  const done = new Promise((resolve) =>
    http.get({ port: server.address().port, host: '127.0.0.1', agent }, (res) => res.resume().on('end', resolve)),
  );
  const { req, res, found } = await handled;
  assert.equal(found, true, 'the in-flight response is found');
  res.end('done');
  await done;
  assert.equal(pendingResponse(req.socket), undefined, 'nothing pending once the response is finished');
});

test('a second createGrace() while the first is live throws GRACE_ERR_DUPLICATE; after close() a new one is allowed', async () => {
  const first = createGrace(quiet);
  assert.throws(
    () => createGrace(quiet),
    (error) =>
      error instanceof GraceError && error.code === 'GRACE_ERR_DUPLICATE' && /already has a grace-restart instance/.test(error.message),
  );
  await first.close();
  const second = createGrace(quiet);
  await second.close();
});
