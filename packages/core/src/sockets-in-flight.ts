/**
 * The sockets on their way to another process and not answered yet: the bookkeeping shared by
 * the connection move (connection-mover.ts, old process → successor or supervisor) and the
 * supervisor's relay (connection-relay.ts, supervisor → replacement).
 *
 * A socket in flight goes through two stages and leaves by one of three doors:
 *
 * | stage     | means                                                    | on answer `ok`  | on answer refused / NACK / channel gone |
 * |-----------|----------------------------------------------------------|-----------------|------------------------------------------|
 * | `sending` | its message (and the fd with it) is queued here          | adopted         | back: still whole in the sender          |
 * | `sent`    | the message is in the kernel, or in the receiver's queue | adopted         | back                                     |
 *
 * Whatever the door, the flight leaves this object (`answer`, `take`, `takeSocket`, `takeAll`).
 * The sender's copy of the fd must outlive the write (the message needs it): `release` closes
 * the copy at once when the message is written, and when it is written otherwise.
 */
import type { Socket } from 'node:net';

/** One socket sent and not answered. `T` is what the sender keeps beside it. */
export interface Flight<T> {
  /** The id its message carries; the receiver's answer names it. */
  readonly id: number;
  readonly socket: Socket;
  readonly data: T;
  /** When it was sent (ms, performance.now()). */
  readonly sentAt: number;
  /** See the file comment. */
  stage: 'sending' | 'sent';
  /** This process is done with its copy: closed as soon as the message is written. */
  released: boolean;
}

/** One answer of the receiver: the socket with this id was adopted (`ok`) or refused unread. */
export interface FlightAnswer {
  id: number;
  ok: boolean;
}

/** The flights one batch of answers settled. */
export interface Answered<T> {
  adopted: Flight<T>[];
  refused: Flight<T>[];
  /** When the oldest of them was sent (Infinity when the answers named none in flight). */
  oldestSentAt: number;
}

export class SocketsInFlight<T> {
  readonly #byId = new Map<number, Flight<T>>();
  readonly #nextId: () => number;
  #unwritten = 0;
  #allWritten: (() => void) | undefined;

  /** `nextId` hands out the ids messages carry (unique where the receiver needs them to be). */
  constructor(nextId: () => number) {
    this.#nextId = nextId;
  }

  /** Sockets in flight. */
  get size(): number {
    return this.#byId.size;
  }

  /** Messages (with their fds) not in the kernel yet, answered or not: the channel must stay open for them. */
  get unwritten(): number {
    return this.#unwritten;
  }

  /** Records `socket` as sent now, its message not written yet. */
  add(socket: Socket, data: T): Flight<T> {
    const flight: Flight<T> = { id: this.#nextId(), socket, data, sentAt: performance.now(), stage: 'sending', released: false };
    this.#byId.set(flight.id, flight);
    this.#unwritten += 1;
    return flight;
  }

  /**
   * The message carrying `flight` left this process (or failed to: the caller decides what
   * that means). Closes the copy if it was released meanwhile.
   */
  written(flight: Flight<T>): void {
    if (flight.stage === 'sent') return;
    flight.stage = 'sent';
    this.#unwritten -= 1;
    if (flight.released) flight.socket.destroy();
    if (this.#unwritten === 0) this.#allWritten?.();
  }

  /** Whether `flight` is still unanswered. */
  has(flight: Flight<T>): boolean {
    return this.#byId.get(flight.id) === flight;
  }

  /** Settles the flights these answers name; answers naming no flight (late, or twice) are ignored. */
  answer(answers: readonly FlightAnswer[]): Answered<T> {
    const answered: Answered<T> = { adopted: [], refused: [], oldestSentAt: Infinity };
    for (const { id, ok } of answers) {
      const flight = this.take(id);
      if (flight === undefined) continue;
      answered.oldestSentAt = Math.min(answered.oldestSentAt, flight.sentAt);
      (ok ? answered.adopted : answered.refused).push(flight);
    }
    return answered;
  }

  /** Removes and returns the flight with this id, if unanswered. */
  take(id: number): Flight<T> | undefined {
    const flight = this.#byId.get(id);
    this.#byId.delete(id);
    return flight;
  }

  /** Removes and returns the flight carrying `socket`, if unanswered (Node's NACK names the socket, not the id). */
  takeSocket(socket: Socket): Flight<T> | undefined {
    for (const flight of this.#byId.values()) if (flight.socket === socket) return this.take(flight.id);
    return undefined;
  }

  /** Removes and returns every unanswered flight. */
  takeAll(): Flight<T>[] {
    const all = [...this.#byId.values()];
    this.#byId.clear();
    return all;
  }

  /** Closes this process's copy of `flight`'s socket: now if its message is written, else once it is. */
  release(flight: Flight<T>): void {
    flight.released = true;
    if (flight.stage === 'sent') flight.socket.destroy();
  }

  /** Resolves once every message is written, or after `timeoutMs` (a receiver that stopped reading). */
  whenWritten(timeoutMs: number): Promise<void> {
    if (this.#unwritten === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.#allWritten = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}
