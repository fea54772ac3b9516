// The Node internals the live connection handoff reads (server-internals.ts), each checked on
// real sockets, plus the fallback when one is missing. A Node release that changes one of
// them fails here, by name, instead of silently losing requests during upgrades.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { request } from '../../../test/helpers/load.mjs';
import { followJsonEvents, freePort, isAlive, waitFor } from '../../../test/helpers/process.mjs';
import { adoptConnection } from '../dist/connection-handoff.js';
import { moveConnections } from '../dist/connection-mover.js';
import { ConnectionTracker } from '../dist/drain.js';
import {
  bindWithoutListening,
  claimAdoptedSocket,
  missingMoveInternals,
  pausedByHttp,
  pipelinedHandleWriter,
  queuedWriteBytes,
  resumePending,
  resumeReading,
  socketsBetweenMessages,
  stopReading,
} from '../dist/server-internals.js';

/** A client socket whose reset at the end of a test is expected. */
function connect(t, port) {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => {});
  t.after(() => socket.destroy());
  return socket;
}

async function listen(t, server) {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections?.();
    server.close();
  });
  return server.address().port;
}

/** One raw HTTP/1.1 request on `socket`; resolves with the raw response text. */
function rawRequest(socket, path = '/') {
  return new Promise((resolve) => {
    let text = '';
    const onData = (d) => {
      text += d;
      const head = text.indexOf('\r\n\r\n');
      const length = /content-length: (\d+)/i.exec(text)?.[1];
      if (head !== -1 && length !== undefined && text.length >= head + 4 + Number(length)) {
        socket.removeListener('data', onData);
        resolve(text);
      }
    };
    socket.setEncoding('utf8');
    socket.on('data', onData);
    socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
  });
}

test('socketsBetweenMessages: a socket is listed once its request is parsed, not while one arrives', async (t) => {
  let serverSocket;
  const server = http.createServer((req, res) => {
    serverSocket = req.socket;
    res.end('ok');
  });
  const port = await listen(t, server);
  const client = connect(t, port);
  await once(client, 'connect');
  await rawRequest(client);
  const idle = socketsBetweenMessages(server);
  assert.ok(idle instanceof Set);
  assert.ok(idle.has(serverSocket), 'between two requests');
  // Half a request: the parser has started a message.
  const bytes = serverSocket.bytesRead;
  client.write('GET / HTTP/1.1\r\nHo');
  await waitFor(() => serverSocket.bytesRead > bytes, { what: 'the partial request to be read' });
  const partialSeen = socketsBetweenMessages(server).has(serverSocket);
  assert.equal(partialSeen, false, 'a message in progress is not between messages');
  assert.equal(socketsBetweenMessages(net.createServer()), undefined, 'a plain net.Server has no such list');
});

test('queuedWriteBytes and pausedByHttp read 0 and false on an idle socket, stopReading keeps later bytes in the kernel', async (t) => {
  let serverSocket;
  let finished = 0;
  const server = http.createServer((req, res) => {
    serverSocket = req.socket;
    res.on('finish', () => (finished += 1));
    res.end('ok');
  });
  const port = await listen(t, server);
  const client = connect(t, port);
  await once(client, 'connect');
  await rawRequest(client);
  // http resumes the socket once the response is finished (req._dump): stop reading after that,
  // as the move does (it runs in 'finish', after http's own listener).
  await waitFor(() => finished === 1, { what: 'the response to finish' });
  assert.equal(queuedWriteBytes(serverSocket), 0);
  assert.equal(pausedByHttp(serverSocket), false);
  assert.equal(missingMoveInternals(server, serverSocket), undefined, 'this Node has every internal the move needs');

  assert.equal(stopReading(serverSocket), true);
  const bytes = serverSocket.bytesRead;
  client.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  // A full round trip on another connection: this process has polled since the write.
  const other = connect(t, port);
  await once(other, 'connect');
  await rawRequest(other);
  assert.equal(serverSocket.bytesRead, bytes, 'nothing read after stopReading: the request waits in the kernel for the next owner');
});

