/**
 * `fastify.graceRestart`: the small, typed view of the process's grace-restart instance
 * that routes and hooks need (is this process draining? which generation is it?).
 */
import type { Grace, GraceState, UpgradeResult } from '@grace-restart/core';

/** What `fastify.graceRestart` offers. Every getter reads the live state. */
export interface GraceRestartHandle {
  /** 1 for a process started by hand, then 2, 3… for each successor. */
  readonly generation: number;
  /** pid of the process this one took over from, if any. */
  readonly parentPid: number | undefined;
  /**
   * True from the moment this process starts letting go of its connections (stop signal,
   * `fastify.close()` or a handoff to a successor). Answer 503 on health checks then.
   */
  readonly isDraining: boolean;
  /** True once this process has reported ready. */
  readonly isReady: boolean;
  /** Lifecycle state: `starting`, `ready`, `upgrading`, `draining` or `closed`. */
  readonly state: GraceState;
  /**
   * Starts the new version of the program, hands it the listening sockets and resolves
   * once it serves; this process then drains, runs the `onClose` hooks and exits. Rejects
   * with an `UpgradeError` after a rollback, while this process keeps serving.
   */
  upgrade(): Promise<UpgradeResult>;
  /** Reports this process ready; needed only with `autoReady: false`. */
  ready(): void;
  /** The underlying core instance, for its events (`upgrade-ready`, `drain-end`…) and hooks. */
  readonly grace: Grace;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Zero-downtime restarts: state and controls of this process, from `@grace-restart/fastify`. */
    readonly graceRestart: GraceRestartHandle;
  }
}

/** Builds the handle; a frozen object of getters, so routes cannot replace its members. */
export function createHandle(grace: Grace): GraceRestartHandle {
  return Object.freeze({
    get generation() {
      return grace.generation;
    },
    get parentPid() {
      return grace.parentPid;
    },
    get isDraining() {
      return grace.isDraining;
    },
    get isReady() {
      return grace.isReady;
    },
    get state() {
      return grace.state;
    },
    upgrade: () => grace.upgrade(),
    ready: () => grace.ready(),
    grace,
  });
}
