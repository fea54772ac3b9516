/**
 * Live connection handoff under `grace-restart run`, the supervisor's side. Workers only
 * have an IPC channel to the supervisor, so a retiring worker moves its idle keep-alive
 * sockets to the supervisor (connection-mover.ts over `process`), which forwards each one
 * with its message to the replacement (connection-handoff.ts adopts it there) and forwards
 * the replacement's acks back. Both the worker and the relay write many sockets at a time
 * where this Node allows it (server-internals.ts), the worker at the replacement's pace.
 *
 * The supervisor holds no relayed socket: it stops reading it at once, sends it on, and
 * closes its own copy as soon as the message carrying it is written. When the relay ends
 * (the replacement exited, the supervisor stops, a socket could not be sent on), the
 * retiring worker is told `relay-end` and drains what it still has, as without the relay.
 *
 * Each relayed socket's path (its bookkeeping is sockets-in-flight.ts):
 *
 * | event                               | the relay                                             | the worker is told |
 * |-------------------------------------|-------------------------------------------------------|--------------------|
 * | a socket arrives, relay running     | stops reading it, sends it on, closes its copy once written | (later)     |
 * | a socket arrives, relay ended       | closes it unread                                      | refused            |
 * | the replacement adopts / refuses it | forgets it                                            | adopted / refused  |
 * | Node's NACK (the fd never arrived)  | forgets it                                            | refused            |
 * | the write fails                     | forgets it, ends the relay                            | refused, relay-end |
 * | the replacement exits unanswered    | forgets it, ends the relay                            | refused, relay-end |
 */
import type { Worker } from 'node:cluster';
import { Socket } from 'node:net';
import {
  CONNECTION_MESSAGE_KEY,
  readConnectionAcks,
  readConnectionMessage,
  type ConnectionAcks,
  type ConnectionMessage,
} from './connection-handoff.js';
import type { Logger } from './logger.js';
import { WORKER_MESSAGE_KEY } from './protocol.js';
import { pipelinedHandleWriter, stopReading } from './server-internals.js';
import { SocketsInFlight, type Flight } from './sockets-in-flight.js';
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
const relayId = (): number => nextRelayId++;

const ignoreSendError = (): void => {
  // With a callback, a closed channel is reported here instead of as an 'error' event: the
  // worker is gone, and its exit is handled where it is watched.
};

/** Relays the connections `from` moves to `to`, until {@link ConnectionRelay.end} or `from` exits. */
export function relayConnections(from: Worker, to: Worker, logger: Logger): ConnectionRelay {
  return new Relay(from, to, logger);
}

class Relay implements ConnectionRelay {
  readonly #from: Worker;
  readonly #to: Worker;
  readonly #logger: Logger;
  /** The sockets sent on and not answered by the replacement, each with the worker's id for it. */
  readonly #flights = new SocketsInFlight<number>(relayId);
  readonly #writer: ReturnType<typeof pipelinedHandleWriter>;
  #ended = false;
  #relayed = 0;