test('resumePending: http schedules a resume of every socket it is given; stopReading holds the handle against it until resumeReading (issue #25)', async (t) => {
  let pendingInConnection;
  let accepted;
  const server = http.createServer((_req, res) => res.end('ok'));
  // Added after http's own 'connection' listener, as the move's is.
  server.on('connection', (socket) => {
    if (accepted !== undefined) return;
    accepted = socket;
    pendingInConnection = resumePending(socket);
    // What the move did before the fix: stop reading right here, in the 'connection' event.
    assert.equal(stopReading(socket), true);
  });
  const port = await listen(t, server);
  const client = connect(t, port);
  await once(client, 'connect');
  await waitFor(() => accepted !== undefined, { what: 'the server to accept' });
  assert.equal(pendingInConnection, true, "in its 'connection' event, a socket has a resume scheduled for the next tick");
  assert.equal(resumePending(accepted), false, 'the scheduled resume has run');
  // That resume emitted 'resume', on which http called readStart: held, the handle read nothing.
  client.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  const other = connect(t, port);
  await once(other, 'connect');
  await rawRequest(other);
  assert.equal(accepted.bytesRead, 0, 'nothing read while held: the request waits in the kernel for the next owner');
  // Kept here after all (the successor refused it, say): it reads and is answered.
  let answer = '';
  client.setEncoding('utf8');
  client.on('data', (d) => (answer += d));
  resumeReading(accepted);
  await waitFor(() => answer.includes('ok'), { what: 'the answer once reading resumed' });
  assert.match(answer, /^HTTP\/1\.1 200/);
});

test('claimAdoptedSocket gives the socket to the server as its accept would', async (t) => {
  const server = http.createServer();
  await listen(t, server);
  const socket = new net.Socket();
  const before = server._connections;
  claimAdoptedSocket(server, socket);
  assert.equal(server._connections, before + 1);
  assert.equal(socket.server, server);
  assert.equal(socket.allowHalfOpen, true, "http.Server's allowHalfOpen");
  // Its close gives the count back, so that server.close() completes.
  socket.destroy();
  await once(socket, 'close');
  assert.equal(server._connections, before);
});

test('an adopted idle socket is answered, and closed at keepAliveTimeout instead of a 408 at headersTimeout', async (t) => {
  const target = http.createServer((_req, res) => res.end(JSON.stringify({ adopted: true })));
  target.keepAliveTimeout = 200;
  await listen(t, target);
  const front = net.createServer((socket) => adoptConnection(target, socket));
  const port = await listen(t, front);

  const served = connect(t, port);
  await once(served, 'connect');
  assert.match(await rawRequest(served), /^HTTP\/1\.1 200[\s\S]*"adopted":true/);

  const idle = connect(t, port);
  let received = '';
  idle.setEncoding('utf8');
  idle.on('data', (d) => (received += d));
  const closed = once(idle, 'close');
  await once(idle, 'connect');
  await waitFor(() => idle.readableEnded || idle.destroyed, { timeout: 10_000, what: 'the idle adopted socket to be closed' });
  await closed;
  assert.equal(received, '', 'closed without an unsolicited response');
});

test('a Node without the connections list falls back to the drain, logged once', async (t) => {
  const server = http.createServer((_req, res) => res.end('ok'));
  const tracker = new ConnectionTracker(server);
  t.after(() => tracker.dispose());
  const port = await listen(t, server);
  const client = connect(t, port);
  await once(client, 'connect');
  await rawRequest(client);
  // What an older or newer Node would look like: the list is gone.
  const symbol = Object.getOwnPropertySymbols(server).find((s) => s.description === 'http.server.connections');
  assert.ok(symbol, 'this Node keeps the list under Symbol(http.server.connections)');
  const list = server[symbol];
  delete server[symbol];
  t.after(() => (server[symbol] = list));
  const warnings = [];
  const logger = { error: () => {}, info: () => {}, debug: () => {}, warn: (_obj, msg) => warnings.push(msg) };
  const child = { connected: true, on: () => {}, removeListener: () => {}, send: () => assert.fail('nothing may be sent') };
  const listeners = [{ name: 'tcp/127.0.0.1/0', tracker }];
  const first = await moveConnections(listeners, child, { deadline: 100, maxDuration: 100, ackTimeout: 100, logger });
  const second = await moveConnections(listeners, child, { deadline: 100, maxDuration: 100, ackTimeout: 100, logger });
  assert.equal(first.moved, 0);
  assert.match(first.unsupported, /connections list/);
  assert.equal(first.left, 1, 'the connection stays for the drain');
  assert.equal(second.unsupported, first.unsupported);
  assert.equal(warnings.length, 1, 'logged once');
  assert.match(warnings[0], /drained instead of moved/);
});

