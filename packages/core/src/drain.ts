/**
 * Keep-alive-first drain: how an old process lets go of its connections without failing
 * a request.
 *
 * Closing an idle keep-alive socket at once (what `server.close()` does since Node 19, and
 * what http-terminator, stoppable and `fastify.close()` do) races a request the client may
 * already have on the wire: that request is reset. Instead, once draining:
 * - every response not yet started, and every response to a later request, carries
 *   `Connection: close`, so Node closes the socket right after it and the client opens its
 *   next connection to the successor;
 * - a socket is destroyed only after it has stayed idle (no response pending, no byte
 *   received) for `idleGrace` ms, measured from the drain start at the earliest;
 * - upgraded sockets (WebSocket) and HTTP/2 sessions are left to the app's `onDrain` hooks
 *   and to GOAWAY; plain `net` connections to the app;
 * - at `timeout` whatever is left is destroyed and counted.
 */
import { Server as HttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { Server as HttpsServer } from 'node:https';
import type { Http2Session } from 'node:http2';
import type { Server, Socket } from 'node:net';
import { Server as TlsServer } from 'node:tls';
import { pendingResponse } from './server-internals.js';

const kUpgraded = Symbol('grace-restart.upgraded');

interface TrackedSocket extends Socket {
  [kUpgraded]?: boolean;
}

/** Figures of one finished drain, for logs and events. */
export interface DrainResult {
  durationMs: number;
  /** Connections open when the drain started. */
  connections: number;
  /** Idle keep-alive sockets destroyed after their grace period. */
  closedIdle: number;
  /** Connections still open at the deadline, destroyed then. */
  forced: number;
  /** HTTP/2 sessions sent GOAWAY. */
  sessions: number;
  /** Keep-alive connections moved to the successor before the drain (0 for a stop). */
  moved: number;
}

/** Tracks the connections of one server from the moment it listens. */
export class ConnectionTracker {
  /** Every accepted connection, for the deadline. */
  readonly connections = new Set<Socket>();
  /** Connections that carry HTTP/1 and may be closed once idle. */
  readonly httpSockets = new Set<TrackedSocket>();
  readonly sessions = new Set<Http2Session>();
  /** Plain HTTP/1 (not TLS): its idle keep-alive sockets may move to a successor (connection-mover.ts). */
  readonly movable: boolean;
  #draining = false;
  #closingRequests = false;
  readonly #installed: [string, (...args: unknown[]) => void][] = [];

  constructor(readonly server: Server) {
    const isHttp1 = server instanceof HttpServer || server instanceof HttpsServer;
    const isTls = server instanceof TlsServer;
    this.movable = isHttp1 && !isTls;
    this.#on('connection', (socket: Socket) => {
      this.connections.add(socket);
      if (isHttp1 && !isTls) this.httpSockets.add(socket);
      socket.once('close', () => {
        this.connections.delete(socket);
        this.httpSockets.delete(socket);
      });
    });
    // HTTPS requests arrive on the TLS socket, not on the raw one 'connection' gives.
    if (isHttp1 && isTls) {
      this.#on('secureConnection', (socket: TrackedSocket) => {
        this.httpSockets.add(socket);
        socket.once('close', () => this.httpSockets.delete(socket));
      });
    }
    this.#on('session', (session: Http2Session) => {
      this.sessions.add(session);
      session.once('close', () => this.sessions.delete(session));
    });
    this.#markUpgradedSockets();
  }

  /** Removes every listener this tracker added to the server. */
  dispose(): void {
    for (const [event, listener] of this.#installed.splice(0)) this.server.removeListener(event, listener);
  }

  #on<A extends unknown[]>(event: string, typed: (...args: A) => void, prepend = false): void {
    const listener = typed as unknown as (...args: unknown[]) => void;
    if (prepend) this.server.prependListener(event, listener);
    else this.server.on(event, listener);
    this.#installed.push([event, listener]);
  }

  /** Stops tracking a socket that now belongs to the successor. */
  forget(socket: Socket): void {
    this.connections.delete(socket);
    this.httpSockets.delete(socket);
  }

  /** Tracks again a socket that was to move but never left (its 'close' listener is still in place). */
  restore(socket: Socket): void {
    if (socket.destroyed) return;
    this.connections.add(socket);
    if (this.movable) this.httpSockets.add(socket);
  }

  get draining(): boolean {
    return this.#draining;
  }

  /** Back to normal serving: later responses keep their connections alive. */
  stopDraining(): void {
    this.#draining = false;
  }

  /** From now on every HTTP/1 response closes its connection. */
  startDraining(): void {
    this.#draining = true;
    if (!this.#closingRequests) {
      this.#closingRequests = true;
      // Runs before the app's handler, so the header can still be set. Installed only now:
      // in steady state no listener of ours runs per request.
      this.#on(
        'request',
        (req: IncomingMessage, res: ServerResponse) => {
          if (this.#draining && req.httpVersionMajor === 1) res.setHeader('Connection', 'close');
        },
        true,
      );
    }
    for (const socket of this.httpSockets) {
      const res = pendingResponse(socket);
      if (res !== undefined && !res.headersSent) res.setHeader('Connection', 'close');
    }
  }

  /**
   * Node handles an Upgrade request as a plain request unless the server has an 'upgrade'
   * listener, so we must not add one of our own: we join only when the app adds its own.
   */
  #markUpgradedSockets(): void {
    const mark = (_req: IncomingMessage, socket: Socket): void => {
      (socket as TrackedSocket)[kUpgraded] = true;
    };
    let installed = false;
    const install = (): void => {
      if (installed) return;
      installed = true;
      this.#on('upgrade', mark, true);
    };
    if (this.server.listenerCount('upgrade') > 0) install();
    else {
      this.#on('newListener', (event: string | symbol) => {
        if (event === 'upgrade') queueMicrotask(install);
      });
    }
  }
}

