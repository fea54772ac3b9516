/**
 * Live connection handoff, the old process's side: as soon as its successor is ready, each
 * plain HTTP/1 keep-alive connection moves to the successor at its next request boundary,
 * so the client keeps its TCP connection and never has to reconnect. The successor's side
 * is connection-handoff.ts.
 *
 * The move starts while this process still accepts (the successor's probation, grace.ts):
 * a connection accepted then moves at once, before it is read from. Until the intake closes
 * the move does not end for want of sockets, and its deadlines start only then.
 *
 * A socket moves only when nothing of it lives in this process any more: no response
 * attached or queued, nothing waiting to be written (in the stream or in libuv), nothing
 * read and unparsed, not paused by http, not ending, no resume scheduled, and its parser
 * between two messages (or no byte ever received); checked when it is sent, not when it
 * was picked. In the same tick reading stops (`readStop`) and stays stopped (server-internals'
 * stopReading holds the handle: a resume already scheduled cannot start it again), and the
 * socket is sent: whatever the client sends next stays in the kernel until the successor
 * reads it. Each socket is acknowledged by the successor; this process closes its copy of
 * the fd on the ack (or, unacknowledged, when the move ends: the successor died, say). Each
 * connection's path through all this is the table in core's README.
 *
 * The move is paced by the successor (adoption-pace.ts): only as many sockets are on their way
 * as it adopts within a few milliseconds, and the rest are served here meanwhile. And by time
 * (`slowStart`): a cold successor takes the load as its JIT warms, not all at once.
 *
 * The move itself runs in one of three phases; the intake (whether the servers still accept) is
 * beside them, since a move can be told to finish while the servers still accept:
 *
 * | phase       | sends | leaves it                                                                   |
 * |-------------|-------|-----------------------------------------------------------------------------|
 * | `sending`   | yes   | → `finishing`: aborted (the successor died, this process serves again)       |
 * |             |       | → `done`: intake closed and nothing left here or in flight; the deadline     |
 * |             |       |   (no socket moved for `deadline`), the cap (`maxDuration`), an ack timeout, |
 * |             |       |   the channel gone, a send failed                                           |
 * | `finishing` | no    | → `done`: every socket in flight answered; or as `sending` does               |
 * | `done`      | no    | (sockets still in flight are closed here: the successor may have them)       |
 *
 * Each socket in flight is in sockets-in-flight.ts; which socket may go, in sockets-at-rest.ts.
 *
 * TLS, HTTP/2 and upgraded sockets keep their state in this process and never move; nor
 * does a socket that is still busy at the deadline: drain.ts handles them as before.
 */
