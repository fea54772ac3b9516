/**
 * The one race every new process is put through: a successor (handoff.ts), a supervisor's
 * worker and a new supervisor (both in `@grace-restart/cli`) are each started, then watched
 * until the first of: its ready report, its exit, an error, a deadline, or an abort (the
 * process that started it is stopping). What a result means (a probation that reaches its
 * deadline has passed) and what to do with the child (stop it, keep it) is the caller's.
 *
 * Internal: exported through `@grace-restart/core/internal` for the CLI, not public API.
 */

/** What {@link awaitReady} listens to: a ChildProcess, or a cluster Worker. */
export interface ReadyChild {
  once(event: 'exit', listener: (code: number | null, signal: string | null) => void): unknown;
  once(event: 'error', listener: (error: Error) => void): unknown;
  removeListener(event: 'exit', listener: (code: number | null, signal: string | null) => void): unknown;
  removeListener(event: 'error', listener: (error: Error) => void): unknown;
}

/** How the race ended. */
export type ReadyRace<T> =
  /** The child's ready report, as `onReady` passed it on. */
  | { kind: 'ready'; report: T }
  /** The child exited first (`signal`: a signal name, as ChildProcess and cluster's Worker give it). */
  | { kind: 'exited'; code: number | null; signal: string | null }
  /** The child emitted `error` first (it could not be spawned, or not signalled). */
  | { kind: 'error'; error: Error }
  /** `timeout` ms passed first. */
  | { kind: 'timeout' }
  /** `signal` aborted first (or had already). */
  | { kind: 'aborted' };

export interface AwaitReadyOptions<T> {
  /** Ms before the race ends with `timeout`. */
  timeout: number;
  /** Ends the race with `aborted`. */
  signal?: AbortSignal | undefined;
  /**
   * Listens for the child's ready report, however it comes (a line on a pipe, an IPC message):
   * calls `ready(report)` when it does, and returns what stops listening. Without it nothing but
   * an exit, an error, the deadline or an abort ends the race (a probation).
   */
  onReady?: (ready: (report: T) => void) => () => void;
}

/**
 * Races `child`'s ready report against its exit, an error, `timeout` and `signal`; resolves
 * with the first (never rejects), every listener and the timer removed.
 */
export function awaitReady<T = void>(child: ReadyChild, options: AwaitReadyOptions<T>): Promise<ReadyRace<T>> {
  return new Promise((resolve) => {
    const { signal } = options;
    if (signal?.aborted) {
      resolve({ kind: 'aborted' });
      return;
    }
    let done = false;
    let stopListening: (() => void) | undefined;
    const finish = (race: ReadyRace<T>): void => {
      // The first one wins: a ready report that arrives with the deadline, say, finds the race over.
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.removeListener('exit', onExit);
      child.removeListener('error', onError);
      signal?.removeEventListener('abort', onAbort);
      stopListening?.();
      resolve(race);
    };
    const onExit = (code: number | null, exitSignal: string | null): void => finish({ kind: 'exited', code, signal: exitSignal });
    const onError = (error: Error): void => finish({ kind: 'error', error });
    const onAbort = (): void => finish({ kind: 'aborted' });
    const timer = setTimeout(() => finish({ kind: 'timeout' }), options.timeout);
    child.once('exit', onExit);
    child.once('error', onError);
    signal?.addEventListener('abort', onAbort, { once: true });
    stopListening = options.onReady?.((report) => finish({ kind: 'ready', report }));
    // A report given synchronously by onReady finished the race before stopListening was known.
    if (done) stopListening?.();
  });
}
