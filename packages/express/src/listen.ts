/**
 * The `app.listen()` installed on an Express app that mounted `graceRestart()`.
 *
 * Express's own `app.listen` creates its server and calls `server.listen()` in one go, so
 * there is no moment to hand the server to grace-restart in between. This replacement
 * builds the same server (`http.createServer(app)`) and adopts it before listening;
 * nothing is patched globally.
 */
import http from 'node:http';
import type { Grace } from '@grace-restart/core';

type ListenCallback = (error?: Error) => void;

/** Returns an `app.listen(...)` that takes every signature Express's does. */
export function listenThroughGrace(grace: Grace, app: http.RequestListener): (...args: unknown[]) => http.Server {
  return (...args) => {
    const server = grace.adopt(http.createServer(app));
    const last = args.at(-1);
    if (typeof last === 'function') {
      // As Express 5 does: the callback also receives a listen error, and runs once.
      const done = once(last as ListenCallback);
      args[args.length - 1] = done;
      server.once('error', done);
    }
    return Reflect.apply(server.listen, server, args) as http.Server;
  };
}

function once(callback: ListenCallback): ListenCallback {
  let called = false;
  return (error) => {
    if (called) return;
    called = true;
    callback(error);
  };
}