test('a socket received over IPC reads at once; stopReading in the same tick keeps later bytes in the kernel (the supervisor relay)', async (t) => {
  // A relaying process: it stops reading the first socket it receives, not the second, and
  // reports how many bytes each has read when asked (after a full turn of its event loop).
  const internals = new URL('../dist/server-internals.js', import.meta.url).href;
  const code = `
    import { stopReading } from ${JSON.stringify(internals)};
    const sockets = [];
    process.on('message', (message, socket) => {
      if (message === 'check') return setImmediate(() => process.send(sockets.map((s) => s.bytesRead)));
      process.send({ stopped: sockets.length === 0 ? stopReading(socket) : false });
      sockets.push(socket);
    });`;
  const relay = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  t.after(() => relay.kill());
  const accepted = [];
  const server = net.createServer((socket) => accepted.push(socket));
  const port = await listen(t, server);
  const clients = [connect(t, port), connect(t, port)];
  await waitFor(() => accepted.length === 2, { what: 'both connections to be accepted' });
  const replies = [];
  relay.on('message', (message) => replies.push(message));
  for (const [i, socket] of accepted.entries()) {
    relay.send('socket', socket);
    await waitFor(() => replies.length === i + 1, { what: 'the relay to receive the socket' });
  }
  assert.deepEqual(replies, [{ stopped: true }, { stopped: false }]);
  for (const client of clients) client.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  const read = await waitFor(
    async () => {
      relay.send('check');
      const count = replies.length;
      await waitFor(() => replies.length > count, { what: 'the relay to answer' });
      const [stopped, reading] = replies.at(-1);
      return reading > 0 ? { stopped, reading } : undefined;
    },
    { what: 'the socket that was not stopped to read the request' },
  );
  assert.equal(read.stopped, 0, 'nothing read from the stopped socket: the request waits in the kernel for the replacement');
});

/**
 * A child that adopts the sockets sent to it and writes `<id>\n` on each, so that the client
 * at the other end can tell which message its fd came with. With FD_LIMIT it runs under that
 * `ulimit -n`, so that fds beyond it cannot arrive.
 */
function spawnReceiver(t, { fdLimit, serialization } = {}) {
  const code = `
    const kept = [];
    process.on('message', (message, socket) => {
      if (message === 'count') return process.send({ received: kept.length });
      kept.push(socket);
      socket.write(message.id + '\\n');
    });`;
  const args = ['--input-type=module', '-e', code];
  const child =
    fdLimit === undefined
      ? spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization })
      : spawn('/bin/sh', ['-c', `ulimit -n ${fdLimit} && exec "$0" "$@"`, process.execPath, ...args], {
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        });
  t.after(() => child.kill());
  return child;
}

/** `n` accepted server-side sockets and their clients, each client collecting what it reads. */
async function acceptedPairs(t, n) {
  const accepted = [];
  const server = net.createServer({ pauseOnConnect: true }, (socket) => accepted.push(socket));
  const port = await listen(t, server);
  const clients = Array.from({ length: n }, () => {
    const client = connect(t, port);
    client.text = '';
    client.setEncoding('utf8').on('data', (d) => (client.text += d));
    return client;
  });
  await waitFor(() => accepted.length === n, { what: `${n} connections to be accepted` });
  // Accepted in the order they connected? Not necessarily: pair them by port.
  const byPort = new Map(clients.map((c) => [c.localPort, c]));
  return accepted.map((socket) => ({ socket, client: byPort.get(socket.remotePort) }));
}

test("pipelinedHandleWriter writes many sockets without waiting for acks: each fd arrives with its own message, and Node's own send still works after", async (t) => {
  const n = 300;
  const child = spawnReceiver(t);
  const pairs = await acceptedPairs(t, n);
  const refused = [];
  const writer = pipelinedHandleWriter(child, (socket) => refused.push(socket));
  assert.ok(writer, 'this Node has what the pipelined writer needs');
  let written = 0;
  // All in one synchronous loop: Node's own send() would hold all but the first until its ack.
  for (const [id, { socket }] of pairs.entries())
    assert.equal(
      writer.write({ id }, socket, (error) => {
        assert.equal(error, undefined);
        written += 1;
      }),
      undefined,
    );
  await waitFor(() => written === n, { what: 'every message to be written' });
  for (const { socket } of pairs) socket.destroy(); // the child's copies keep the connections
  await waitFor(() => pairs.every(({ client }) => client.text !== ''), { what: 'every client to hear from the child' });
  for (const [id, { client }] of pairs.entries()) assert.equal(client.text, `${id}\n`, 'the fd came with its own message');
  assert.deepEqual(refused, []);
  writer.close();
  // Node's own queue was not disturbed by the acks of ours: a plain send of a socket still arrives.
  const [extra] = await acceptedPairs(t, 1);
  child.send({ id: 'plain' }, extra.socket);
  await waitFor(() => extra.client.text === 'plain\n', { what: "Node's own send to arrive" });
});

test("pipelinedHandleWriter: a socket whose fd could not arrive (the receiver's fd limit) is given back, in order, with Node's NACK", async (t) => {
  const n = 120;
  const child = spawnReceiver(t, { fdLimit: 60 });
  const pairs = await acceptedPairs(t, n);
  const refused = [];
  const writer = pipelinedHandleWriter(child, (socket) => refused.push(socket));
  for (const [id, { socket }] of pairs.entries()) writer.write({ id }, socket, () => {});
  const answers = [];
  child.on('message', (m) => answers.push(m));
  const received = await waitFor(
    async () => {
      const count = answers.length;
      child.send('count');
      await waitFor(() => answers.length > count, { what: 'the child to count' });
      const got = answers.at(-1).received;
      return got + refused.length === n ? got : undefined;
    },
    { what: 'every socket to be received or given back' },
  );
  assert.ok(refused.length > 0 && received > 0, `received ${received}, given back ${refused.length}`);
  // The ones given back never reached the child: their clients hear nothing from it.
  const givenBack = new Set(refused);
  for (const { socket, client } of pairs) if (givenBack.has(socket)) assert.equal(client.text, '');
  writer.close();
});