  constructor(from: Worker, to: Worker, logger: Logger) {
    this.#from = from;
    this.#to = to;
    this.#logger = logger;
    this.#writer = pipelinedHandleWriter(to.process, (socket) => {
      const flight = this.#flights.takeSocket(socket);
      if (flight !== undefined) this.#refuse([flight]);
    });
    from.on('message', this.#onFromMessage);
    to.on('message', this.#onToMessage);
    to.once('exit', this.#onToExit);
    // The listener on `from` stays after end(), so that a socket it still sends is closed, not leaked.
    from.once('exit', () => {
      from.removeListener('message', this.#onFromMessage);
      to.removeListener('message', this.#onToMessage);
      to.removeListener('exit', this.#onToExit);
      this.#ended = true;
    });
  }

  get relayed(): number {
    return this.#relayed;
  }

  readonly end = (why: string): void => {
    if (this.#ended) return;
    this.#ended = true;
    const to = this.#to;
    to.removeListener('message', this.#onToMessage);
    to.removeListener('exit', this.#onToExit);
    to.process.removeListener('disconnect', this.#onToExit);
    this.#writer?.close();
    // The worker's acks for the sockets in flight, if any, never come: relay-end ends its wait.
    this.#flights.takeAll();
    if (this.#from.isConnected()) {
      this.#from.send({ [WORKER_MESSAGE_KEY]: { type: 'relay-end' } satisfies SupervisorMessage }, undefined, ignoreSendError);
    }
    const fields = { workerPid: this.#from.process.pid, replacementPid: to.process.pid, relayed: this.#relayed };
    this.#logger.info(fields, `stopped relaying connections (${why}): the rest drain`);
  };

  #answer(adopted: readonly number[], refused: readonly number[]): void {
    const acks: ConnectionAcks = { type: 'acks', adopted: [...adopted], refused: [...refused] };
    if (this.#from.isConnected()) this.#from.send({ [CONNECTION_MESSAGE_KEY]: acks }, undefined, ignoreSendError);
  }

  #refuse(refused: readonly Flight<number>[]): void {
    if (refused.length > 0) {
      this.#answer(
        [],
        refused.map((flight) => flight.data),
      );
    }
  }

  readonly #onFromMessage = (message: unknown, handle: unknown): void => {
    const move = readConnectionMessage(message);
    if (move === undefined) return;
    if (!(handle instanceof Socket)) return this.#answer([], [move.id]);
    // A socket received over IPC starts reading at once: stopped in this same tick, every byte
    // the client sends next stays in the kernel for the replacement instead of being read here.
    const reading = stopReading(handle);
    if (this.#ended || !reading || !this.#to.isConnected()) {
      // Nowhere to send it (a socket the worker sent before it heard relay-end): refused
      // unread, the worker's own copy serves it again.
      handle.destroy();
      this.#answer([], [move.id]);
      this.end(reading ? 'the replacement is gone' : 'this Node cannot stop reading a received socket');
      return;
    }
    this.#sendOn(this.#flights.add(handle, move.id), move.listener);
  };

  #sendOn(flight: Flight<number>, listener: string): void {
    // This process's copy is closed once the message is written: the message in the channel
    // holds the fd for the replacement. (Node's own send() without keepOpen would keep the copy
    // until the replacement's own ack, and never close it if the replacement died first.)
    this.#flights.release(flight);
    const forwarded = { [CONNECTION_MESSAGE_KEY]: { type: 'connection', id: flight.id, listener } satisfies ConnectionMessage };
    const onWritten = (error: Error | string | null | undefined): void => {
      this.#flights.written(flight);
      if (error === null || error === undefined || this.#flights.take(flight.id) === undefined) return;
      // Not sent: the worker's copy is still whole, and serves it again.
      this.#refuse([flight]);
      this.end(`a connection could not be sent to the replacement: ${String(error)}`);
    };
    if (this.#writer === undefined) return void this.#to.send(forwarded, flight.socket, { keepOpen: true }, onWritten);
    const error = this.#writer.write(forwarded, flight.socket, onWritten);
    if (error !== undefined) onWritten(error);
  }

  readonly #onToMessage = (message: unknown): void => {
    const acks = readConnectionAcks(message);
    if (acks === undefined) return;
    const { adopted, refused } = this.#flights.answer(acks);
    this.#relayed += adopted.length;
    if (adopted.length + refused.length > 0) {
      this.#answer(
        adopted.map((flight) => flight.data),
        refused.map((flight) => flight.data),
      );
    }
  };

  // The replacement is gone once it has exited and every answer it wrote has been read (its
  // channel's 'disconnect'): a socket it has not answered by then was never adopted (it answers
  // before it reads a byte), and the worker still holds it, so the worker serves it again.
  readonly #onToExit = (): void => {
    if (this.#to.isConnected()) return void this.#to.process.once('disconnect', this.#onToExit);
    this.#refuse(this.#flights.takeAll());
    this.end('the replacement exited');
  };
}
