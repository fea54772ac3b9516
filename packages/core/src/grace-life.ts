/**
 * The data of each lifecycle state of a Grace instance (lifecycle.ts names the states and
 * says which event leads where), and the events with what they carry. A state's data lives
 * in the state: nothing beside it says what the state should say.
 */
import type { UpgradeError } from './errors.js';
import type { UpgradeResult } from './grace-events.js';
import type { Handover, Successor } from './handover.js';
import type { LifecycleEvent } from './lifecycle.js';
import type { DrainInfo } from './options.js';
import type { Retirement } from './supervised.js';

/** A successor that reported ready, and the verdict of its probation (handover.ts). */
export interface Upgraded {
  readonly result: UpgradeResult;
  /** Undefined once the successor served through its probation; else why it failed. */
  readonly verdict: Promise<UpgradeError | undefined>;
}

/** A successor on its way: the upgrade that `upgrade()` calls join, and what a stop aborts. */
export interface UpgradeAttempt {
  readonly promise: Promise<Upgraded>;
  readonly abort: AbortController;
}

export type Life =
  /** Listening, not yet ready; autoReady reports ready once the app's listen() calls are done. */
  | { readonly name: 'starting'; readonly autoReady: AutoReady }
  /** The `healthCheck` runs; a stop aborts it (its verdict then finds the process stopping). */
  | { readonly name: 'checking'; readonly check: AbortController }
  /** Serving; after a successor died, `relisten` binds the addresses again. */
  | { readonly name: 'ready'; readonly relisten: Promise<void> | undefined }
  | { readonly name: 'upgrading'; readonly attempt: UpgradeAttempt }
  | { readonly name: 'handed-off'; readonly handover: Handover }
  | {
      readonly name: 'stopping';
      /** False for `close()`: a stop through the API never exits the process. */
      readonly exit: boolean;
      readonly exitCode: number;
      /** This process served its addresses when told to stop: its stop may remove unix socket files. */
      readonly ownsAddresses: boolean;
    }
  | { readonly name: 'closed' };

/** A lifecycle event with what it carries. */
export type LifeEvent =
  | { readonly type: 'ready' | 'healthy' }
  | { readonly type: 'unhealthy' | 'canary-failed'; readonly reason: string }
  | { readonly type: 'upgrade'; readonly trigger: string }
  | { readonly type: 'stop'; readonly trigger: string; readonly exit: boolean }
  | { readonly type: 'stop-again' | 'reload'; readonly signal: NodeJS.Signals }
  | { readonly type: 'successor-ready'; readonly successor: Successor; readonly result: UpgradeResult }
  | { readonly type: 'replaced'; readonly retirement: Retirement }
  | { readonly type: 'successor-failed' | 'successor-lost' | 'successor-stopped' | 'relisten-failed'; readonly error: UpgradeError }
  | { readonly type: 'drain-done'; readonly reason: DrainInfo['reason'] };

// Every event of the table has a payload type, and no payload names an event the table lacks.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : never) : never;
const eventsMatchTable: Same<LifeEvent['type'], LifecycleEvent> = true;
void eventsMatchTable;

/**
 * With autoReady, a successor that has not claimed every inherited listener reports ready once
 * no `listen()` has run for this long: a release may drop or rename a listener.
 */
const LISTEN_SETTLE_MS = 1_000;

/** When autoReady may report: now, after the settle time, or not yet (a listen() is pending). */
export type ReadyWhen = 'now' | 'settle' | 'not-yet';

/** The ready report of `autoReady`, scheduled after each listen(). Part of the 'starting' state. */
export class AutoReady {
  readonly #report: () => void;
  readonly #when: () => ReadyWhen;
  #scheduled = false;
  #settleTimer: NodeJS.Timeout | undefined;
  #disposed = false;

  constructor(report: () => void, when: () => ReadyWhen) {
    this.#report = report;
    this.#when = when;
  }

  schedule(): void {
    if (this.#scheduled || this.#disposed) return;
    this.#scheduled = true;
    // Let the app's own 'listening' handlers and further listen() calls run first.
    setImmediate(() => {
      this.#scheduled = false;
      const when = this.#disposed ? 'not-yet' : this.#when();
      if (when === 'now') return this.#report();
      if (when === 'not-yet') return;
      // A listener of the predecessor is not claimed yet: the app may still listen on it, or
      // this release dropped it. Ready once no listen() has come for a while.
      clearTimeout(this.#settleTimer);
      this.#settleTimer = setTimeout(() => this.#report(), LISTEN_SETTLE_MS);
    });
  }

  /** A listen() starts: the settle time starts again after it. */
  hold(): void {
    clearTimeout(this.#settleTimer);
  }

  dispose(): void {
    this.#disposed = true;
    clearTimeout(this.#settleTimer);
  }
}