test('pipelinedHandleWriter declines what is not a JSON-framed Node IPC channel: the caller sends one at a time', (t) => {
  assert.equal(
    pipelinedHandleWriter({}, () => {}),
    undefined,
  );
  assert.equal(
    pipelinedHandleWriter(spawnReceiver(t, { serialization: 'advanced' }), () => {}),
    undefined,
  );
});

test('listenOnInheritedFd: a cluster worker listens on its own copy of an inherited TCP and unix socket, and the primary keeps its copy when the worker dies', async (t) => {
  const activate = '/usr/bin/systemd-socket-activate';
  assert.ok(existsSync(activate), `${activate} is missing: apt-get install systemd`);
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'grace-inherited-'));
  const socketPath = join(dir, 'app.sock');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const fixture = fileURLToPath(new URL('./fixtures/cluster-inherited.mjs', import.meta.url));
  const child = spawn(activate, ['-l', `127.0.0.1:${port}`, '-l', socketPath, '--', process.execPath, fixture], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = followJsonEvents(child);
  t.after(() => {
    // The primary (systemd-socket-activate exec'd it) takes its worker with it.
    child.kill('SIGKILL');
    for (const e of output.events) if (isAlive(e.pid)) process.kill(e.pid, 'SIGKILL');
    // A worker that never reported its pid may still hold the pipes: do not wait for it.
    child.stdout.destroy();
    child.stderr.destroy();
  });
  await waitFor(() => (output.stderr.match(/^Listening on/gm) ?? []).length === 2, {
    what: `systemd-socket-activate to listen: ${output.stderr}`,
  });
  // The first connection makes it exec the primary; the worker answers it.
  const first = await request({ port });
  const seen = new Set([first.json.pid]);
  for (let i = 0; i < 3; i++) {
    const worker = (await request({ socketPath, path: '/next' })).json.pid;
    assert.ok(seen.has(worker), 'TCP and unix are served by the same worker');
    await waitFor(() => !isAlive(worker), { what: `worker ${worker} to be killed` });
    // Connects made now wait in the backlog of the primary's copy: neither refused nor reset.
    const [tcp, unix] = await Promise.all([request({ port }), request({ socketPath })]);
    assert.equal(tcp.status, 200);
    assert.equal(unix.json.pid, tcp.json.pid);
    assert.ok(!seen.has(tcp.json.pid), 'a new worker serves');
    seen.add(tcp.json.pid);
  }
  assert.ok(existsSync(socketPath), 'the unix socket file is still there');
  assert.equal(output.stderr.includes('Error'), false, output.stderr);
});

/** A child serving `{pid}` on the listening socket it inherits at fd 3. */
function serveOnFd3(fd) {
  const code =
    "require('node:http').createServer((q, s) => s.end(JSON.stringify({ pid: process.pid }))).listen({ fd: 3 }, () => console.log('up'))";
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit', fd] });
  return { child, up: once(child.stdout, 'data') };
}

test('bindWithoutListening: a socket bound and never accepted on keeps the connects made while no process listens in its backlog (grace-restart run --listen)', async (t) => {
  const port = await freePort();
  const bound = bindWithoutListening('127.0.0.1', port);
  assert.equal(typeof bound?.fd, 'number', 'this Node has net._createServerHandle');
  t.after(() => bound.close());
  await assert.rejects(request({ port }), { code: 'ECONNREFUSED' }, 'bound, not listening: nobody accepts, not even this process');

  const first = serveOnFd3(bound.fd);
  await first.up;
  assert.equal((await request({ port })).json.pid, first.child.pid);
  first.child.kill('SIGKILL');
  await once(first.child, 'exit');
  // Nobody listens now, but the socket stays in LISTEN: this connect waits, and the next process answers it.
  const waiting = request({ port });
  const second = serveOnFd3(bound.fd);
  t.after(() => second.child.kill('SIGKILL'));
  assert.equal((await waiting).json.pid, second.child.pid);
});

test('bindWithoutListening: a Node without net._createServerHandle gets undefined (the supervisor then lets cluster bind)', (t) => {
  const original = net._createServerHandle;
  t.after(() => {
    net._createServerHandle = original;
  });
  delete net._createServerHandle;
  assert.equal(bindWithoutListening('127.0.0.1', 1), undefined);
});
