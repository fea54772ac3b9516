/**
 * Fastify's extra servers for `host: 'localhost'`.
 *
 * `fastify.listen()` with `host: 'localhost'` (its default host) binds `fastify.server` to
 * the first address localhost resolves to, then creates one more server per other address
 * (::1 beside 127.0.0.1) inside fastify/lib/server.js (`multipleBindings`) and calls
 * `listen()` on it at once: no hook reaches that server before it binds. Bound afresh in a
 * successor it would fail with EADDRINUSE (the old process still holds the port), Fastify
 * would drop it without a word, and the socket inherited for that address would keep the
 * successor from ever reporting ready.
 *
 * So while a Fastify instance boots we watch `net.Server.prototype.listen`: a server whose
 * request handler is that instance's router is handed to `claim` (grace's `adopt`) just
 * before it listens, and so takes its inherited socket. Every other server passes through.
 */
import { Server as NetServer } from 'node:net';

type AnyListen = (this: NetServer, ...args: unknown[]) => NetServer;

interface Watch {
  owns(server: NetServer): boolean;
  claim(server: NetServer): void;
}

const watches = new Set<Watch>();
// Servers already handed over: their own listen() calls the prototype's again.
const claimed = new WeakSet<NetServer>();
let original: AnyListen | undefined;

function listenThroughWatches(this: NetServer, ...args: unknown[]): NetServer {
  if (!claimed.has(this)) {
    for (const watch of watches) {
      if (!watch.owns(this)) continue;
      claimed.add(this);
      watch.claim(this);
      // claim() gave the server an own listen(), which routes through grace-restart.
      return (this.listen as AnyListen).apply(this, args);
    }
  }
  return (original as AnyListen).apply(this, args);
}

/**
 * Hands every server that routes requests to `router` (Fastify's `fastify.routing`), other
 * than `main`, to `claim` before it listens. Returns the function that stops watching.
 */
export function watchSecondaryServers(main: NetServer, router: unknown, claim: (server: NetServer) => void): () => void {
  claimed.add(main);
  const watch: Watch = { owns: (server) => server.listeners('request').includes(router as never), claim };
  watches.add(watch);
  if (original === undefined) {
    original = NetServer.prototype.listen as unknown as AnyListen;
    NetServer.prototype.listen = listenThroughWatches as unknown as NetServer['listen'];
  }
  return () => {
    if (!watches.delete(watch) || watches.size > 0 || original === undefined) return;
    // Restore only our own wrapper: one installed after it stays, and ours passes through.
    if (NetServer.prototype.listen !== (listenThroughWatches as unknown)) return;
    NetServer.prototype.listen = original as unknown as NetServer['listen'];
    original = undefined;
  };
}

/**
 * Fastify closes its extra servers with http's `close()` (and `closeAllConnections()` under
 * `forceCloseConnections: true`) as soon as the main server emits 'close', which during a
 * drain happens once the main server's own connections are gone — while the extra servers
 * still have theirs. http's close destroys idle keep-alive sockets at once, racing requests
 * clients may be sending on them. While `draining()` holds, these calls only stop accepting:
 * core's drain closes those sockets when it is safe to.
 */
export function keepConnectionsWhileDraining(server: NetServer, draining: () => boolean): void {
  const target = server as NetServer & { closeAllConnections?: () => void };
  const { close, closeAllConnections } = target;
  target.close = function (this: NetServer, callback?: (err?: Error) => void): NetServer {
    if (draining()) return NetServer.prototype.close.call(this, callback);
    return close.call(this, callback);
  };
  if (typeof closeAllConnections === 'function') {
    target.closeAllConnections = function (this: NetServer): void {
      if (!draining()) closeAllConnections.call(this);
    };
  }
}
