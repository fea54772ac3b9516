/**
 * Which connections may leave this process right now: the look the connection move
 * (connection-mover.ts) makes before each send.
 *
 * A look lists the sockets whose parser is between two messages (or that never sent a byte),
 * with `bytesRead` at that moment. The socket picked from it is checked again, in the tick it is
 * sent, by {@link atRest}: a socket may have begun a request, or had a resume scheduled, while it
 * waited its turn. A response's end or a new connection makes the look stale (`lookAgain`), and
 * the next pick looks again first.
 */
import type { Socket } from 'node:net';
import { isUpgraded, type ConnectionTracker } from './drain.js';
import { pausedByHttp, pendingResponse, queuedWriteBytes, resumePending, socketsBetweenMessages } from './server-internals.js';

/** One listener whose connections may move, under the name the successor knows it by. */
export interface MovableListener {
  name: string;
  tracker: ConnectionTracker;
}

/** A socket that may leave now, and the listener it came in by. */
export interface RestingSocket {
  socket: Socket;
  listener: MovableListener;
}

/**
 * Whether `socket` can leave this process in this tick: nothing of it lives here any more. No
 * byte read since the look saw it between messages (`bytesReadAtLook`), no response attached
 * or queued, nothing waiting to be written (in the stream or in libuv), nothing read and
 * unparsed, not paused by http, not ending, and no resume scheduled (it would start reading
 * here again after the send).
 */
export function atRest(socket: Socket, bytesReadAtLook: number | undefined): boolean {
  if (bytesReadAtLook !== socket.bytesRead) return false;
  if (socket.destroyed || socket.connecting || !socket.readable || !socket.writable || socket.writableEnded) return false;
  if (isUpgraded(socket) || pendingResponse(socket) !== undefined) return false;
  if (socket.writableLength !== 0 || queuedWriteBytes(socket) !== 0) return false;
  return socket.readableLength === 0 && !pausedByHttp(socket) && !resumePending(socket);
}

/** The sockets of `listeners` that may leave, looked up when needed. */
export class SocketsAtRest {
  readonly #listeners: readonly MovableListener[];
  /** Sockets the last look saw between messages, with `bytesRead` then, in the order to try them. */
  #seen = new Map<Socket, { bytesRead: number; listener: MovableListener }>();
  #queue: Socket[] = [];
  /** Something happened since the last look that may have brought a socket to rest. */
  #stale = true;
  /** Sockets that stay in this process for the rest of the move. */
  readonly #stayHere = new WeakSet<Socket>();

  constructor(listeners: readonly MovableListener[]) {
    this.#listeners = listeners;
  }

  /** A response finished or a connection came: the next pick looks again. */
  lookAgain(): void {
    this.#stale = true;
  }

  /** `socket` stays here (it came back unread, or cannot stop reading): never picked again. */
  keepHere(socket: Socket): void {
    this.#stayHere.add(socket);
    this.#seen.delete(socket);
  }

  /** `socket` left: it is not this process's to look at any more. */
  left(socket: Socket): void {
    this.#seen.delete(socket);
  }

  /** The next socket that may leave in this tick (see {@link atRest}), or undefined. */
  next(): RestingSocket | undefined {
    for (;;) {
      while (this.#queue.length > 0) {
        const socket = this.#queue.shift() as Socket;
        const seen = this.#seen.get(socket);
        if (seen !== undefined && atRest(socket, seen.bytesRead)) return { socket, listener: seen.listener };
      }
      if (!this.#stale) return undefined;
      this.#look();
    }
  }

  /** Plain HTTP/1 connections still served here. */
  remaining(): number {
    let count = 0;
    for (const { tracker } of this.#listeners) for (const socket of tracker.httpSockets) if (!isUpgraded(socket)) count += 1;
    return count;
  }

  #look(): void {
    this.#stale = false;
    this.#seen = new Map();
    this.#queue = [];
    for (const listener of this.#listeners) {
      const idle = socketsBetweenMessages(listener.tracker.server) ?? new Set<Socket>();
      for (const socket of listener.tracker.httpSockets) {
        // bytesRead === 0: never sent a byte, its parser has not started a message.
        if (!idle.has(socket) && socket.bytesRead !== 0) continue;
        if (this.#stayHere.has(socket)) continue;
        this.#seen.set(socket, { bytesRead: socket.bytesRead, listener });
        this.#queue.push(socket);
      }
    }
  }
}
