/**
 * `graceRestart(app, options)`: zero-downtime restarts for a Koa app.
 *
 * Koa has no mount event, so the app is passed in: its `listen` is replaced (on that app
 * only) so the server it creates listens through grace-restart, and the core instance is
 * put on `app.context`, Koa's prototype of every `ctx`, as `ctx.graceRestart`. Draining
 * (the `Connection: close` header, idle keep-alive closing) is done by core on the server
 * itself: no middleware runs per request.
 */
import http from 'node:http';
import type Koa from 'koa';
import { createGrace, Grace, GraceError, type GraceOptions } from '@grace-restart/core';

declare module 'koa' {
  interface BaseContext {
    /** This process's grace-restart instance (`isDraining`, `generation`, `upgrade()`…). */
    readonly graceRestart: Grace;
  }
}

/**
 * Zero-downtime restarts for a Koa app. Afterwards `app.listen(...)` listens on the socket
 * inherited from the previous version when there is one, SIGUSR2 upgrades, SIGTERM drains
 * keep-alive connections first and exits.
 *
 * @param app the Koa application.
 * @param options core options (see `GraceOptions`). Invalid options throw a `GraceError`
 *   (`GRACE_ERR_OPTIONS`) that names the option.
 * @returns the core instance: events, hooks, and the explicit form for a server you create
 *   yourself, `await grace.listen(https.createServer(tls, app.callback()), 443)`.
 * @example
 * const app = new Koa()
 * graceRestart(app, { pidFile: 'app.pid' })
 * app.use((ctx) => { ctx.body = { generation: ctx.graceRestart.generation } })
 * app.listen(3000)
 */
export function graceRestart<StateT, ContextT>(app: Koa<StateT, ContextT>, options?: GraceOptions): Grace;
/** Shares an existing instance, e.g. one per process between several apps. */
export function graceRestart<StateT, ContextT>(app: Koa<StateT, ContextT>, grace: Grace): Grace;
export function graceRestart<StateT, ContextT>(app: Koa<StateT, ContextT>, options?: GraceOptions | Grace): Grace {
  if (!isKoaApp(app)) {
    throw new GraceError('GRACE_ERR_OPTIONS', 'grace-restart: graceRestart(app, options) takes the Koa application first (new Koa())');
  }
  if (Object.hasOwn(app.context, 'graceRestart')) {
    throw new GraceError('GRACE_ERR_OPTIONS', 'grace-restart: graceRestart() was already called for this Koa app');
  }
  const grace = options instanceof Grace ? options : createGrace(options);
  loadFetchGlobals();
  Object.defineProperty(app.context, 'graceRestart', { value: grace, enumerable: true });
  // Koa's own listen is `http.createServer(app.callback()).listen(...args)`: the same, adopted first.
  const listen = (...args: unknown[]): http.Server => {
    const server = grace.adopt(http.createServer(app.callback()));
    return Reflect.apply(server.listen, server, args) as http.Server;
  };
  app.listen = listen as Koa['listen'];
  return grace;
}

/**
 * Koa 3's `ctx.body =` tests every JSON body with `instanceof ReadableStream`, `Blob` and
 * `Response`, globals Node loads on first use by compiling its bundled undici (~25 ms of CPU, more
 * on a busy core). Touched here, that happens in the boot, at boot priority, and not in the first
 * answers a new version gives while connections move to it: Koa's move p99 at half load went
 * from 50.7 to 27.7 ms (docs/benchmarks.md, Node 20). Node 22 and later load them already when
 * `node:http` is imported as ESM (core does), so there it costs nothing; on Koa 2 it only loads
 * what fetch() would.
 */
function loadFetchGlobals(): void {
  void globalThis.Response;
}

function isKoaApp(value: unknown): value is Koa {
  if (typeof value !== 'object' || value === null) return false;
  const app = value as Partial<Record<'callback' | 'use' | 'context', unknown>>;
  return typeof app.callback === 'function' && typeof app.use === 'function' && typeof app.context === 'object';
}
