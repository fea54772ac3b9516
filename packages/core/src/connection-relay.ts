/**
 * Live connection handoff under `grace-restart run`, the supervisor's side. Workers only
 * have an IPC channel to the supervisor, so a retiring worker moves its idle keep-alive
 * sockets to the supervisor (connection-mover.ts over `process`), which forwards each one
 * with its message to the replacement (connection-handoff.ts adopts it there) and forwards
 * the replacement's ack back. The mover sends the next socket only after that ack, so at
 * most one socket per relay is ever on its way.
 *
 * The supervisor holds no relayed socket: it stops reading it at once, sends it on, and
 * closes its own copy as soon as the message carrying it is written. When the relay ends
 * (the replacement exited, the supervisor stops, a socket could not be sent on), the
 * retiring worker is told `relay-end` and drains what it still has, as without the relay.
 */
import type { Worker } from 'node:cluster';
import { Socket } from 'node:net';
import { CONNECTION_MESSAGE_KEY, readConnectionMessage, type ConnectionAck, type ConnectionMessage } from './connection-handoff.js';
import type { Logger } from './logger.js';
import { WORKER_MESSAGE_KEY } from './protocol.js';
import { stopReading } from './server-internals.js';
import type { SupervisorMessage } from './supervised.js';

/** A running relay from a retiring worker to its replacement. */
export interface ConnectionRelay {
  /** Stops relaying; the retiring worker drains what it still holds. Idempotent. */
  end(why: string): void;
  /** Connections the replacement adopted so far. */
  readonly relayed: number;
}

/**
 * Ids the replacement acks, unique in this supervisor: two retiring workers of one slot (a
 * crash restart beside the upgraded one) may relay to the same replacement with the same ids.
 */
let nextRelayId = 1;

const ignoreSendError = (): void => {
  // With a callback, a closed channel is reported here instead of as an 'error' event: the
  // worker is gone, and its exit is handled where it is watched.
};

/** Relays the connections `from` moves to `to`, until {@link ConnectionRelay.end} or `from` exits. */
export function relayConnections(from: Worker, to: Worker, logger: Logger): ConnectionRelay {
  /** Relay id → the mover's id, for the socket the replacement has not acked yet. */
  const inFlight = new Map<number, number>();
  let ended = false;
  let relayed = 0;

  const answer = (id: number, ok: boolean): void => {
    if (from.isConnected()) from.send({ [CONNECTION_MESSAGE_KEY]: { type: 'ack', id, ok } satisfies ConnectionAck }, undefined, ignoreSendError);
  };

  const onFromMessage = (message: unknown, handle: unknown): void => {
    const move = readConnectionMessage<ConnectionMessage>(message, 'connection');
    if (move === undefined) return;
    if (!(handle instanceof Socket)) return answer(move.id, false);
    // A socket received over IPC starts reading at once: stopped in this same tick, every byte
    // the client sends next stays in the kernel for the replacement instead of being read here.
    const reading = stopReading(handle);
    if (ended || !reading || !to.isConnected()) {
      // Nowhere to send it (a socket the worker sent before it heard relay-end): this one
      // idle connection is closed.
      handle.destroy();
      answer(move.id, false);
      end(reading ? 'the replacement is gone' : 'this Node cannot stop reading a received socket');
      return;
    }
    const id = nextRelayId++;
    inFlight.set(id, move.id);
    const forwarded: ConnectionMessage = { type: 'connection', id, listener: move.listener };
    // keepOpen, then close this copy once written: the message in the channel holds the fd
    // for the replacement. Without keepOpen Node keeps the copy until the replacement's own ack,
    // and never closes it if the replacement dies first: a connection open, unread, forever.
    to.send({ [CONNECTION_MESSAGE_KEY]: forwarded }, handle, { keepOpen: true }, (error) => {
      // Sent or not, this process is done with it; not sent, the connection is lost.
      handle.destroy();
      if (error === null || !inFlight.delete(id)) return;
      answer(move.id, false);
      end(`a connection could not be sent to the replacement: ${error.message}`);
    });
  };

  const onToMessage = (message: unknown): void => {
    const ack = readConnectionMessage<ConnectionAck>(message, 'ack');
    const original = ack === undefined ? undefined : inFlight.get(ack.id);
    if (ack === undefined || original === undefined) return;
    inFlight.delete(ack.id);
    if (ack.ok) relayed += 1;
    answer(original, ack.ok);
  };

  const onToExit = (): void => end('the replacement exited');

  const end = (why: string): void => {
    if (ended) return;
    ended = true;
    to.removeListener('message', onToMessage);
    to.removeListener('exit', onToExit);
    // The worker's ack for the socket in flight, if any, never comes: relay-end ends its wait.
    inFlight.clear();
    if (from.isConnected()) from.send({ [WORKER_MESSAGE_KEY]: { type: 'relay-end' } satisfies SupervisorMessage }, undefined, ignoreSendError);
    logger.info({ workerPid: from.process.pid, replacementPid: to.process.pid, relayed }, `stopped relaying connections (${why}): the rest drain`);
  };

  from.on('message', onFromMessage);
  to.on('message', onToMessage);
  to.once('exit', onToExit);
  // The listener on `from` stays after end(), so that a socket it still sends is closed, not leaked.
  from.once('exit', () => {
    from.removeListener('message', onFromMessage);
    to.removeListener('message', onToMessage);
    to.removeListener('exit', onToExit);
    ended = true;
  });

  return {
    end,
    get relayed() {
      return relayed;
    },
  };
}
