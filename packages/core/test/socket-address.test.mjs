// Inherited sockets matched by the address they are bound to: what the kernel says about a
// listening fd (socket-address.ts), and which listen() options that address answers (address.ts).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ipKey, matchesBoundAddress } from '../dist/address.js';
import { listeningFd } from '../dist/server-internals.js';
import { listeningAddresses, parseTcpLine, parseUnixLine } from '../dist/socket-address.js';

async function listening(t, ...args) {
  const server = net.createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(...args, resolve);
  });
  t.after(() => server.close());
  return server;
}

test('the kernel reports the address of listening TCP v4, v6 and unix sockets by fd', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'grace-sockaddr-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const v4 = await listening(t, 0, '127.0.0.1');
  const v6 = await listening(t, 0, '::1');
  const any = await listening(t, 0);
  const unix = await listening(t, join(dir, 'app.sock'));
  const fds = [v4, v6, any, unix].map(listeningFd);
  const found = listeningAddresses(fds);
  assert.deepEqual(found.get(fds[0]), { kind: 'tcp', family: 'IPv4', address: '127.0.0.1', port: v4.address().port });
  assert.deepEqual(found.get(fds[1]), { kind: 'tcp', family: 'IPv6', address: '0:0:0:0:0:0:0:1', port: v6.address().port });
  assert.equal(found.get(fds[2]).port, any.address().port);
  assert.equal(ipKey(found.get(fds[2]).address), ipKey(any.address().address), 'the wildcard socket is reported as such');
  assert.deepEqual(found.get(fds[3]), { kind: 'unix', path: join(dir, 'app.sock') });
});

test('a connected socket, a closed fd and a regular file have no listening address', async (t) => {
  const server = await listening(t, 0, '127.0.0.1');
  const client = net.connect(server.address().port, '127.0.0.1');
  await new Promise((resolve) => client.once('connect', resolve));
  t.after(() => client.destroy());
  const found = listeningAddresses([client._handle.fd, 9999, 0]);
  assert.equal(found.size, 0);
});

test('/proc/net lines are parsed: listening entries only', () => {
  const v4 =
    '   1: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 12345 1 0000000000000000 100 0 0 10 0';
  const established =
    '   2: 0100007F:0BB8 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 12346 1 0000000000000000 20 4 30 10 -1';
  assert.deepEqual(parseTcpLine(v4, 'IPv4'), [12345, { kind: 'tcp', family: 'IPv4', address: '127.0.0.1', port: 3000 }]);
  assert.equal(parseTcpLine(established, 'IPv4'), undefined);
  const unix = '0000000000000000: 00000002 00000000 00010000 0001 01 777 /run/app.sock';
  const unbound = '0000000000000000: 00000003 00000000 00000000 0001 03 778';
  const abstract = '0000000000000000: 00000002 00000000 00010000 0001 01 779 @grace';
  assert.deepEqual(parseUnixLine(unix), [777, { kind: 'unix', path: '/run/app.sock' }]);
  assert.equal(parseUnixLine(unbound), undefined);
  assert.deepEqual(parseUnixLine(abstract), [779, { kind: 'unix', path: '@grace' }]);
});

test('which listen() options an inherited socket answers', () => {
  const tcp = (address, port = 3000) => ({ kind: 'tcp', family: address.includes(':') ? 'IPv6' : 'IPv4', address, port });
  const cases = [
    // [options, host as resolved, bound, matches]
    [{ port: 3000, host: '127.0.0.1' }, '127.0.0.1', tcp('127.0.0.1'), true],
    [{ port: 3001, host: '127.0.0.1' }, '127.0.0.1', tcp('127.0.0.1'), false],
    [{ port: 3000, host: '127.0.0.2' }, '127.0.0.2', tcp('127.0.0.1'), false],
    [{ port: 3000, host: '::1' }, '::1', tcp('0:0:0:0:0:0:0:1'), true],
    [{ port: 3000, host: '::1' }, '::1', tcp('127.0.0.1'), false],
    [{ port: 3000, host: '::ffff:127.0.0.1' }, '::ffff:127.0.0.1', tcp('127.0.0.1'), true],
    [{ port: 3000, host: 'localhost' }, '127.0.0.1', tcp('127.0.0.1'), true],
    // No host, 0.0.0.0 and :: all ask for every address: systemd's ListenStream=3000 binds [::]:3000.
    [{ port: 3000 }, undefined, tcp('0:0:0:0:0:0:0:0'), true],
    [{ port: 3000 }, undefined, tcp('0.0.0.0'), true],
    [{ port: 3000, host: '0.0.0.0' }, '0.0.0.0', tcp('0:0:0:0:0:0:0:0'), true],
    [{ port: 3000, host: '::' }, '::', tcp('0.0.0.0'), true],
    [{ port: 3000 }, undefined, tcp('127.0.0.1'), false],
    [{ port: 3000, host: '127.0.0.1' }, '127.0.0.1', tcp('0.0.0.0'), false],
    // Port 0 asks for a fresh port.
    [{ port: 0, host: '127.0.0.1' }, '127.0.0.1', tcp('127.0.0.1', 0), false],
    [{}, undefined, tcp('0.0.0.0'), false],
    [{ path: '/run/app.sock' }, undefined, { kind: 'unix', path: '/run/app.sock' }, true],
    [{ path: '/run/other.sock' }, undefined, { kind: 'unix', path: '/run/app.sock' }, false],
    [{ path: '\0grace' }, undefined, { kind: 'unix', path: '@grace' }, true],
    [{ path: '/run/app.sock' }, undefined, tcp('127.0.0.1'), false],
    [{ port: 3000 }, undefined, { kind: 'unix', path: '/run/app.sock' }, false],
  ];
  for (const [options, host, bound, expected] of cases) {
    assert.equal(matchesBoundAddress(options, bound, host), expected, `${JSON.stringify(options)} vs ${JSON.stringify(bound)}`);
  }
});

test('ipKey: one spelling per address', () => {
  assert.equal(ipKey('::1'), ipKey('0:0:0:0:0:0:0:1'));
  assert.equal(ipKey('[::1]'), ipKey('::1'));
  assert.equal(ipKey('::ffff:10.0.0.1'), '10.0.0.1');
  assert.equal(ipKey('fe80::1%eth0'), ipKey('FE80:0:0:0:0:0:0:1'));
  assert.equal(ipKey('::'), ipKey('0:0:0:0:0:0:0:0'));
  assert.notEqual(ipKey('::'), ipKey('0.0.0.0'));
  assert.equal(ipKey('localhost'), undefined);
});
