// The bookkeeping of sockets in flight (sockets-in-flight.ts), shared by the move and the relay:
// the copy of a socket is never closed before its message is written, answers settle each
// flight once, and the wait for writes ends.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SocketsInFlight } from '../dist/sockets-in-flight.js';

/** Stands for a socket: the bookkeeping only ever closes it. */
const fakeSocket = () => ({
  destroyed: false,
  destroy() {
    this.destroyed = true;
  },
});
const counter = () => {
  let n = 1;
  return () => n++;
};

test('released before its message is written, a copy is closed only once it is written', () => {
  const flights = new SocketsInFlight(counter());
  const socket = fakeSocket();
  const flight = flights.add(socket, 'a');
  flights.release(flight);
  assert.equal(socket.destroyed, false, 'the message still needs the fd');
  flights.written(flight);
  assert.equal(socket.destroyed, true);
});

test('released after its message is written, a copy is closed at once', () => {
  const flights = new SocketsInFlight(counter());
  const socket = fakeSocket();
  const flight = flights.add(socket, 'a');
  flights.written(flight);
  assert.equal(socket.destroyed, false, 'kept until told');
  flights.release(flight);
  assert.equal(socket.destroyed, true);
});

test('answers settle each flight once, by id; unknown and repeated ids are ignored', () => {
  const flights = new SocketsInFlight(counter());
  const [a, b, c] = ['a', 'b', 'c'].map((data) => flights.add(fakeSocket(), data));
  const first = flights.answer([
    { id: a.id, ok: true },
    { id: b.id, ok: false },
    { id: 99, ok: true },
  ]);
  assert.deepEqual(
    first.adopted.map((f) => f.data),
    ['a'],
  );
  assert.deepEqual(
    first.refused.map((f) => f.data),
    ['b'],
  );
  assert.equal(first.oldestSentAt, a.sentAt);
  const again = flights.answer([{ id: a.id, ok: true }]);
  assert.deepEqual([again.adopted.length, again.refused.length, again.oldestSentAt], [0, 0, Infinity]);
  assert.equal(flights.size, 1);
  assert.equal(flights.takeSocket(c.socket), c, "Node's NACK names the socket");
  assert.equal(flights.size, 0);
});

test('the wait for writes ends when the last message is written, answered or not', async () => {
  const flights = new SocketsInFlight(counter());
  const a = flights.add(fakeSocket(), 'a');
  const b = flights.add(fakeSocket(), 'b');
  flights.takeAll();
  let done = false;
  const waiting = flights.whenWritten(60_000).then(() => (done = true));
  flights.written(a);
  flights.written(a); // twice: counted once
  await new Promise(setImmediate);
  assert.equal(done, false, 'one message is still queued');
  flights.written(b);
  await waiting;
  assert.equal(flights.unwritten, 0);
});