/** True once `socket` was upgraded (a WebSocket, say): it is the app's now, and never moves. */
export function isUpgraded(socket: Socket): boolean {
  return (socket as TrackedSocket)[kUpgraded] === true;
}

/** Settings of one drain. */
export interface DrainSettings {
  /** How long a keep-alive socket must stay idle before it is closed (ms). */
  idleGrace: number;
  /** Hard deadline: connections still open then are destroyed (ms). */
  timeout: number;
  /** Awaited after the drain starts: the app closes WebSockets and other long-lived streams. */
  onDrain: () => Promise<void>;
  /** Ends the drain early, leaving the remaining connections open (the process serves again). */
  signal?: AbortSignal;
}

/**
 * Drains the connections of servers that have already stopped accepting.
 * Resolves when every connection is gone, at the latest at the deadline.
 */
export async function drainConnections(trackers: readonly ConnectionTracker[], settings: DrainSettings): Promise<DrainResult> {
  const started = Date.now();
  const deadline = started + settings.timeout;
  const result: DrainResult = { durationMs: 0, connections: 0, closedIdle: 0, forced: 0, sessions: 0, moved: 0 };
  for (const tracker of trackers) {
    result.connections += tracker.connections.size;
    tracker.startDraining();
    for (const session of tracker.sessions) {
      result.sessions += 1;
      session.close();
    }
  }
  const hook = settings.onDrain();
  const activity = new Map<Socket, { bytesRead: number; since: number }>();
  const pollMs = Math.min(100, Math.max(10, Math.floor(settings.idleGrace / 5)));

  await new Promise<void>((resolve) => {
    const poll = (): void => {
      if (settings.signal?.aborted) return finish();
      const now = Date.now();
      let open = 0;
      for (const tracker of trackers) {
        open += tracker.connections.size + tracker.sessions.size;
        for (const socket of tracker.httpSockets) {
          if (closeIfIdle(socket, activity, now, settings.idleGrace)) result.closedIdle += 1;
        }
      }
      if (open === 0) return finish();
      if (now >= deadline) {
        for (const tracker of trackers) {
          for (const session of tracker.sessions) session.destroy();
          for (const socket of tracker.connections) {
            result.forced += 1;
            socket.destroy();
          }
        }
        return finish();
      }
    };
    const timer = setInterval(poll, pollMs);
    const finish = (): void => {
      clearInterval(timer);
      settings.signal?.removeEventListener('abort', finish);
      resolve();
    };
    settings.signal?.addEventListener('abort', finish, { once: true });
    poll();
  });
  await hook;
  result.durationMs = Date.now() - started;
  return result;
}

/** Destroys `socket` if it has been idle for `grace` ms; returns whether it did. */
function closeIfIdle(
  socket: TrackedSocket,
  activity: Map<Socket, { bytesRead: number; since: number }>,
  now: number,
  grace: number,
): boolean {
  if (socket.destroyed || socket[kUpgraded] === true) return false;
  const res = pendingResponse(socket);
  const busy = res !== undefined && !res.writableFinished;
  const seen = activity.get(socket);
  if (seen === undefined || busy || seen.bytesRead !== socket.bytesRead) {
    activity.set(socket, { bytesRead: socket.bytesRead, since: now });
    return false;
  }
  if (now - seen.since < grace) return false;
  socket.destroy();
  return true;
}
