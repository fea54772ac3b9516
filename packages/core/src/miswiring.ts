/**
 * An app whose server grace-restart never saw (NestJS's `app.listen()`, Hono's `serve()`):
 * looked for while this instance owns no server (foreign-listeners.ts), reported once with
 * the fix, and, once seen, its servers learnt (seen-servers.ts) so that a stop drains them.
 * What a signal does to such an app is decided here: an upgrade cannot hand over a socket
 * grace-restart does not hold, and a stop the app handles itself is left to the app.
 */
import { controlSocketFile } from './control.js';
import {
  foreignListenerMessage,
  foreignListeners,
  watchForeignListeners,
  type ForeignListener,
  type OwnedSockets,
} from './foreign-listeners.js';
import type { ListenerSet } from './listeners.js';
import type { Logger } from './logger.js';
import { SeenServers, type SeenServersDrain } from './seen-servers.js';
import { ownListeningSockets } from './socket-address.js';

export class Miswiring {
  readonly #listeners: ListenerSet;
  /** The control socket's path, when this process has one: it is grace-restart's own listener. */
  readonly #controlSocket: string | undefined;
  readonly #logger: Logger;
  readonly #seen = new SeenServers();
  readonly #stopLooking: () => void;

  constructor(listeners: ListenerSet, controlDir: string | undefined, logger: Logger) {
    this.#listeners = listeners;
    this.#controlSocket = controlDir === undefined ? undefined : controlSocketFile(process.pid, controlDir);
    this.#logger = logger;
    this.#stopLooking = watchForeignListeners(
      () => this.#owned(),
      (found) => {
        logger.error({ listeners: found }, foreignListenerMessage(found));
        this.#seen.watch();
      },
    );
  }

  /** Listening sockets grace-restart does not own, while it owns no server (else none: a second server the app keeps is its choice). */
  foreignNow(): ForeignListener[] {
    const owned = this.#owned();
    return owned.serving ? [] : foreignListeners(ownListeningSockets(), owned);
  }

  /** Logs why `trigger` is refused: with the fix when the app is miswired. */
  refused(trigger: string, message: string, starting: boolean): void {
    const foreign = starting ? this.foreignNow() : [];
    if (foreign.length === 0) this.#logger.warn({ trigger }, `ignoring ${trigger}: ${message}`);
    else this.#logger.error({ trigger, listeners: foreign }, `ignoring ${trigger}: ${foreignListenerMessage(foreign)}`);
  }

  /**
   * A stop signal while starting: true when the app serves on its own and stops on its own
   * (NestJS's enableShutdownHooks, say): grace-restart has nothing to drain, and taking the
   * signal over would make that stop lossy, so the caller leaves the stop signals to the app.
   */
  leaveStopToApp(signal: NodeJS.Signals, starting: boolean, appHandlers: number): boolean {
    const foreign = starting ? this.foreignNow() : [];
    if (foreign.length === 0) return false;
    if (appHandlers > 0) {
      this.#logger.error({ signal, listeners: foreign }, `${signal}: left to the app's own handler. ${foreignListenerMessage(foreign)}`);
      this.dispose();
      return true;
    }
    const message = `${signal}: draining the servers seen answering requests, then the onShutdown hooks. ${foreignListenerMessage(foreign)}`;
    this.#logger.error({ signal, listeners: foreign }, message);
    return false;
  }

  /** Drains the servers seen answering requests, if any were (a stop of a miswired app). */
  async drainSeen(idleGrace: number, timeoutMs: number): Promise<SeenServersDrain | undefined> {
    if (this.#seen.size === 0) return undefined;
    const seen = await this.#seen.drain({ idleGrace, timeoutMs });
    this.#logger[seen.forced > 0 ? 'warn' : 'info']({ ...seen }, `drained the ${seen.servers} server(s) grace-restart was not given`);
    return seen;
  }

  /** Stops looking and learning (the app is ready through grace-restart, or the process ends). */
  dispose(): void {
    this.#stopLooking();
    this.#seen.dispose();
  }

  #owned(): OwnedSockets {
    return {
      serving: this.#listeners.servers.length > 0 || this.#listeners.pending > 0,
      fds: new Set(this.#listeners.inheritedFds),
      controlSocket: this.#controlSocket,
    };
  }
}
