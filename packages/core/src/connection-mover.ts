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
 * The move is paced by the successor (a slow start): a socket on its way is one whose client
 * waits, unread, and the successor adopts one socket per turn of its event loop (libuv reads
 * one fd-carrying message per turn), which takes milliseconds once it serves. Sent all at
 * once, 50 busy connections waited up to 650 ms for a cold successor while this process sat
 * idle. So only as many are on their way as the successor adopts within STALL_BUDGET_MS at
 * the pace it has been acknowledging (1 to MOVE_WINDOW), and the rest are served here
 * meanwhile: the successor takes the connections as fast as it can absorb them.
 *
 * TLS, HTTP/2 and upgraded sockets keep their state in this process and never move; nor
 * does a socket that is still busy at the deadline: drain.ts handles them as before.
 */
import type { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { CONNECTION_MESSAGE_KEY, readConnectionAcks, type ConnectionMessage } from './connection-handoff.js';
import { isUpgraded, type ConnectionTracker } from './drain.js';
import type { Logger } from './logger.js';
import { missingMoveInternals, pausedByHttp, pendingResponse, pipelinedHandleWriter, queuedWriteBytes, resumePending, resumeReading, socketsBetweenMessages, stopReading } from './server-internals.js';

/** One listener whose connections may move, under the name the successor knows it by. */
export interface MovableListener {
  name: string;
  tracker: ConnectionTracker;
}

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

/**
 * At most this many sockets on their way to the successor at once (when written without Node's
 * one-at-a-time queue, server-internals.ts). The kernel's default socket buffer holds about
 * 200 such small messages; more would only wait in libuv's queue, still this process's.
 */
const MOVE_WINDOW = 128;

/**
 * How long the last socket sent may wait for the successor to adopt it, at the pace it has
 * been adopting (ms): the window of sockets in flight is this over the time per adoption.
 * An idle successor adopts one in ~0.1 ms (a full window); a cold one serving load, one in
 * 5–20 ms (one at a time).
 */
const STALL_BUDGET_MS = 5;

/** Sockets on their way before the successor's pace is known. */
const FIRST_WINDOW = 2;

/** Weight of the newest sample in the running time per adoption. */
const PACE_WEIGHT = 0.3;

/** A socket sent and not acknowledged yet. */
interface InFlight {
  socket: Socket;
  listener: MovableListener;
  /** When it was sent (ms, performance.now()). */
  sentAt: number;
  /** Its message, and the fd with it, is in the kernel: this process may close its copy. */
  written: boolean;
  /** The move ended before it was written: close it once it is. */
  closeWhenWritten: boolean;
}

/** Sockets whose parser was seen between two messages, with `bytesRead` at that moment. */
type IdleSnapshot = Map<Socket, number>;

let warnedUnsupported = false;

/**
 * Moves the idle plain HTTP/1 connections of `listeners` to `child` (the successor's end of
 * the channel, or the supervisor relaying to the replacement), which must have
 * reported that it adopts connections on these listener names. While the servers still
 * accept, `settings.intake` must say when they stop (see MoveSettings); without it they must
 * have stopped already. Resolves once none is left, at the deadline, or on abort.
 */
export function moveConnections(listeners: readonly MovableListener[], child: MoveChannel, settings: MoveSettings): Promise<MoveResult> {
  const started = Date.now();
  const result: MoveResult = { durationMs: 0, moved: 0, refused: 0, left: 0, ackWaitMs: 0, lastMovedMs: 0 };
  const movable = listeners.filter((l) => l.tracker.movable);
  const trackerOf = new Map<Socket, MovableListener>();
  /** Sockets the successor never received, or that could not stop reading: they stay here. */
  const cameBack = new WeakSet<Socket>();
  const remaining = (): number => movable.reduce((n, l) => n + [...l.tracker.httpSockets].filter((s) => !isUpgraded(s)).length, 0);
  if (movable.length === 0 || !child.connected) return Promise.resolve(finish());
  if (settings.intake === undefined && remaining() === 0) return Promise.resolve(finish());

  const unsupported = checkInternals(movable);
  if (unsupported !== undefined) {
    if (!warnedUnsupported) {
      warnedUnsupported = true;
      settings.logger.warn({ missing: unsupported }, `grace-restart: this Node lacks ${unsupported}: connections are drained instead of moved`);
    }
    result.unsupported = unsupported;
    return Promise.resolve(finish());
  }

  function finish(): MoveResult {
    result.durationMs = Date.now() - started;
    result.left = remaining();
    return result;
  }

  return new Promise<MoveResult>((resolve) => {
    let snapshot: IdleSnapshot = new Map();
    let queue: Socket[] = [];
    /** A response finished since the last snapshot: more sockets may be between messages. */
    let stale = true;
    /** Sockets sent and not acknowledged yet, by message id. */
    const inFlight = new Map<number, InFlight>();
    let nextId = 1;
    let done = false;
    /** Told to stop sending: ends once every socket in flight is answered (stopSending()). */
    let finishing = false;
    let intakeOpen = settings.intake !== undefined;
    /** Since when some socket has been in flight (for ackWaitMs). */
    let busySince = 0;
    /** Messages (with their fds) not in the kernel yet; the channel must not close before they are. */
    let unwritten = 0;
    let allWritten: (() => void) | undefined;
    // Many sockets on their way at once where this Node lets us write them so; else Node's
    // own send(), which holds each next socket until the previous one's ack: one at a time.
    const endpoint: object = child.endpoint ?? child;
    const writer = pipelinedHandleWriter(endpoint, (socket) => comeBack(socket));
    const maxWindow = writer === undefined ? 1 : (settings.maxInFlight ?? MOVE_WINDOW);
    const pace = new AdoptionPace();
    const window = (): number => Math.min(maxWindow, pace.window());

    const takeSnapshot = (): void => {
      stale = false;
      snapshot = new Map();
      queue = [];
      for (const listener of movable) {
        const idle = socketsBetweenMessages(listener.tracker.server) ?? new Set<Socket>();
        for (const socket of listener.tracker.httpSockets) {
          // bytesRead === 0: never sent a byte, its parser has not started a message.
          if (!idle.has(socket) && socket.bytesRead !== 0) continue;
          if (cameBack.has(socket)) continue;
          snapshot.set(socket, socket.bytesRead);
          trackerOf.set(socket, listener);
          queue.push(socket);
        }
      }
    };

    /** Whether `socket` can leave this process right now (see the file comment). */
    const canMove = (socket: Socket): boolean => {
      if (snapshot.get(socket) !== socket.bytesRead) return false; // bytes since: a request started
      if (socket.destroyed || socket.connecting || !socket.readable || !socket.writable || socket.writableEnded) return false;
      if (isUpgraded(socket) || pendingResponse(socket) !== undefined) return false;
      if (socket.writableLength !== 0 || queuedWriteBytes(socket) !== 0) return false;
      // A resume scheduled for the next tick would start reading here again after the send.
      return socket.readableLength === 0 && !pausedByHttp(socket) && !resumePending(socket);
    };

    /** The next socket that can move now: the last snapshot's queue first, then a new look if a response finished meanwhile. */
    const nextMovable = (): Socket | undefined => {
      for (;;) {
        while (queue.length > 0) {
          const socket = queue.shift() as Socket;
          if (canMove(socket)) return socket;
        }
        if (!stale) return undefined;
        takeSnapshot();
      }
    };

    const pump = (): void => {
      if (done || finishing) return;
      if (settings.signal?.aborted) return stopSending();
      while (inFlight.size < window()) {
        const socket = nextMovable();
        if (socket === undefined) break;
        send(socket);
        if (done) return;
      }
      if (inFlight.size === 0 && !intakeOpen && remaining() === 0) end();
      // else: wait for acks, a response to finish or a new connection (lookAgain), or the deadline.
    };

    const send = (socket: Socket): void => {
      const listener = trackerOf.get(socket) as MovableListener;
      // A closed channel sends nothing: the socket stays here, reading, for the drain.
      if (!child.connected) return giveUp('the successor disconnected');
      // Same tick as the checks above: no byte can be read by this process after them.
      if (!stopReading(socket)) {
        resumeReading(socket);
        cameBack.add(socket);
        return;
      }
      const id = nextId++;
      const message = { [CONNECTION_MESSAGE_KEY]: { type: 'connection', id, listener: listener.name } satisfies ConnectionMessage };
      const entry: InFlight = { socket, listener, sentAt: performance.now(), written: false, closeWhenWritten: false };
      const onWritten = (error: string | Error | null | undefined): void => {
        entry.written = true;
        unwritten -= 1;
        if (unwritten === 0) allWritten?.();
        if (entry.closeWhenWritten) entry.socket.destroy();
        else if (error !== undefined && error !== null && inFlight.get(id) === entry) {
          // Never written, so never received: the socket is still whole here.
          takeBack(id);
          giveUp('send failed', error);
        }
      };
      let error: string | undefined;
      try {
        // keepOpen: this process's copy of the fd stays open until the successor's ack, and is
        // closed here then. Without it Node keeps the copy in the channel until its own ack, and
        // leaks it, connection open and unread, when the successor dies before that ack.
        if (writer !== undefined) error = writer.write(message, socket, onWritten);
        else child.send(message, socket, { keepOpen: true }, onWritten);
      } catch (thrown) {
        error = String(thrown);
      }
      if (error !== undefined) {
        resumeReading(socket);
        return giveUp('send failed', error);
      }
      // From here the successor may own the socket: it is no longer this process's to serve or drain.
      listener.tracker.forget(socket);
      snapshot.delete(socket);
      if (inFlight.size === 0) {
        busySince = Date.now();
        armAckTimer();
      }
      inFlight.set(id, entry);
      unwritten += 1;
    };

    /** Closes this process's copy of a socket the successor has (or may have): never a shutdown, its copy keeps the connection. */
    const release = (entry: InFlight): void => {
      if (entry.written) entry.socket.destroy();
      else entry.closeWhenWritten = true; // the pending write still needs the fd
    };

    const settle = (id: number): InFlight | undefined => {
      const entry = inFlight.get(id);
      if (entry === undefined) return undefined;
      inFlight.delete(id);
      if (inFlight.size === 0) {
        result.ackWaitMs += Date.now() - busySince;
        clearTimeout(ackTimer);
      } else armAckTimer();
      return entry;
    };

    const onMessage = (message: unknown): void => {
      const acks = readConnectionAcks(message);
      if (acks === undefined) return;
      pace.answered(acks.length, Math.min(...acks.map((ack) => inFlight.get(ack.id)?.sentAt ?? Infinity)));
      for (const ack of acks) {
        const entry = inFlight.get(ack.id);
        if (entry === undefined) continue;
        if (!ack.ok) {
          // Refused unread (the receiver closed its copy without reading): still whole here.
          result.refused += 1;
          takeBack(ack.id);
          continue;
        }
        settle(ack.id);
        result.lastMovedMs = Date.now() - started;
        result.moved += 1;
        release(entry);
      }
      deadline?.refresh();
      afterAnswers();
    };

    /**
     * A socket the successor never received (Node's NACK: the fd did not arrive, at its fd
     * limit say), or refused unread, is still whole here: it reads again and is served and
     * drained here.
     */
    const comeBack = (socket: Socket): void => {
      const id = [...inFlight].find(([, entry]) => entry.socket === socket)?.[0];
      if (id !== undefined && takeBack(id)) afterAnswers();
    };
    const takeBack = (id: number): boolean => {
      const entry = settle(id);
      if (entry === undefined) return false;
      cameBack.add(entry.socket);
      entry.listener.tracker.restore(entry.socket);
      resumeReading(entry.socket);
      return true;
    };

    /** Sends more, or, once told to stop sending, ends when every socket in flight is answered. */
    const afterAnswers = (): void => {
      if (!finishing) return pump();
      if (inFlight.size === 0) end();
    };

    /**
     * Told to stop (the successor died, a stop, the supervisor ended the relay): nothing more is
     * sent, and the sockets in flight wait for their answers (a relay answers each one it
     * could not pass on). If the channel closes first, what was not answered never reached
     * the successor (see MoveSettings.unansweredComeBack); at ackTimeout it is given up.
     */
    const stopSending = (): void => {
      if (done || finishing) return;
      finishing = true;
      afterAnswers();
    };

    const onDisconnect = (): void => {
      if (done) return;
      if (settings.unansweredComeBack) for (const id of [...inFlight.keys()]) takeBack(id);
      end();
    };

    // A response finished or (while the intake is open) a connection was accepted: more sockets
    // may be between messages.
    const lookAgain = (): void => {
      stale = true;
      pump();
    };
    // 'connection' and a response's 'finish' look in the next tick. On 'connection' this runs
    // after http's own listener (added when the server was made), which attached the parser and
    // scheduled the socket's resume for the next tick; a 'finish' may follow a resume too (of a
    // socket http paused while the request body backed up). Looked at now, such a socket is not
    // at rest (resumePending); looked at in a tick queued after that resume, it reads again, but
    // nothing is read before the event loop's next turn. One look serves every event of a tick.
    let lookQueued = false;
    const lookSoon = (): void => {
      if (lookQueued) return;
      lookQueued = true;
      process.nextTick(() => {
        lookQueued = false;
        lookAgain();
      });
    };
    const onRequest = (_req: IncomingMessage, res: ServerResponse): void => {
      // Added after http's own 'finish' listener: when it runs, http has detached the response.
      res.once('finish', lookSoon);
    };

    const giveUp = (why: string, error?: unknown): void => {
      if (done) return;
      settings.logger.warn({ err: error === undefined ? undefined : String(error), moved: result.moved }, `grace-restart: stopped moving connections (${why}): the rest drain`);
      end();
    };

    // The deadlines count from the moment the intake closes: before, the move waits for more.
    let deadline: NodeJS.Timeout | undefined;
    let cap: NodeJS.Timeout | undefined;
    /** Runs while some socket is in flight: the successor must answer within ackTimeout of the last answer. */
    let ackTimer: NodeJS.Timeout | undefined;
    const armAckTimer = (): void => {
      clearTimeout(ackTimer);
      ackTimer = setTimeout(() => giveUp(`no ack within ${settings.ackTimeout} ms`), settings.ackTimeout);
    };
    const armDeadlines = (): void => {
      deadline = setTimeout(() => end(), settings.deadline);
      cap = setTimeout(() => end(), settings.maxDuration);
    };
    const closeIntake = (): void => {
      if (done || !intakeOpen) return;
      intakeOpen = false;
      for (const listener of movable) listener.tracker.server.removeListener('connection', lookSoon);
      armDeadlines();
      pump();
    };
    const end = (): void => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      clearTimeout(cap);
      clearTimeout(ackTimer);
      // Unacknowledged, a socket may be the successor's already: close this copy, never serve
      // it here too (two readers would split its bytes).
      for (const entry of inFlight.values()) release(entry);
      inFlight.clear();
      writer?.close();
      clearInterval(poll);
      child.removeListener('message', onMessage);
      for (const listener of movable) {
        listener.tracker.server.removeListener('request', onRequest);
        listener.tracker.server.removeListener('connection', lookSoon);
      }
      settings.signal?.removeEventListener('abort', stopSending);
      disconnects?.removeListener('disconnect', onDisconnect);
      // The caller closes the channel next, which would cancel writes still queued in libuv
      // (and lose their connections): wait for them, but not for a peer that stopped reading.
      if (unwritten === 0) return resolve(finish());
      const waited = setTimeout(() => resolve(finish()), settings.ackTimeout);
      allWritten = () => {
        clearTimeout(waited);
        resolve(finish());
      };
    };

    // A socket becomes movable when its response finishes: hook the responses running now,
    // and those of later requests. A slow poll catches what no hook sees (pipelined requests
    // queued before the move started).
    for (const listener of movable) {
      listener.tracker.server.on('request', onRequest);
      if (intakeOpen) listener.tracker.server.on('connection', lookSoon);
      for (const socket of listener.tracker.httpSockets) pendingResponse(socket)?.once('finish', lookSoon);
    }
    const poll = setInterval(lookAgain, RESCAN_MS);
    child.on('message', onMessage);
    settings.signal?.addEventListener('abort', stopSending, { once: true });
    const disconnects = typeof (endpoint as Partial<EventEmitter>).once === 'function' ? (endpoint as EventEmitter) : undefined;
    disconnects?.once('disconnect', onDisconnect);
    if (intakeOpen) settings.intake?.then(closeIntake, closeIntake);
    else armDeadlines();
    pump();
  });
}

