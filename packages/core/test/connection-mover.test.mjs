// The connection move (connection-mover.ts) in-process, against a fake MoveChannel: real
// sockets of a real http server, a channel that records what is sent and answers as the test
// says. Each test pins down one rule of a connection's path (core's README, "The connection
// move, one connection at a time"), and fails when that rule's check is taken out.
import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { test } from 'node:test';
import { waitFor } from '../../../test/helpers/process.mjs';
import { CONNECTION_MESSAGE_KEY } from '../dist/connection-handoff.js';
import { moveConnections } from '../dist/connection-mover.js';
import { ConnectionTracker } from '../dist/drain.js';

const quiet = { error: () => {}, warn: () => {}, info: () => {}, debug: () => {} };

/** A MoveChannel that records each socket sent and answers only when told. */
class FakeChannel extends EventEmitter {
  connected = true;
  /** [{ id, socket }] in the order sent. */
  sent = [];
  send(message, socket, _options, callback) {
    this.sent.push({ id: message[CONNECTION_MESSAGE_KEY].id, socket });
    setImmediate(() => callback(null));
    return true;
  }
  answer(ids, ok = true) {
    this.emit('message', { [CONNECTION_MESSAGE_KEY]: { type: 'acks', adopted: ok ? ids : [], refused: ok ? [] : ids } });
  }
  disconnect() {
    this.connected = false;
    this.emit('disconnect');
  }
}

/** An http server (its sockets tracked as grace.ts tracks them) and `count` keep-alive clients that each had one answer. */
async function serverWithClients(t, count) {
  const serverSockets = [];
  const server = http.createServer((req, res) => {
    if (!serverSockets.includes(req.socket)) serverSockets.push(req.socket);
    res.end(`pid ${process.pid}`);
  });
  // No keep-alive timeout: a socket closed here was closed by the move, not by http's timer.
  server.keepAliveTimeout = 0;
  const tracker = new ConnectionTracker(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    tracker.dispose();
    server.closeAllConnections();
    server.close();
  });
  const clients = [];
  for (let i = 0; i < count; i++) {
    const client = net.connect(server.address().port, '127.0.0.1');
    client.on('error', () => {});
    t.after(() => client.destroy());
    await once(client, 'connect');
    await exchange(client);
    clients.push(client);
  }
  const listeners = [{ name: 'tcp/127.0.0.1/0', tracker }];
  return { server, tracker, listeners, clients, serverSockets };
}

/** Writes `request` (a whole GET by default) on `client` and resolves with the answer's text. */
function exchange(client, request = 'GET / HTTP/1.1\r\nHost: x\r\n\r\n') {
  return new Promise((resolve) => {
    let text = '';
    const onData = (d) => {
      text += d;
      if (/\r\n\r\n.*pid \d+/s.test(text)) {
        client.removeListener('data', onData);
        resolve(text);
      }
    };
    client.setEncoding('utf8');
    client.on('data', onData);
    if (request) client.write(request);
  });
}

const settings = (extra = {}) => ({ deadline: 5_000, maxDuration: 10_000, ackTimeout: 5_000, logger: quiet, ...extra });

test('a socket that begins a request while it waits its turn is not sent until that request is answered here (the check is made at the send)', {
  timeout: 30_000,
}, async (t) => {
  const { listeners, clients, serverSockets } = await serverWithClients(t, 3);
  const channel = new FakeChannel();
  const moving = moveConnections(listeners, channel, settings());
  // One at a time through a channel Node frames itself (no pipelined writer for a fake one).
  await waitFor(() => channel.sent.length === 1, { what: 'the first socket to be sent' });
  const third = serverSockets[2];
  assert.ok(!channel.sent.some((s) => s.socket === third));
  // Its client starts a request: half a head, read and parsed here.
  const answered = exchange(clients[2], 'GET / HTTP/1.1\r\nHo');
  const before = third.bytesRead;
  await waitFor(() => third.bytesRead > before, { what: 'the half request to be read' });
  channel.answer([channel.sent[0].id]);
  await waitFor(() => channel.sent.length === 2, { what: 'the second socket to be sent' });
  channel.answer([channel.sent[1].id]);
  // Its turn has come: it is in the middle of a request, so it stays.
  assert.equal(channel.sent.length, 2, 'a socket inside a request is not sent');
  clients[2].write('st: x\r\n\r\n');
  assert.match(await answered, /^HTTP\/1\.1 200/, 'the request is answered here, whole');
  await waitFor(() => channel.sent.length === 3, { what: 'the third socket to be sent once at rest again' });
  assert.equal(channel.sent[2].socket, third);
  channel.answer([channel.sent[2].id]);
  const result = await moving;
  assert.equal(result.moved, 3);
});

test('a socket with a resume scheduled is not sent in that tick, and is sent once the resume has run', { timeout: 30_000 }, async (t) => {
  const { listeners, serverSockets } = await serverWithClients(t, 2);
  const channel = new FakeChannel();
  const moving = moveConnections(listeners, channel, settings());
  await waitFor(() => channel.sent.length === 1, { what: 'the first socket to be sent' });
  const second = serverSockets.find((s) => s !== channel.sent[0].socket);
  // As http's own 'connection' listener and a paused upload's end do: a resume for the next tick.
  second.pause();
  second.resume();
  // The answer sends the next socket in this same tick, if it may go.
  channel.answer([channel.sent[0].id]);
  assert.equal(channel.sent.length, 1, 'not sent with a resume pending');
  await waitFor(() => channel.sent.length === 2, { what: 'the socket to be sent after its resume ran' });
  channel.answer([channel.sent[1].id]);
  assert.equal((await moving).moved, 2);
});