import type { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { AdoptionPace, MOVE_WINDOW } from './adoption-pace.js';
import { CONNECTION_MESSAGE_KEY, readConnectionAcks, type ConnectionMessage } from './connection-handoff.js';
import type { Logger } from './logger.js';
import {
  missingMoveInternals,
  pendingResponse,
  pipelinedHandleWriter,
  resumeReading,
  stopReading,
  type HandleWriter,
} from './server-internals.js';
import { SocketsAtRest, type MovableListener } from './sockets-at-rest.js';
import { SocketsInFlight, type Flight, type FlightAnswer } from './sockets-in-flight.js';

export type { MovableListener } from './sockets-at-rest.js';

/**
 * The IPC channel the sockets leave by: the successor's ChildProcess in self-upgrade mode, or,
 * in a worker of `grace-restart run`, `process` (the supervisor relays to the replacement,
 * connection-relay.ts). Acks come back on its 'message'.
 */
export interface MoveChannel {
  readonly connected: boolean;
  /**
   * The object Node set this channel up on (a ChildProcess, or `process` in a worker), when
   * the channel is a wrapper: sockets are written on it many at a time (server-internals.ts).
   */
  readonly endpoint?: object;
  send(message: unknown, handle: Socket, options: { keepOpen?: boolean }, callback: (error: Error | null) => void): boolean;
  on(event: 'message', listener: (message: unknown) => void): unknown;
  removeListener(event: 'message', listener: (message: unknown) => void): unknown;
}

/** Settings of one move. */
export interface MoveSettings {
  /**
   * The move ends once no socket has moved for this long (ms): whatever is still here then
   * (a long request, a busy upload) is left to the drain.
   */
  deadline: number;
  /**
   * The move ends after this long in any case (ms), so that many idle connections cannot keep
   * the old process longer than a drain would (grace.ts passes `idleGrace`).
   */
  maxDuration: number;
  /** How long the successor may take to acknowledge one socket before moving stops (ms). */
  ackTimeout: number;
  /**
   * Ends the move early (the successor died, or this process serves again): nothing more is
   * sent, and the sockets in flight wait for their answers.
   */
  signal?: AbortSignal;
  /**
   * The channel leads straight to the receiver (self-upgrade mode): a socket not answered when
   * it closes was never adopted, since the successor answers before it reads a byte, and only
   * the kernel's copy in the closed channel went with it: this process serves it again. Not so
   * through the supervisor, which may have passed it on.
   */
  unansweredComeBack?: boolean;
  /** At most this many sockets on their way at once (default MOVE_WINDOW; the pace of the successor's acks sets fewer). */
  maxInFlight?: number;
  /**
   * A slow start over this long (ms; 0 or unset: none): by time t of it, at most the share
   * t / slowStart of the connections here has been sent, and the warm old process serves the
   * rest meanwhile (HAProxy's `slowstart`). The deadlines count from its end.
   */
  slowStart?: number;
  /**
   * Settles when the servers stop accepting. Until then new connections keep coming (and
   * move at once), so the move neither ends when none is left nor counts its deadlines.
   */
  intake?: Promise<void>;
  logger: Logger;
}

/** Figures of one move, for logs and events. */
export interface MoveResult {
  durationMs: number;
  /** Connections the successor adopted. */
  moved: number;
  /** Connections the successor refused (closed there). */
  refused: number;
  /** Plain HTTP/1 connections still here at the end, left to the drain. */
  left: number;
  /** Time spent waiting for the successor's acks (ms): the rest of durationMs waited for idle sockets. */
  ackWaitMs: number;
  /** From the start to the last connection the successor acknowledged (ms); 0 when none moved. */
  lastMovedMs: number;
  /** Why nothing moved at all, when the internals the move needs are missing. */
  unsupported?: string;
}

/** How often the idle sockets are looked up again when no response has finished (ms). */
const RESCAN_MS = 50;

let warnedUnsupported = false;

/**
 * Moves the idle plain HTTP/1 connections of `listeners` to `child` (the successor's end of
 * the channel, or the supervisor relaying to the replacement), which must have
 * reported that it adopts connections on these listener names. While the servers still
 * accept, `settings.intake` must say when they stop (see MoveSettings); without it they must
 * have stopped already. Resolves once none is left, at the deadline, or on abort.
 */
export function moveConnections(listeners: readonly MovableListener[], child: MoveChannel, settings: MoveSettings): Promise<MoveResult> {
  const movable = listeners.filter((l) => l.tracker.movable);
  const rest = new SocketsAtRest(movable);
  const nothing = (unsupported?: string): Promise<MoveResult> =>
    Promise.resolve({
      durationMs: 0,
      moved: 0,
      refused: 0,
      left: rest.remaining(),
      ackWaitMs: 0,
      lastMovedMs: 0,
      ...(unsupported === undefined ? {} : { unsupported }),
    });
  if (movable.length === 0 || !child.connected) return nothing();
  if (settings.intake === undefined && rest.remaining() === 0) return nothing();
  const unsupported = checkInternals(movable);
  if (unsupported !== undefined) {
    if (!warnedUnsupported) {
      warnedUnsupported = true;
      settings.logger.warn(
        { missing: unsupported },
        `grace-restart: this Node lacks ${unsupported}: connections are drained instead of moved`,
      );
    }
    return nothing(unsupported);
  }
  return new ConnectionMove(movable, rest, child, settings).run();
}

/** One move, from its first send to `done` (the phases in the file comment). */
class ConnectionMove {
  readonly #listeners: readonly MovableListener[];
  readonly #rest: SocketsAtRest;
  readonly #child: MoveChannel;
  readonly #settings: MoveSettings;
  readonly #started = Date.now();
  readonly #result: MoveResult = { durationMs: 0, moved: 0, refused: 0, left: 0, ackWaitMs: 0, lastMovedMs: 0 };
  /** Sockets sent and not answered, by message id. */
  readonly #flights = new SocketsInFlight<MovableListener>(idCounter());
  readonly #pace = new AdoptionPace();
  readonly #endpoint: object;
  /** Many sockets on their way at once where this Node allows it; else Node's own send(), one at a time. */
  readonly #writer: HandleWriter | undefined;
  readonly #maxWindow: number;
  #phase: 'sending' | 'finishing' | 'done' = 'sending';
  #intakeOpen: boolean;
  /** Since when some socket has been in flight (for ackWaitMs). */
  #busySince = 0;
  #lookQueued = false;
  readonly #timers: {
    deadline?: NodeJS.Timeout;
    cap?: NodeJS.Timeout;
    ack?: NodeJS.Timeout;
    poll?: NodeJS.Timeout;
    rampEnd?: NodeJS.Timeout;
  } = {};
  #resolve: (result: MoveResult) => void = () => {};

  constructor(listeners: readonly MovableListener[], rest: SocketsAtRest, child: MoveChannel, settings: MoveSettings) {
    this.#listeners = listeners;
    this.#rest = rest;
    this.#child = child;
    this.#settings = settings;
    this.#intakeOpen = settings.intake !== undefined;
    this.#endpoint = child.endpoint ?? child;
    this.#writer = pipelinedHandleWriter(this.#endpoint, (socket) => this.#nacked(socket));
    this.#maxWindow = this.#writer === undefined ? 1 : (settings.maxInFlight ?? MOVE_WINDOW);
  }

  run(): Promise<MoveResult> {
    return new Promise<MoveResult>((resolve) => {
      this.#resolve = resolve;
      this.#listen();
      if (this.#intakeOpen) this.#settings.intake?.then(this.#closeIntake, this.#closeIntake);
      else this.#armDeadlines();
      this.#pump();
    });
  }

  // A socket comes to rest when its response finishes: hook the responses running now, and
  // those of later requests; while the intake is open, a new connection is at rest at once.
  // A slow poll catches what no hook sees (pipelined requests queued before the move started).
  #listen(): void {
    for (const { tracker } of this.#listeners) {
      tracker.server.on('request', this.#onRequest);
      if (this.#intakeOpen) tracker.server.on('connection', this.#lookSoon);
      for (const socket of tracker.httpSockets) pendingResponse(socket)?.once('finish', this.#lookSoon);
    }
    this.#timers.poll = setInterval(this.#lookAgain, RESCAN_MS);
    this.#child.on('message', this.#onMessage);
    this.#settings.signal?.addEventListener('abort', this.#stopSending, { once: true });
    this.#disconnects()?.once('disconnect', this.#onDisconnect);
  }

  #unlisten(): void {
    for (const { tracker } of this.#listeners) {
      tracker.server.removeListener('request', this.#onRequest);
      tracker.server.removeListener('connection', this.#lookSoon);
    }
    clearInterval(this.#timers.poll);
    this.#child.removeListener('message', this.#onMessage);
    this.#settings.signal?.removeEventListener('abort', this.#stopSending);
    this.#disconnects()?.removeListener('disconnect', this.#onDisconnect);
  }

  #ended(): boolean {
    return this.#phase === 'done';
  }

  #disconnects(): EventEmitter | undefined {
    return typeof (this.#endpoint as Partial<EventEmitter>).once === 'function' ? (this.#endpoint as EventEmitter) : undefined;
  }

  /** Sends as many sockets at rest as the successor's pace allows; ends when nothing is left. */
  #pump(): void {
    if (this.#phase !== 'sending') return;
    if (this.#settings.signal?.aborted) return this.#stopSending();
    // The slow start's room, counted once per pump: it walks every connection here.
    const window = Math.min(this.#maxWindow, this.#pace.window(), this.#rampRoom());
    while (this.#flights.size < window) {
      const next = this.#rest.next();
      if (next === undefined) break;
      this.#send(next.socket, next.listener);
      if (this.#ended()) return; // the send failed
    }
    if (this.#flights.size === 0 && !this.#intakeOpen && this.#rest.remaining() === 0) this.#end();
    // else: wait for answers, a response to finish or a new connection, or a deadline.
  }

  /**
   * How many more sockets may be in flight under the slow start: the share of those here
   * that its elapsed time allows, less those already sent and not come back. Counted as
   * in flight too, so that the pump's window compares like with like.
   */
  #rampRoom(): number {
    const ramp = this.#settings.slowStart ?? 0;
    const elapsed = Date.now() - this.#started;
    if (ramp <= 0 || elapsed >= ramp) return Number.POSITIVE_INFINITY;
    const sent = this.#result.moved + this.#flights.size;
    const allowed = Math.ceil(((sent + this.#rest.remaining()) * elapsed) / ramp);
    return this.#flights.size + Math.max(0, allowed - sent);
  }

  /** Sends `socket`, in the same tick as the check that it is at rest. */
  #send(socket: Socket, listener: MovableListener): void {
    // A closed channel sends nothing: the socket stays here, reading, for the drain.
    if (!this.#child.connected) return this.#giveUp('the successor disconnected');
    // No byte can be read by this process from here on.
    if (!stopReading(socket)) {
      resumeReading(socket);
      return this.#rest.keepHere(socket);
    }
    const wasIdle = this.#flights.size === 0;
    const flight = this.#flights.add(socket, listener);
    const error = this.#write(flight);
    if (error !== undefined) {
      this.#flights.take(flight.id);
      this.#flights.written(flight);
      resumeReading(socket);
      return this.#giveUp('send failed', error);
    }
    // From here the successor may own the socket: it is no longer this process's to serve or drain.
    listener.tracker.forget(socket);
    this.#rest.left(socket);
    if (!wasIdle) return;
    this.#busySince = Date.now();
    this.#armAckTimer();
  }

  /** Writes `flight`'s message with its socket; returns why it was not written, if so. */
  #write(flight: Flight<MovableListener>): string | undefined {
    const message = {
      [CONNECTION_MESSAGE_KEY]: { type: 'connection', id: flight.id, listener: flight.data.name } satisfies ConnectionMessage,
    };
    const onWritten = (error: string | Error | null | undefined): void => {
      this.#flights.written(flight);
      if (error === undefined || error === null || !this.#flights.has(flight)) return;
      // Never written, so never received: the socket is still whole here.
      this.#flights.take(flight.id);
      this.#comeBack(flight);
      this.#giveUp('send failed', error);
    };
    try {
      // keepOpen: this process's copy of the fd stays open until the successor's ack, and is
      // closed here then. Without it Node keeps the copy in the channel until its own ack, and
      // leaks it, connection open and unread, when the successor dies before that ack.
      if (this.#writer !== undefined) return this.#writer.write(message, flight.socket, onWritten);
      this.#child.send(message, flight.socket, { keepOpen: true }, onWritten);
      return undefined;
    } catch (thrown) {
      return String(thrown);
    }
  }

  readonly #onMessage = (message: unknown): void => {
    const acks = readConnectionAcks(message);
    if (acks !== undefined) this.#answered(acks);
  };

  #answered(acks: readonly FlightAnswer[]): void {
    const { adopted, refused, oldestSentAt } = this.#flights.answer(acks);
    this.#pace.answered(adopted.length + refused.length, oldestSentAt);
    // Refused unread (the receiver closed its copy without reading): still whole here.
    for (const flight of refused) this.#comeBack(flight);
    this.#result.refused += refused.length;
    for (const flight of adopted) this.#flights.release(flight);
    this.#result.moved += adopted.length;
    if (adopted.length > 0) this.#result.lastMovedMs = Date.now() - this.#started;
    this.#settled();
    this.#timers.deadline?.refresh();
    this.#afterAnswers();
  }

  /** Node's NACK: the fd never arrived (the successor at its fd limit, say). */
  #nacked(socket: Socket): void {
    const flight = this.#flights.takeSocket(socket);
    if (flight === undefined) return;
    this.#comeBack(flight);
    this.#settled();
    this.#afterAnswers();
  }

  /** A socket the successor never received, or refused unread, is served and drained here again. */
  #comeBack(flight: Flight<MovableListener>): void {
    this.#rest.keepHere(flight.socket);
    flight.data.tracker.restore(flight.socket);
    resumeReading(flight.socket);
  }

  /** Some flight left: the ack timer runs while any is left, from the last answer. */
  #settled(): void {
    if (this.#flights.size > 0) return this.#armAckTimer();
    this.#result.ackWaitMs += Date.now() - this.#busySince;
    clearTimeout(this.#timers.ack);
  }

  /** Sends more, or, once finishing, ends when every socket in flight is answered. */
  #afterAnswers(): void {
    if (this.#phase === 'sending') return this.#pump();
    if (this.#phase === 'finishing' && this.#flights.size === 0) this.#end();
  }

  /**
   * Told to stop (the successor died, a stop, the supervisor ended the relay): nothing more is
   * sent, and the sockets in flight wait for their answers (a relay answers each one it
   * could not pass on). If the channel closes first, what was not answered never reached
   * the successor (see MoveSettings.unansweredComeBack); at ackTimeout it is given up.
   */
  readonly #stopSending = (): void => {
    if (this.#phase !== 'sending') return;
    this.#phase = 'finishing';
    this.#afterAnswers();
  };

  readonly #onDisconnect = (): void => {
    if (this.#phase === 'done') return;
    if (this.#settings.unansweredComeBack) for (const flight of this.#flights.takeAll()) this.#comeBack(flight);
    this.#end();
  };

  readonly #lookAgain = (): void => {
    this.#rest.lookAgain();
    this.#pump();
  };

  // 'connection' and a response's 'finish' look in the next tick. On 'connection' this runs
  // after http's own listener (added when the server was made), which attached the parser and
  // scheduled the socket's resume for the next tick; a 'finish' may follow a resume too (of a
  // socket http paused while the request body backed up). Looked at now, such a socket is not
  // at rest (resumePending); looked at in a tick queued after that resume, it reads again, but
  // nothing is read before the event loop's next turn. One look serves every event of a tick.
  readonly #lookSoon = (): void => {
    if (this.#lookQueued) return;
    this.#lookQueued = true;
    process.nextTick(() => {
      this.#lookQueued = false;
      this.#lookAgain();
    });
  };

  // Added after http's own 'finish' listener: when it runs, http has detached the response.
  readonly #onRequest = (_req: IncomingMessage, res: ServerResponse): void => {
    res.once('finish', this.#lookSoon);
  };

  #giveUp(why: string, error?: unknown): void {
    if (this.#phase === 'done') return;
    this.#settings.logger.warn(
      { err: error === undefined ? undefined : String(error), moved: this.#result.moved },
      `grace-restart: stopped moving connections (${why}): the rest drain`,
    );
    this.#end();
  }

  #armAckTimer(): void {
    clearTimeout(this.#timers.ack);
    this.#timers.ack = setTimeout(() => this.#giveUp(`no ack within ${this.#settings.ackTimeout} ms`), this.#settings.ackTimeout);
  }

  // The deadlines count from the moment the intake closes (before, the move waits for more),
  // or from the end of the slow start (during it, sockets wait for their share of its time).
  #armDeadlines(): void {
    const rampLeft = this.#started + (this.#settings.slowStart ?? 0) - Date.now();
    if (rampLeft > 0) {
      this.#timers.rampEnd = setTimeout(() => this.#armDeadlines(), rampLeft);
      return;
    }
    this.#timers.deadline = setTimeout(() => this.#end(), this.#settings.deadline);
    this.#timers.cap = setTimeout(() => this.#end(), this.#settings.maxDuration);
  }

  readonly #closeIntake = (): void => {
    if (this.#phase === 'done' || !this.#intakeOpen) return;
    this.#intakeOpen = false;
    for (const { tracker } of this.#listeners) tracker.server.removeListener('connection', this.#lookSoon);
    this.#armDeadlines();
    this.#pump();
  };

  #end(): void {
    if (this.#phase === 'done') return;
    this.#phase = 'done';
    clearTimeout(this.#timers.deadline);
    clearTimeout(this.#timers.cap);
    clearTimeout(this.#timers.ack);
    clearTimeout(this.#timers.rampEnd);
    // Unanswered, a socket may be the successor's already: close this copy, never serve it
    // here too (two readers would split its bytes).
    for (const flight of this.#flights.takeAll()) this.#flights.release(flight);
    this.#writer?.close();
    this.#unlisten();
    // The caller closes the channel next, which would cancel writes still queued in libuv
    // (and lose their connections): wait for them, but not for a peer that stopped reading.
    void this.#flights.whenWritten(this.#settings.ackTimeout).then(() => {
      this.#result.durationMs = Date.now() - this.#started;
      this.#result.left = this.#rest.remaining();
      this.#resolve(this.#result);
    });
  }
}

/** Message ids, from 1, for one move. */
function idCounter(): () => number {
  let next = 1;
  return () => next++;
}

/** The first internal the move needs that this Node lacks, checked on a live socket. */
function checkInternals(listeners: readonly MovableListener[]): string | undefined {
  for (const { tracker } of listeners) {
    const socket = [...tracker.httpSockets].find((s) => !s.destroyed);
    if (socket !== undefined) return missingMoveInternals(tracker.server, socket);
  }
  return undefined;
}
