// The supervisor's relay (connection-relay.ts) in-process, against two fake cluster workers:
// real sockets, channels that record what is sent and answer as the test says. Each test pins
// down one row of the relay's table (the file comment), and fails when that row's code is
// taken out. The relay under real processes is packages/cli/test/relay.test.mjs.
import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import net from 'node:net';
import { test } from 'node:test';
import { waitFor } from '../../../test/helpers/process.mjs';
import { CONNECTION_MESSAGE_KEY } from '../dist/connection-handoff.js';
import { relayConnections } from '../dist/connection-relay.js';

const quiet = { error: () => {}, warn: () => {}, info: () => {}, debug: () => {} };

/** A cluster Worker as the relay sees it: a channel that records what is sent on it. */
class FakeWorker extends EventEmitter {
  connected = true;
  process = Object.assign(new EventEmitter(), { pid: 0 });
  /** [{ message, handle }] in the order sent. */
  sent = [];
  /** Why the next write of a socket fails, if it should. */
  failNextWrite;
  isConnected() {
    return this.connected;
  }
  send(message, handle, options, callback) {
    if (typeof options === 'function') callback = options;
    this.sent.push({ message, handle });
    const error = handle === undefined ? null : this.failNextWrite;
    this.failNextWrite = undefined;
    setImmediate(() => callback?.(error ?? null));
    return true;
  }
  /** The connection messages sent, as { id, listener, socket }. */
  connections() {
    return this.sent
      .filter((s) => s.message[CONNECTION_MESSAGE_KEY]?.type === 'connection')
      .map((s) => ({ ...s.message[CONNECTION_MESSAGE_KEY], socket: s.handle }));
  }
  /** The acks sent, merged: { adopted: [...], refused: [...] }. */
  acks() {
    const all = this.sent.map((s) => s.message[CONNECTION_MESSAGE_KEY]).filter((m) => m?.type === 'acks');
    return { adopted: all.flatMap((a) => a.adopted), refused: all.flatMap((a) => a.refused) };
  }
  relayEnded() {
    return this.sent.some((s) => s.message['grace-restart']?.type === 'relay-end');
  }
  answer(adopted, refused = []) {
    this.emit('message', { [CONNECTION_MESSAGE_KEY]: { type: 'acks', adopted, refused } });
  }
  exit() {
    this.connected = false;
    this.emit('exit', 0, null);
    this.process.emit('disconnect');
  }
}

/** `count` accepted sockets (the supervisor's copies, as received) and their clients. */
async function acceptedSockets(t, count) {
  const accepted = [];
  const server = net.createServer((socket) => accepted.push(socket));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const clients = [];
  for (let i = 0; i < count; i++) {
    const client = net.connect(server.address().port, '127.0.0.1');
    client.on('error', () => {});
    clients.push(client);
  }
  await waitFor(() => accepted.length === count, { what: 'the sockets to be accepted' });
  t.after(() => {
    for (const socket of [...accepted, ...clients]) socket.destroy();
    server.close();
  });
  return { accepted, clients };
}

/** The retiring worker moves `socket` under its own id `id`. */
const move = (from, id, socket) =>
  from.emit('message', { [CONNECTION_MESSAGE_KEY]: { type: 'connection', id, listener: 'tcp/x' } }, socket);

test("a relayed socket is not read here, is closed here once written, and its ack reaches the worker under the worker's id", {
  timeout: 30_000,
}, async (t) => {
  const { accepted, clients } = await acceptedSockets(t, 1);
  const from = new FakeWorker();
  const to = new FakeWorker();
  const relay = relayConnections(from, to, quiet);
  move(from, 7, accepted[0]);
  const [sent] = to.connections();
  assert.equal(sent.socket, accepted[0]);
  assert.equal(sent.listener, 'tcp/x');
  clients[0].write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  await waitFor(() => accepted[0].destroyed, { what: "the relay's copy to be closed once written" });
  assert.equal(accepted[0].bytesRead, 0, 'the request waits in the kernel for the replacement');
  to.answer([sent.id]);
  assert.deepEqual(from.acks(), { adopted: [7], refused: [] });
  assert.equal(relay.relayed, 1);
  relay.end('test');
});

test('refused by the replacement: the worker is told refused, under its own id', { timeout: 30_000 }, async (t) => {
  const { accepted } = await acceptedSockets(t, 2);
  const from = new FakeWorker();
  const to = new FakeWorker();
  const relay = relayConnections(from, to, quiet);
  move(from, 3, accepted[0]);
  move(from, 4, accepted[1]);
  const [first, second] = to.connections();
  to.answer([second.id], [first.id]);
  assert.deepEqual(from.acks(), { adopted: [4], refused: [3] });
  to.answer([first.id]); // a late or repeated answer changes nothing
  assert.deepEqual(from.acks(), { adopted: [4], refused: [3] });
  relay.end('test');
});

test('the replacement exits with sockets unanswered: each is refused to the worker, and the relay ends', { timeout: 30_000 }, async (t) => {
  const { accepted } = await acceptedSockets(t, 2);
  const from = new FakeWorker();
  const to = new FakeWorker();
  relayConnections(from, to, quiet);
  move(from, 1, accepted[0]);
  move(from, 2, accepted[1]);
  to.answer([to.connections()[0].id]);
  to.exit();
  assert.deepEqual(from.acks(), { adopted: [1], refused: [2] });
  assert.ok(from.relayEnded(), 'the worker hears relay-end');
});

test('a socket that arrives after the relay ended is closed here unread and refused, never sent on', { timeout: 30_000 }, async (t) => {
  const { accepted } = await acceptedSockets(t, 1);
  const from = new FakeWorker();
  const to = new FakeWorker();
  const relay = relayConnections(from, to, quiet);
  relay.end('test');
  move(from, 9, accepted[0]);
  assert.equal(to.connections().length, 0);
  assert.ok(accepted[0].destroyed);
  assert.deepEqual(from.acks(), { adopted: [], refused: [9] });
});

test('a socket that cannot be written to the replacement is refused to the worker, and the relay ends', { timeout: 30_000 }, async (t) => {
  const { accepted } = await acceptedSockets(t, 1);
  const from = new FakeWorker();
  const to = new FakeWorker();
  relayConnections(from, to, quiet);
  to.failNextWrite = new Error('EPIPE');
  move(from, 5, accepted[0]);
  await waitFor(() => from.relayEnded(), { what: 'the relay to end' });
  assert.deepEqual(from.acks(), { adopted: [], refused: [5] });
});

test('two workers relaying to one replacement get distinct ids, and each ack goes back to its own worker', {
  timeout: 30_000,
}, async (t) => {
  const { accepted } = await acceptedSockets(t, 2);
  const to = new FakeWorker();
  const a = new FakeWorker();
  const b = new FakeWorker();
  const relays = [relayConnections(a, to, quiet), relayConnections(b, to, quiet)];
  move(a, 1, accepted[0]);
  move(b, 1, accepted[1]);
  const [first, second] = to.connections();
  assert.notEqual(first.id, second.id);
  to.answer([second.id]);
  assert.deepEqual(a.acks(), { adopted: [], refused: [] });
  assert.deepEqual(b.acks(), { adopted: [1], refused: [] });
  for (const relay of relays) relay.end('test');
});