test('a connection accepted while the intake is open moves, and nothing it sends is read here after', { timeout: 30_000 }, async (t) => {
  const { server, listeners } = await serverWithClients(t, 0);
  const channel = new FakeChannel();
  let closeIntake;
  const intake = new Promise((resolve) => (closeIntake = resolve));
  const moving = moveConnections(listeners, channel, settings({ intake }));
  const client = net.connect(server.address().port, '127.0.0.1');
  client.on('error', () => {});
  t.after(() => client.destroy());
  await waitFor(() => channel.sent.length === 1, { what: 'the new connection to be sent' });
  const { socket } = channel.sent[0];
  client.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  // A full round trip on another connection, served here while the first is on its way (one
  // at a time): this process has polled since the write.
  const other = net.connect(server.address().port, '127.0.0.1');
  other.on('error', () => {});
  t.after(() => other.destroy());
  await once(other, 'connect');
  assert.match(await exchange(other), /^HTTP\/1\.1 200/);
  assert.equal(socket.bytesRead, 0, 'the request waits in the kernel for the successor');
  channel.answer([channel.sent[0].id]);
  await waitFor(() => channel.sent.length === 2, { what: 'the other connection to be sent, at rest after its answer' });
  channel.answer([channel.sent[1].id]);
  closeIntake();
  assert.equal((await moving).moved, 2);
});

test('refused unread: the socket comes back, reads again and is served here, and is never sent twice', { timeout: 30_000 }, async (t) => {
  const { listeners, clients, serverSockets } = await serverWithClients(t, 1);
  const channel = new FakeChannel();
  const moving = moveConnections(listeners, channel, settings({ deadline: 300 }));
  await waitFor(() => channel.sent.length === 1, { what: 'the socket to be sent' });
  channel.answer([channel.sent[0].id], false);
  assert.match(await exchange(clients[0]), /^HTTP\/1\.1 200/, 'served here after it came back');
  const result = await moving;
  assert.equal(channel.sent.length, 1, 'never sent twice');
  assert.deepEqual({ moved: result.moved, refused: result.refused, left: result.left }, { moved: 0, refused: 1, left: 1 });
  assert.equal(serverSockets[0].destroyed, false);
});

test('adopted: this process closes its copy, and the successor owns the connection', { timeout: 30_000 }, async (t) => {
  const { listeners, serverSockets } = await serverWithClients(t, 2);
  const channel = new FakeChannel();
  const moving = moveConnections(listeners, channel, settings());
  for (let i = 0; i < 2; i++) {
    await waitFor(() => channel.sent.length === i + 1, { what: `socket ${i + 1} to be sent` });
    channel.answer([channel.sent[i].id]);
  }
  const result = await moving;
  assert.equal(result.moved, 2);
  await waitFor(() => serverSockets.every((s) => s.destroyed), { what: "this process's copies to be closed" });
  assert.equal(listeners[0].tracker.httpSockets.size, 0, 'no longer tracked here');
});

test('the channel closes with sockets unanswered: straight to the successor, they come back and are served here', {
  timeout: 30_000,
}, async (t) => {
  const { listeners, clients } = await serverWithClients(t, 1);
  const channel = new FakeChannel();
  const moving = moveConnections(listeners, channel, settings({ unansweredComeBack: true }));
  await waitFor(() => channel.sent.length === 1, { what: 'the socket to be sent' });
  channel.disconnect();
  const result = await moving;
  assert.equal(result.moved, 0);
  assert.match(await exchange(clients[0]), /^HTTP\/1\.1 200/, 'served here again');
});

test('a slow start sends the k-th of n connections no sooner than k/n of its time, and serves the rest here meanwhile', {
  timeout: 30_000,
}, async (t) => {
  const count = 3;
  // Long enough that the exchanges below end, even on a loaded machine, before the second turn (2 s).
  const slowStart = 6_000;
  const { listeners, clients, serverSockets } = await serverWithClients(t, count);
  const channel = new FakeChannel();
  const sentAt = [];
  const send = channel.send.bind(channel);
  channel.send = (message, socket, options, callback) => {
    sentAt.push(performance.now());
    // Adopted at once: only the slow start holds the next one back.
    setImmediate(() => channel.answer([message[CONNECTION_MESSAGE_KEY].id]));
    return send(message, socket, options, callback);
  };
  const started = performance.now();
  const moving = moveConnections(listeners, channel, settings({ slowStart }));
  await waitFor(() => channel.sent.length >= 1, { what: 'the first socket to be sent' });
  // Adopted, this process's copy is closed, and in that same tick the move sends whatever may go.
  await waitFor(() => channel.sent[0].socket.destroyed, { what: 'the first socket to be adopted' });
  assert.equal(channel.sent.length, 1, 'the others wait their turn');
  const waiting = clients.filter((_, i) => serverSockets[i] !== channel.sent[0].socket);
  for (const answer of await Promise.all(waiting.map((c) => exchange(c))))
    assert.match(answer, /^HTTP\/1\.1 200/, 'a connection waiting its turn is served here');
  assert.equal(channel.sent.length, 1, 'the others still wait their turn');
  const result = await moving;
  assert.equal(result.moved, count);
  // Each send is allowed once ceil(n · elapsed / slowStart) reaches its place; a timer is never early.
  for (const [k, at] of sentAt.entries())
    assert.ok(at - started >= (k * slowStart) / count - 1, `send ${k} at ${Math.round(at - started)} ms`);
});
