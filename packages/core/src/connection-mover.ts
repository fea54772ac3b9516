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
 * read and unparsed, not paused by http, not ending, and its parser between two messages
 * (or no byte ever received). In the same tick reading stops (`readStop`) and the socket
 * is sent: whatever the client sends next stays in the kernel until the successor reads
 * it. One socket at a time, each acknowledged by the successor; this process closes its copy
 * of the fd on the ack (or, unacknowledged, when the move ends: the successor died, say).
 *
 * TLS, HTTP/2 and upgraded sockets keep their state in this process and never move; nor
 * does a socket that is still busy at the deadline: drain.ts handles them as before.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { CONNECTION_MESSAGE_KEY, readConnectionMessage, type ConnectionAck, type ConnectionMessage } from './connection-handoff.js';
import { isUpgraded, type ConnectionTracker } from './drain.js';
import type { Logger } from './logger.js';
import { missingMoveInternals, pausedByHttp, pendingResponse, queuedWriteBytes, socketsBetweenMessages, stopReading } from './server-internals.js';

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
  /** Ends the move early (the successor died, or this process serves again). */
  signal?: AbortSignal;
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
    let inFlight: { id: number; socket: Socket; timer: NodeJS.Timeout; sentAt: number } | undefined;
    let nextId = 1;
    let done = false;
    let intakeOpen = settings.intake !== undefined;

    const takeSnapshot = (): void => {
      stale = false;
      snapshot = new Map();
      queue = [];
      for (const listener of movable) {
        const idle = socketsBetweenMessages(listener.tracker.server) ?? new Set<Socket>();
        for (const socket of listener.tracker.httpSockets) {
          // bytesRead === 0: never sent a byte, its parser has not started a message.
          if (!idle.has(socket) && socket.bytesRead !== 0) continue;
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
      return socket.readableLength === 0 && !pausedByHttp(socket);
    };

    const pump = (): void => {
      if (done || inFlight !== undefined) return;
      if (settings.signal?.aborted) return end();
      // The queue of the last snapshot first; under load most of it has taken a request since,
      // so look again at once when a response has finished meanwhile.
      for (;;) {
        while (queue.length > 0) {
          const socket = queue.shift() as Socket;
          if (canMove(socket)) return send(socket);
        }
        if (!stale) break;
        takeSnapshot();
      }
      if (!intakeOpen && remaining() === 0) end();
      // else: wait for a response to finish or a new connection (lookAgain), or the deadline.
    };

    const send = (socket: Socket): void => {
      const listener = trackerOf.get(socket) as MovableListener;
      // A closed channel sends nothing: the socket stays here, reading, for the drain.
      if (!child.connected) return giveUp('the successor disconnected');
      // Same tick as the checks above: no byte can be read by this process after them.
      if (!stopReading(socket)) {
        socket.resume();
        return pump();
      }
      const id = nextId++;
      const message: ConnectionMessage = { type: 'connection', id, listener: listener.name };
      try {
        // keepOpen: this process's copy of the fd stays open until the successor's ack, and is
        // closed here then. Without it Node keeps the copy in the channel until its own ack, and
        // leaks it, connection open and unread, when the successor dies before that ack.
        child.send({ [CONNECTION_MESSAGE_KEY]: message }, socket, { keepOpen: true }, (error) => {
          if (error !== null && inFlight?.id === id) giveUp('send failed', error);
        });
      } catch (error) {
        socket.resume();
        return giveUp('send failed', error);
      }
      // From here the successor may own the socket: it is no longer this process's to serve or drain.
      listener.tracker.forget(socket);
      snapshot.delete(socket);
      const timer = setTimeout(() => giveUp(`no ack within ${settings.ackTimeout} ms`), settings.ackTimeout);
      inFlight = { id, socket, timer, sentAt: Date.now() };
    };

    const onMessage = (message: unknown): void => {
      const ack = readConnectionMessage<ConnectionAck>(message, 'ack');
      if (ack === undefined || inFlight?.id !== ack.id) return;
      clearTimeout(inFlight.timer);
      result.ackWaitMs += Date.now() - inFlight.sentAt;
      result.lastMovedMs = Date.now() - started;
      // Closes this process's copy of the fd (never a shutdown: the successor's copy keeps the
      // connection) and lets http free the parser.
      inFlight.socket.destroy();
      inFlight = undefined;
      if (ack.ok) result.moved += 1;
      else result.refused += 1;
      deadline?.refresh();
      pump();
    };

    // A response finished or (while the intake is open) a connection was accepted: more sockets
    // may be between messages. On 'connection' this runs after http's own listener (added when
    // the server was made): the parser is attached, but nothing is read before the next turn.
    const lookAgain = (): void => {
      stale = true;
      pump();
    };
    const onRequest = (_req: IncomingMessage, res: ServerResponse): void => {
      // Added after http's own 'finish' listener: when it runs, http has detached the response.
      res.once('finish', lookAgain);
    };

    const giveUp = (why: string, error?: unknown): void => {
      if (done) return;
      settings.logger.warn({ err: error === undefined ? undefined : String(error), moved: result.moved }, `grace-restart: stopped moving connections (${why}): the rest drain`);
      if (inFlight !== undefined) {
        clearTimeout(inFlight.timer);
        inFlight.socket.destroy();
        inFlight = undefined;
      }
      end();
    };

    // The deadlines count from the moment the intake closes: before, the move waits for more.
    let deadline: NodeJS.Timeout | undefined;
    let cap: NodeJS.Timeout | undefined;
    const armDeadlines = (): void => {
      deadline = setTimeout(() => end(), settings.deadline);
      cap = setTimeout(() => end(), settings.maxDuration);
    };
    const closeIntake = (): void => {
      if (done || !intakeOpen) return;
      intakeOpen = false;
      for (const listener of movable) listener.tracker.server.removeListener('connection', lookAgain);
      armDeadlines();
      pump();
    };
    const end = (): void => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      clearTimeout(cap);
      if (inFlight !== undefined) {
        // Unacknowledged, the socket may be the successor's already: close this copy, never
        // serve it here too (two readers would split its bytes).
        clearTimeout(inFlight.timer);
        inFlight.socket.destroy();
        inFlight = undefined;
      }
      clearInterval(poll);
      child.removeListener('message', onMessage);
      for (const listener of movable) {
        listener.tracker.server.removeListener('request', onRequest);
        listener.tracker.server.removeListener('connection', lookAgain);
      }
      settings.signal?.removeEventListener('abort', end);
      resolve(finish());
    };

    // A socket becomes movable when its response finishes: hook the responses running now,
    // and those of later requests. A slow poll catches what no hook sees (pipelined requests
    // queued before the move started).
    for (const listener of movable) {
      listener.tracker.server.on('request', onRequest);
      if (intakeOpen) listener.tracker.server.on('connection', lookAgain);
      for (const socket of listener.tracker.httpSockets) pendingResponse(socket)?.once('finish', lookAgain);
    }
    const poll = setInterval(lookAgain, RESCAN_MS);
    child.on('message', onMessage);
    settings.signal?.addEventListener('abort', end, { once: true });
    if (intakeOpen) settings.intake?.then(closeIntake, closeIntake);
    else armDeadlines();
    pump();
  });
}

/** The first internal the move needs that this Node lacks, checked on a live socket. */
function checkInternals(listeners: readonly MovableListener[]): string | undefined {
  for (const { tracker } of listeners) {
    const socket = [...tracker.httpSockets].find((s) => !s.destroyed);
    if (socket !== undefined) return missingMoveInternals(tracker.server, socket);
  }
  return undefined;
}