/**
 * The successor's pace of adoption, from its acks: a running time per adopted socket, and the
 * window of sockets in flight it allows (see STALL_BUDGET_MS).
 */
export class AdoptionPace {
  #msPerAdoption: number | undefined;
  #lastAnswerAt = 0;

  /** `count` answers arrived at `now`, for sockets the oldest of which was sent at `oldestSentAt` (ms, performance.now()). */
  answered(count: number, oldestSentAt: number, now = performance.now()): void {
    if (count === 0 || !Number.isFinite(oldestSentAt)) return;
    // The successor worked on these since the later of the previous answer and their sending.
    const sample = (now - Math.max(this.#lastAnswerAt, oldestSentAt)) / count;
    this.#lastAnswerAt = now;
    this.#msPerAdoption = this.#msPerAdoption === undefined ? sample : this.#msPerAdoption + PACE_WEIGHT * (sample - this.#msPerAdoption);
  }

  /** How many sockets may be on their way now. */
  window(): number {
    if (this.#msPerAdoption === undefined) return FIRST_WINDOW;
    return Math.max(1, Math.min(MOVE_WINDOW, Math.floor(STALL_BUDGET_MS / Math.max(this.#msPerAdoption, 0.001))));
  }
}

/** The first internal the move needs that this Node lacks, checked on a live socket. */
function checkInternals(listeners: readonly MovableListener[]): string | undefined {
  for (const { tracker } of listeners) {
    const socket = [...tracker.httpSockets].find((s) => !s.destroyed);
    if (socket !== undefined) return missingMoveInternals(tracker.server, socket);
  }
  return undefined;
}
