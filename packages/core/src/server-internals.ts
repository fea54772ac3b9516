/**
 * The only places grace-restart depends on Node's internals or libuv's behaviour: the fd
 * of a listening socket, a socket bound without accepting on it, keeping unix socket files, the response a socket is writing, and
 * what the live connection handoff reads to tell that a keep-alive socket sits between two
 * requests. Each is covered by packages/core/test/api.test.mjs or
 * packages/core/test/server-internals.test.mjs, so a Node release that changes one fails
 * loudly there instead of silently breaking upgrades; the handoff also checks for its own
 * at its first move and, when one is missing, drains as before (logged once).
 */
import { mkdtempSync, rmdirSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import type { EventEmitter } from 'node:events';
import net, { isIP, Server as NetServer, Socket, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';

/**
 * Returns the fd of a listening server's socket, to pass it to a successor.
 *
 * Node has no public API for this: `server._handle` is the libuv TCP/Pipe wrap and its `fd`
 * getter is the only way to reach the descriptor (the same one `cluster` relies on).
 */
export function listeningFd(server: Server): number {
  const handle = (server as unknown as { _handle?: { fd?: unknown } | null })._handle;
  const fd = handle?.fd;
  if (typeof fd !== 'number' || fd < 0) {
    throw new Error('cannot read the fd of this server: it is not listening, or this platform does not expose fds');
  }
  return fd;
}

/**
 * Binds `server` to the unix socket `path` so that libuv will never unlink the file itself.
 *
 * libuv unlinks the path a pipe was bound to when its handle closes (uv__pipe_close), even
 * when a successor still listens on the same socket: the address would vanish after every
 * upgrade. So we bind by basename from inside the socket's directory; every later close
 * runs from an empty directory (see {@link closeKeepingSocketFile}), where that unlink
 * misses, and the final stop removes the file by its real path. `process.chdir` and the
 * bind are synchronous, so no other code runs while the directory is changed.
 */
export function bindUnixSocket(server: Server, options: object & { path: string }): void {
  const previous = process.cwd();
  try {
    process.chdir(dirname(resolve(options.path)));
    NetServer.prototype.listen.call(server, { ...options, path: basename(options.path) });
  } finally {
    process.chdir(previous);
  }
}

/**
 * Listens on the inherited listening socket `fd` in this very process.
 *
 * Outside a cluster worker that is `server.listen({ fd })`. In a worker of `grace-restart run`
 * (a cluster worker) Node sends `listen({ fd })` to the primary, which opens *its own* fd of
 * that number and closes it once the last worker stops listening: the supervisor would lose
 * a socket it holds for systemd. A worker has its own copy of the fd (the supervisor passes
 * it at the same position), so it listens on that one instead:
 * - TCP: public API. `server.listen(handle)` with a socket wrapping the fd keeps the handle in
 *   the worker ("the worker uses the supplied handle, rather than talk to the primary").
 * - unix: Node routes a pipe handle to the primary like an fd, so the wrapped handle is set
 *   as `server._handle` and started with `server._listen2()`, as Node's own cluster worker
 *   does with the handle its primary sends. Where `_listen2` is missing, the fallback is the
 *   primary's route (it serves, but the supervisor's copy closes with the last worker).
 */
export function listenOnInheritedFd(server: Server, fd: number, backlog: number | undefined, inClusterWorker: boolean): void {
  if (!inClusterWorker) {
    NetServer.prototype.listen.call(server, backlog === undefined ? { fd } : { fd, backlog });
    return;
  }
  const wrapper = new Socket({ fd, readable: false, writable: false });
  const handle = (wrapper as unknown as { _handle?: { constructor?: { name?: string } } | null })._handle;
  if (handle?.constructor?.name === 'TCP') {
    // Node's types lack the documented listen(handle, backlog).
    const listen = NetServer.prototype.listen as (this: Server, handle: Socket, backlog?: number) => Server;
    if (backlog === undefined) listen.call(server, wrapper);
    else listen.call(server, wrapper, backlog);
    return;
  }
  const internals = server as unknown as {
    _handle?: unknown;
    _listen2?: (address: null, port: number, addressType: number, backlog: number | undefined) => void;
  };
  if (handle === null || handle === undefined || typeof internals._listen2 !== 'function') {
    NetServer.prototype.listen.call(server, backlog === undefined ? { fd } : { fd, backlog });
    return;
  }
  internals._handle = handle;
  internals._listen2(null, -1, -1, backlog);
}

/** Runs `close` (which closes a server bound by {@link bindUnixSocket}) from an empty directory. */
export function closeKeepingSocketFile(close: () => void): void {
  const previous = process.cwd();
  const empty = mkdtempSync(join(tmpdir(), 'grace-restart-'));
  try {
    process.chdir(empty);
    close();
  } finally {
    process.chdir(previous);
    rmdirSync(empty);
  }
}

/**
 * The HTTP/1 response a socket is writing right now, if any.
 *
 * Node attaches it as `socket._httpMessage` (ServerResponse.assignSocket) and detaches it
 * once the response is finished. Reading it at drain time spares every request of a
 * listener of ours in steady state: the adapter's overhead would otherwise be measurable.
 */
export function pendingResponse(socket: Socket): ServerResponse | undefined {
  const res = (socket as unknown as { _httpMessage?: ServerResponse | null })._httpMessage;
  return res ?? undefined;
}

// ---------------------------------------------------------------------------------------
// Live connection handoff (connection-mover.ts, connection-handoff.ts). A keep-alive socket
// may move to the successor only between two requests; Node says so nowhere publicly, so
// each of the following reads one internal, and movableInternals() checks at the first
// move that all of them are there (else the drain stays today's, with a log line).

/** Internal fields of a net.Socket that the move reads. */
interface SocketInternals {
  _handle?: { writeQueueSize?: unknown; reading?: unknown; readStop?: unknown; readStart?: unknown } | null;
  _readableState?: { resumeScheduled?: unknown };
  _paused?: unknown;
  parser?: unknown;
}

/** Internal fields of a net.Server that the successor updates when it adopts a socket. */
interface ServerInternals {
  _connections?: unknown;
}

/** The C++ ConnectionsList http.Server keeps since Node 18.14 (`closeIdleConnections()` uses it). */
interface ConnectionsList {
  idle(): { socket?: Socket | null }[];
}

const connectionsSymbols = new WeakMap<object, symbol | null>();

function connectionsList(server: Server): ConnectionsList | undefined {
  // The symbol is module-private in _http_server.js: found by its description, once per server.
  let symbol = connectionsSymbols.get(server);
  if (symbol === undefined) {
    symbol = Object.getOwnPropertySymbols(server).find((s) => s.description === 'http.server.connections') ?? null;
    connectionsSymbols.set(server, symbol);
  }
  if (symbol === null) return undefined;
  const list = (server as unknown as Record<symbol, unknown>)[symbol];
  if (typeof list !== 'object' || list === null || typeof (list as { idle?: unknown }).idle !== 'function') return undefined;
  return list as ConnectionsList;
}

/**
 * The sockets of a listening http.Server whose parser sits between two messages (the last
 * request fully received, no byte of the next one parsed), read from the same list as the
 * public `server.closeIdleConnections()`. Their response may still be running: check
 * {@link pendingResponse} too. `undefined` when this Node has no such list.
 */
export function socketsBetweenMessages(server: Server): Set<Socket> | undefined {
  const list = connectionsList(server);
  if (list === undefined) return undefined;
  const sockets = new Set<Socket>();
  for (const parser of list.idle()) {
    if (parser.socket) sockets.add(parser.socket);
  }
  return sockets;
}

/**
 * Bytes libuv has accepted for writing on `socket` but not yet handed to the kernel. A
 * handle closed with writes queued cancels them, so a socket moves only at 0.
 */
export function queuedWriteBytes(socket: Socket): number {
  const size = (socket as unknown as SocketInternals)._handle?.writeQueueSize;
  return typeof size === 'number' ? size : Number.POSITIVE_INFINITY;
}

/** True while http paused `socket` because pipelined responses back up (`socket._paused`). */
export function pausedByHttp(socket: Socket): boolean {
  return (socket as unknown as SocketInternals)._paused === true;
}

/**
 * True while a `resume()` of `socket` is scheduled for the next tick (`_readableState.resumeScheduled`).
 * That resume emits 'resume', on which http starts reading again (`_handle.readStart()`), and
 * a `pause()` in between does not cancel it: http's own 'connection' listener schedules one
 * (`socket.on('data')`), and so does every `resume()` of a paused socket. A socket must not
 * move while one is pending: the old process would read the client's next bytes after the
 * send, beside the successor (issue #25: POSTs split between the two, answered 400).
 */
export function resumePending(socket: Socket): boolean {
  return (socket as unknown as SocketInternals)._readableState?.resumeScheduled === true;
}

/** Installed as the own `readStart` of a held handle: http and net call it, and nothing is read. */
function stayStopped(this: { reading?: unknown }): number {
  this.reading = false;
  return 0;
}

/**
 * Stops reading from the kernel at once, and keeps it stopped until {@link resumeReading},
 * so that every byte the client sends from now on is read by whoever owns the fd next.
 * `pause()` does it through http's 'pause' listener (`_handle.readStop()`); the handle is
 * stopped directly when that listener did not run. While held, the handle's `readStart` does
 * nothing: a resume that was already scheduled, or any later one, cannot start reading in
 * this process again (check {@link resumePending} before the send all the same: a resume that
 * runs is a sign the socket was not at rest). Returns false if reading could not be stopped
 * (the socket must not move then).
 *
 * The supervisor relay (connection-relay.ts) needs it too: a socket received over IPC starts
 * reading as soon as Node wraps it, and the bytes libuv reads while the handle waits to be
 * sent on would be lost.
 */
export function stopReading(socket: Socket): boolean {
  socket.pause();
  const handle = (socket as unknown as SocketInternals)._handle;
  if (handle === null || handle === undefined) return false;
  if (handle.reading === true && typeof handle.readStop === 'function') {
    handle.reading = false;
    (handle.readStop as () => number).call(handle);
  }
  if (handle.reading !== false) return false;
  handle.readStart = stayStopped;
  return true;
}

/**
 * Undoes {@link stopReading} for a socket that stays in this process (the successor never
 * received it, or refused it unread): reading starts again, as http would start it, unless
 * http itself paused the socket for backpressure.
 */
export function resumeReading(socket: Socket): void {
  const handle = (socket as unknown as SocketInternals)._handle;
  if (handle !== null && handle !== undefined && Object.hasOwn(handle, 'readStart')) delete handle.readStart;
  socket.resume();
  // A resume that ran while the handle was held left the stream flowing and the handle stopped:
  // this resume() then schedules nothing, so the read starts here.
  if (handle === null || handle === undefined || handle.reading !== false || pausedByHttp(socket)) return;
  if (typeof handle.readStart !== 'function') return;
  handle.reading = true;
  (handle.readStart as () => number).call(handle);
}

/**
 * Tells a net.Server that it owns a socket given to it with `emit('connection')`, as its
 * own accept does: `socket.server` (read by http's timeout handler), `socket._server` (whose
 * close decrements the count again, so `server.close()` still completes) and
 * `server._connections`; and the server's `allowHalfOpen` (http.Server's is true), which a
 * socket received over IPC does not have.
 */
export function claimAdoptedSocket(server: Server, socket: Socket): void {
  const internals = server as unknown as ServerInternals & { allowHalfOpen?: unknown };
  if (typeof internals._connections === 'number') internals._connections += 1;
  const owned = socket as unknown as { server: Server; _server: Server; allowHalfOpen: boolean };
  owned.server = server;
  owned._server = server;
  if (typeof internals.allowHalfOpen === 'boolean') owned.allowHalfOpen = internals.allowHalfOpen;
}

/**
 * What the live handoff cannot find in this Node, checked on a listening http.Server and
 * one of its sockets; `undefined` when everything is there.
 */
export function missingMoveInternals(server: Server, socket: Socket): string | undefined {
  if (connectionsList(server) === undefined) return "http.Server's connections list (Symbol(http.server.connections)).idle()";
  const handle = (socket as unknown as SocketInternals)._handle;
  if (handle === null || handle === undefined) return 'socket._handle';
  if (typeof handle.writeQueueSize !== 'number') return 'socket._handle.writeQueueSize';
  if (typeof handle.readStop !== 'function' || typeof handle.readStart !== 'function' || typeof handle.reading !== 'boolean')
    return 'socket._handle.readStop / readStart / reading';
  if (typeof (socket as unknown as SocketInternals)._readableState?.resumeScheduled !== 'boolean')
    return 'socket._readableState.resumeScheduled';
  if (typeof (server as unknown as ServerInternals)._connections !== 'number') return 'server._connections';
  return undefined;
}

/** Writes sockets over a Node IPC channel without waiting for each one's ack (see {@link pipelinedHandleWriter}). */
export interface HandleWriter {
  /**
   * Writes `message` with `socket`'s fd, framed as Node's own `send(message, socket)` frames
   * it, and returns at once: undefined, or why nothing was written. `onWritten` runs once the
   * message (and with it the fd) is in the kernel, or could not be: only then may this
   * process close its copy of the socket.
   */
  write(message: object, socket: Socket, onWritten: (error: string | undefined) => void): string | undefined;
  /** Stops following Node's acks once the last one for a written socket has come (or the channel closes). */
  close(): void;
}

interface WriteRequest {
  handle: unknown;
  async: boolean;
  oncomplete: (status: number) => void;
}

interface StreamWrapBinding {
  WriteWrap: new () => WriteRequest;
  streamBaseState: Int32Array;
  kLastWriteWasAsync: number;
}

interface IpcPipe {
  writeUtf8String(req: WriteRequest, data: string, handle: unknown): number;
}

/** An object Node set an IPC channel up on: a ChildProcess, or `process` in a child. */
type IpcEndpoint = EventEmitter & { connected?: boolean; _handleQueue?: unknown[] | null };

let streamWrap: StreamWrapBinding | null | undefined;

/** Node's stream_wrap binding (WriteWrap), or null: `process.binding` is deprecated and may go. */
function loadStreamWrap(): StreamWrapBinding | null {
  if (streamWrap !== undefined) return streamWrap;
  try {
    const binding = (process as unknown as { binding(name: string): Partial<StreamWrapBinding> }).binding('stream_wrap');
    streamWrap =
      typeof binding.WriteWrap === 'function' && binding.streamBaseState !== undefined && typeof binding.kLastWriteWasAsync === 'number'
        ? (binding as StreamWrapBinding)
        : null;
  } catch {
    streamWrap = null; // --throw-deprecation with --pending-deprecation, or a Node without it
  }
  return streamWrap;
}

const ownSymbol = (object: object, description: string): symbol | undefined =>
  Object.getOwnPropertySymbols(object).find((s) => s.description === description);

/** The libuv pipe under `endpoint`'s channel, if it is one that frames JSON lines. */
function jsonIpcPipe(endpoint: object): IpcPipe | undefined {
  const key = ownSymbol(endpoint, 'kChannelHandle');
  const pipe = key === undefined ? undefined : (endpoint as Record<symbol, unknown>)[key];
  if (typeof pipe !== 'object' || pipe === null || typeof (pipe as Partial<IpcPipe>).writeUtf8String !== 'function') return undefined;
  // The 'advanced' serialization frames messages differently; only 'json' carries kJSONBuffer.
  return ownSymbol(pipe, 'kJSONBuffer') === undefined ? undefined : (pipe as IpcPipe);
}

/**
 * Sends sockets over Node's IPC channel many at a time. `child.send(message, socket)` sends
 * one handle per round trip (Node holds the next one until the peer's NODE_HANDLE_ACK): at
 * about 1 ms a round trip under load, 5 000 connections take seconds. This writes each
 * message as Node frames it (a JSON line `{cmd: 'NODE_HANDLE', type: 'net.Socket', msg}`
 * with the fd in the same sendmsg, which the kernel never merges with the next), so the
 * receiving Node handles it exactly as one of its own; it just does not wait.
 *
 * The receiver still answers each with NODE_HANDLE_ACK, or NODE_HANDLE_NACK when the fd did
 * not arrive (its fd limit, say): they come back in order, and `onRefused` gets each socket
 * the peer never received, so the caller can serve it again. Node's own ack handler asserts a
 * queue of its own handle sends on every ack; one is provided for ours.
 *
 * Internals: `process.binding('stream_wrap').WriteWrap`, the channel's libuv pipe (the
 * `kChannelHandle` symbol) and its `writeUtf8String`, the JSON framing, `_handleQueue` and the
 * `internalMessage` event. Covered by packages/core/test/server-internals.test.mjs. Returns
 * undefined when one is missing: the caller sends one at a time with `send()` then.
 */
export function pipelinedHandleWriter(endpoint: object, onRefused: (socket: Socket) => void): HandleWriter | undefined {
  const binding = loadStreamWrap();
  const target = endpoint as IpcEndpoint;
  if (binding === null || typeof target.prependListener !== 'function' || jsonIpcPipe(endpoint) === undefined) return undefined;
  /** Sockets written, in order, whose NODE_HANDLE_ACK has not come yet. */
  const unanswered: Socket[] = [];
  let closing = false;

  const onInternalMessage = (message: unknown): void => {
    const cmd = (message as { cmd?: unknown } | null)?.cmd;
    if ((cmd !== 'NODE_HANDLE_ACK' && cmd !== 'NODE_HANDLE_NACK') || unanswered.length === 0) return;
    target._handleQueue ??= []; // Node's listener runs next and needs it
    const socket = unanswered.shift() as Socket;
    if (cmd === 'NODE_HANDLE_NACK') onRefused(socket);
    if (closing && unanswered.length === 0) stop();
  };
  const stop = (): void => {
    target.removeListener('internalMessage', onInternalMessage);
    target.removeListener('disconnect', stop);
  };
  target.prependListener('internalMessage', onInternalMessage);
  target.once('disconnect', stop);

  return {
    write(message, socket, onWritten) {
      const pipe = target.connected === false ? undefined : jsonIpcPipe(endpoint);
      if (pipe === undefined) return 'the channel is closed';
      const handle = (socket as unknown as SocketInternals)._handle;
      if (handle === null || handle === undefined) return 'the socket is closed';
      const req = new binding.WriteWrap();
      req.handle = pipe;
      req.async = false;
      req.oncomplete = (status) => onWritten(status < 0 ? `write failed (${status})` : undefined);
      const status = pipe.writeUtf8String(req, `${JSON.stringify({ cmd: 'NODE_HANDLE', type: 'net.Socket', msg: message })}\n`, handle);
      if (status < 0) return `write failed (${status})`;
      unanswered.push(socket);
      if (binding.streamBaseState[binding.kLastWriteWasAsync] === 0) process.nextTick(onWritten, undefined);
      return undefined;
    },
    close() {
      closing = true;
      if (unanswered.length === 0) stop();
    },
  };
}

/** A TCP socket bound and not listened on by this process ({@link bindWithoutListening}). */
export interface BoundTcpSocket {
  readonly fd: number;
  close(): void;
}

/**
 * Binds a TCP socket to `host` (an IP address; undefined: every address, as `listen(port)`
 * does) and `port` without accepting on it, for `grace-restart run --listen`: the supervisor
 * holds it as systemd holds a `.socket` unit's and its workers listen on their copies. The
 * first worker's listen(2) puts the socket in the LISTEN state, which lasts while any process
 * holds it, so a connect made while no worker runs waits in its backlog instead of being
 * refused.
 *
 * Node has no public API for this: every `listen()` also accepts, which would take connections
 * away from the workers. `net._createServerHandle` is what cluster's primary uses to bind a
 * socket its workers listen on. Returns a negative errno when the bind fails, and undefined
 * when this Node has no such function (the caller lets cluster bind, as without --listen).
 */
export function bindWithoutListening(host: string | undefined, port: number): BoundTcpSocket | number | undefined {
  const create = (net as unknown as { _createServerHandle?: unknown })._createServerHandle;
  if (typeof create !== 'function') return undefined;
  const family = host === undefined ? undefined : isIP(host);
  const handle: unknown = create(host ?? null, port, family, undefined, 0);
  if (typeof handle === 'number') return handle;
  const wrap = handle as { fd?: unknown; close?: unknown } | null;
  if (typeof wrap?.fd !== 'number' || wrap.fd < 0 || typeof wrap.close !== 'function') return undefined;
  const fd = wrap.fd;
  const close = wrap.close.bind(wrap) as () => void;
  return { fd, close };
}
