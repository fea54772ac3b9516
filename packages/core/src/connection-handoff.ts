/**
 * Live connection handoff, the successor's side: adopting the idle keep-alive connections
 * the old process sends over the IPC channel it spawned this process with (handoff.ts), and
 * the messages both sides exchange. The old process's side is connection-mover.ts.
 *
 * Each connection arrives as `process.on('message', (message, socket))`, named by the
 * listener it was accepted on. It is given to that server as if it had just accepted it
 * (`emit('connection')`), its keep-alive timeout armed, and acknowledged (the answers of one
 * event-loop turn in one message): the old process closes its copy of the fd on the answer,
 * and keeps a bounded number of sockets on their way at once.
 */
import type { Server as HttpServer } from 'node:http';
import { Socket, type Server } from 'node:net';
import type { Logger } from './logger.js';
import { claimAdoptedSocket, pendingResponse } from './server-internals.js';

/** Key of the live handoff's IPC messages, so that an app's own messages are left alone. */
export const CONNECTION_MESSAGE_KEY = 'grace-restart-connection';

/** A connection sent to the successor, with its socket as the message's handle. */
export interface ConnectionMessage {
  type: 'connection';
  id: number;
  /** Name of the listener (LISTEN_FDNAMES) the connection was accepted on. */
  listener: string;
}

/** The successor's answers of one event-loop turn, in one message: a write per socket costs as much as the adoption itself. */
export interface ConnectionAcks {
  type: 'acks';
  adopted: number[];
  refused: number[];
}

/** The body of `message` when it is one of ours, or undefined. */
function ourBody(message: unknown): Record<string, unknown> | undefined {
  if (typeof message !== 'object' || message === null) return undefined;
  const body = (message as Record<string, unknown>)[CONNECTION_MESSAGE_KEY];
  return typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : undefined;
}

/** The moved connection `message` announces, or undefined. */
export function readConnectionMessage(message: unknown): ConnectionMessage | undefined {
  const body = ourBody(message);
  if (body?.['type'] !== 'connection' || typeof body['id'] !== 'number') return undefined;
  return body as unknown as ConnectionMessage;
}

/** The answers a {@link ConnectionAcks} `message` carries, each id with whether it was adopted, or undefined. */
export function readConnectionAcks(message: unknown): { id: number; ok: boolean }[] | undefined {
  const body = ourBody(message) as Partial<ConnectionAcks> | undefined;
  if (body?.type !== 'acks' || !Array.isArray(body.adopted) || !Array.isArray(body.refused)) return undefined;
  const ids = (list: unknown[]): number[] => list.filter((id): id is number => typeof id === 'number');
  return [...ids(body.adopted).map((id) => ({ id, ok: true })), ...ids(body.refused).map((id) => ({ id, ok: false }))];
}

/** The IPC side of a process: `process` itself in a successor. */
export interface ConnectionChannel {
  on(event: 'message', listener: (message: unknown, handle: unknown) => void): unknown;
  removeListener(event: 'message', listener: (message: unknown, handle: unknown) => void): unknown;
  send?(message: unknown, callback: (error: Error | null) => void): boolean;
  channel?: { unref(): void } | null | undefined;
}

/**
 * Adopts the connections the old process moves here, into the server `serverNamed` returns
 * for the listener each one names. Returns a function that stops listening.
 */
export function adoptMovedConnections(
  channel: ConnectionChannel,
  serverNamed: (name: string) => Server | undefined,
  log: Logger,
): () => void {
  let answers: ConnectionAcks | undefined;
  const answer = (id: number, ok: boolean): void => {
    if (answers === undefined) {
      answers = { type: 'acks', adopted: [], refused: [] };
      setImmediate(flush);
    }
    (ok ? answers.adopted : answers.refused).push(id);
  };
  const flush = (): void => {
    const batch = answers;
    answers = undefined;
    // With a callback, a closed channel is reported there instead of as an 'error' event on process.
    channel.send?.({ [CONNECTION_MESSAGE_KEY]: batch }, () => {
      // The old process is gone: nobody waits for the answers.
    });
  };
  const onMessage = (message: unknown, handle: unknown): void => {
    const move = readConnectionMessage(message);
    if (move === undefined) return;
    const server = serverNamed(move.listener);
    const ok = handle instanceof Socket && server !== undefined;
    if (ok) adoptConnection(server, handle);
    else {
      // Only a successor that does not listen there any more: the old process reads our
      // listener names from the ready report and sends none of those.
      log.warn({ listener: move.listener }, 'a moved connection names no listener of this process: closing it');
      if (handle instanceof Socket) handle.destroy();
    }
    answer(move.id, ok);
  };
  channel.on('message', onMessage);
  // The channel must not keep this process alive once it is done serving.
  channel.channel?.unref();
  return () => channel.removeListener('message', onMessage);
}

/**
 * Gives `socket` to `server` as its own accept would. An adopted socket sits between two
 * requests, but http starts it like a new connection, waiting for headers up to
 * `headersTimeout` (then answering 408): the keep-alive timeout it had in the old process
 * is armed here instead, and ends the socket if no byte has come by then.
 */
export function adoptConnection(server: Server, socket: Socket): void {
  claimAdoptedSocket(server, socket);
  server.emit('connection', socket);
  const keepAliveTimeout = (server as Partial<HttpServer>).keepAliveTimeout;
  if (typeof keepAliveTimeout !== 'number' || keepAliveTimeout <= 0) return;
  const timer = setTimeout(() => {
    if (socket.bytesRead === 0 && pendingResponse(socket) === undefined) socket.destroy();
  }, keepAliveTimeout);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}
