/**
 * `app.use(graceRestart(options))`: zero-downtime restarts for an Express app.
 *
 * graceRestart() returns a tiny Express sub-app. Mounting it makes Express emit its
 * documented 'mount' event with the parent app; at that moment the parent's `listen` is
 * replaced (on that app only) so that the server it creates listens through grace-restart,
 * and the core instance is exposed as `req.graceRestart` and `app.locals.graceRestart`.
 * Draining (the `Connection: close` header, idle keep-alive closing) is done by core on
 * the server itself, so the sub-app has nothing to do per request.
 */
import express, { type Application, type Express, type RequestHandler } from 'express';
import { createGrace, Grace, type GraceOptions } from '@grace-restart/core';
import { listenThroughGrace } from './listen.js';

declare global {
  // Express types its request through this global namespace, open for merging.
  // biome-ignore lint/suspicious/noRedeclare: declaration merging with @types/express's namespace
  namespace Express {
    interface Request {
      /**
       * This process's grace-restart instance (`isDraining`, `generation`, `upgrade()`…),
       * present once `graceRestart()` is mounted on the app with `app.use()`.
       */
      readonly graceRestart: Grace;
    }
  }
}

/** What `graceRestart()` returns: mount it with `app.use()`. */
export interface GraceRestartMiddleware extends RequestHandler {
  /**
   * The core instance: its events (`upgrade-ready`, `drain-end`…), hooks, and the
   * explicit form for a server you create yourself: `await grace.listen(server, 443)`.
   */
  readonly grace: Grace;
}

/**
 * Zero-downtime restarts for an Express app. After `app.use(graceRestart(options))`,
 * `app.listen(...)` listens on the socket inherited from the previous version when there
 * is one, SIGUSR2 upgrades, SIGTERM drains keep-alive connections first and exits.
 *
 * @param options core options (see `GraceOptions`). Invalid options throw a `GraceError`
 *   (`GRACE_ERR_OPTIONS`) that names the option.
 * @example
 * const app = express()
 * app.use(graceRestart({ pidFile: 'app.pid' }))
 * app.get('/health', (req, res) => res.sendStatus(req.graceRestart.isDraining ? 503 : 200))
 * app.listen(3000)
 */
export function graceRestart(options?: GraceOptions): GraceRestartMiddleware;
/** Shares an existing instance, e.g. one per process between several apps. */
export function graceRestart(grace: Grace): GraceRestartMiddleware;
export function graceRestart(options?: GraceOptions | Grace): GraceRestartMiddleware {
  const grace = options instanceof Grace ? options : createGrace(options);
  const sub = express();
  // The parent decides about X-Powered-By; the sub-app must not add it back.
  sub.disable('x-powered-by');
  sub.on('mount', (parent: Application) => {
    attach(parent, grace);
    leaveRequestPath(parent);
  });
  // Nothing to do per request: pass straight on, skipping a mounted app's own dispatch (it
  // swaps the request and response prototypes and runs an empty router), which measurably
  // cost throughput (bench: 12.9 % fewer req/s on a hello-world app).
  (sub as unknown as { handle: (req: unknown, res: unknown, next: (err?: unknown) => void) => void }).handle = (_req, _res, next) => next();
  Object.defineProperty(sub, 'grace', { value: grace, enumerable: true });
  return sub as unknown as GraceRestartMiddleware;
}

/** Connects `grace` to the app that mounted it; mounting again on the same app changes nothing. */
function attach(parent: Application, grace: Grace): void {
  if (parent.locals['graceRestart'] === grace) return;
  parent.locals['graceRestart'] = grace;
  // Every request of this app (and of its sub-apps) has `app.request` as prototype; the
  // types leave it out of the `Application` a 'mount' listener gets, every app has it.
  Object.defineProperty((parent as Express).request, 'graceRestart', { value: grace, configurable: true });
  parent.listen = listenThroughGrace(grace, parent) as Application['listen'];
}

/**
 * Express 5 emits 'mount' right after adding the sub-app's `mounted_app` layer to the parent's
 * router: we take that layer out again, so requests never pass through this sub-app at all
 * (with it, 3.5 % fewer req/s on a hello-world app; without, none measurable). Where the
 * router is not what Express 5 builds (Express 4 throws on `app.router`), the layer stays and
 * passes requests straight on.
 */
function leaveRequestPath(parent: Application): void {
  try {
    const stack = (parent as unknown as { router?: { stack?: { name?: string }[] } }).router?.stack;
    if (Array.isArray(stack) && stack.at(-1)?.name === 'mounted_app') stack.pop();
  } catch {
    // not Express 5's router: keep the pass-through layer
  }
}
