/**
 * The lifecycle of one grace-restart process, written down as a table of state × event.
 * grace-lifecycle.ts looks every event up here and runs the action the table names, so what a signal
 * does at a given moment is decided in one place (and printed in the core README).
 *
 * The rule the table keeps: once told to stop, no path serves again. A stop that arrives
 * while the old process drains after a handoff (systemd and Ctrl-C signal the whole process
 * group, so the old process and its successor both get it) makes the old process finish its
 * drain and exit; if the successor then dies, the old process does not take the service
 * back, because it was told to stop too.
 */

/** Where a process is in its life. */
export type LifecycleState =
  /** Listening, not yet reported ready. */
  | 'starting'
  /** Ready as the app sees it; its `healthCheck` runs before the ready report (none: at once). */
  | 'checking'
  /** Serving. */
  | 'ready'
  /** Serving, a successor is starting. */
  | 'upgrading'
  /**
   * The successor serves; this process keeps its sockets and watches it through its probation
   * (the `probation` option), moving to it what it accepts, then stops accepting and drains.
   */
  | 'handed-off'
  /** Told to stop: draining, then exit. Never serves again. */
  | 'stopping'
  /** Done: listeners released, hooks run. */
  | 'closed';

/** What can happen to a process. */
export type LifecycleEvent =
  /** The app (or autoReady) reports ready. */
  | 'ready'
  /** The health check passed (or there is none). */
  | 'healthy'
  /** The health check failed or timed out: this process must not serve. */
  | 'unhealthy'
  /**
   * The predecessor judged this successor's answers through its probation worse than its own
   * (the `canary` option): it serves again, this process must stop without speaking for the service.
   */
  | 'canary-failed'
  /** SIGUSR2, `grace.upgrade()`, or `grace-restart upgrade`. */
  | 'upgrade'
  /** SIGTERM/SIGINT, or `grace.close()`. */
  | 'stop'
  /** A second stop signal: the operator insists. */
  | 'stop-again'
  /** SIGHUP. */
  | 'reload'
  /** The successor reported ready. */
  | 'successor-ready'
  /**
   * Under `grace-restart run`: the supervisor retires this worker in favour of a ready
   * replacement that adopts its connections (`retire`). Like a successor's ready report,
   * except that the supervisor, not this process, deals with the replacement's failures.
   */
  | 'replaced'
  /** The successor exited, timed out or could not start before it was ready. */
  | 'successor-failed'
  /** The successor crashed (non-zero exit, or a signal) after it was ready. */
  | 'successor-lost'
  /**
   * The successor exited 0 after it was ready: it was told to stop (its own SIGTERM, say
   * `kill -TERM $(cat app.pid)` right after an upgrade), so the service is stopping.
   */
  | 'successor-stopped'
  /** After losing the successor, this process could not bind its addresses again. */
  | 'relisten-failed'
  /** Every connection is gone (or the drain deadline destroyed the rest). */
  | 'drain-done';

/** What the process does in answer. */
export type LifecycleAction =
  | 'check-health'
  | 'report-ready'
  | 'stop-unhealthy'
  | 'stop-failed-canary'
  | 'spawn-successor'
  | 'join-upgrade'
  | 'refuse-upgrade'
  | 'pass-upgrade-on'
  | 'drain-for-stop'
  | 'abort-upgrade-and-drain'
  | 'forget-handoff-and-stop'
  | 'exit-now'
  | 'call-onReload'
  | 'drain-for-upgrade'
  | 'roll-back'
  | 'serve-again'
  | 'keep-draining'
  | 'stop-serving'
  | 'close'
  | 'ignore';

/** One cell of the table. */
export interface Transition {
  to: LifecycleState;
  action: LifecycleAction;
}

type Row = Partial<Record<LifecycleEvent, Transition>>;

const stay = (state: LifecycleState, action: LifecycleAction): Transition => ({ to: state, action });

/**
 * The whole table. A missing cell means the event cannot happen in that state (a successor
 * event without a successor) and is ignored.
 */
export const LIFECYCLE: Readonly<Record<LifecycleState, Row>> = {
  starting: {
    ready: { to: 'checking', action: 'check-health' },
    // The supervisor retires only ready workers; a stop is the safe answer all the same.
    replaced: { to: 'stopping', action: 'drain-for-stop' },
    upgrade: stay('starting', 'refuse-upgrade'),
    stop: { to: 'stopping', action: 'drain-for-stop' },
    'stop-again': stay('starting', 'exit-now'),
    reload: stay('starting', 'call-onReload'),
  },
  checking: {
    healthy: { to: 'ready', action: 'report-ready' },
    unhealthy: { to: 'stopping', action: 'stop-unhealthy' },
    ready: stay('checking', 'ignore'),
    replaced: { to: 'stopping', action: 'drain-for-stop' },
    upgrade: stay('checking', 'refuse-upgrade'),
    stop: { to: 'stopping', action: 'drain-for-stop' },
    'stop-again': stay('checking', 'exit-now'),
    reload: stay('checking', 'call-onReload'),
  },
  ready: {
    upgrade: { to: 'upgrading', action: 'spawn-successor' },
    stop: { to: 'stopping', action: 'drain-for-stop' },
    'stop-again': stay('ready', 'exit-now'),
    reload: stay('ready', 'call-onReload'),
    // Only after 'serve-again': the addresses could not be bound again, so nothing serves.
    'relisten-failed': { to: 'stopping', action: 'stop-serving' },
    replaced: { to: 'handed-off', action: 'drain-for-upgrade' },
    'canary-failed': { to: 'stopping', action: 'stop-failed-canary' },
  },
  upgrading: {
    upgrade: stay('upgrading', 'join-upgrade'),
    stop: { to: 'stopping', action: 'abort-upgrade-and-drain' },
    'stop-again': stay('upgrading', 'exit-now'),
    reload: stay('upgrading', 'call-onReload'),
    'successor-ready': { to: 'handed-off', action: 'drain-for-upgrade' },
    'successor-failed': { to: 'ready', action: 'roll-back' },
    // Died between its ready report and the start of our drain: we never stopped serving.
    'successor-lost': { to: 'ready', action: 'roll-back' },
    'successor-stopped': { to: 'ready', action: 'roll-back' },
  },
  'handed-off': {
    // The successor serves: an upgrade signal (systemd's `kill -USR2 $MAINPID` while this
    // process is still the main one, through the probation) goes on to it; an API call is refused.
    upgrade: stay('handed-off', 'pass-upgrade-on'),
    stop: { to: 'stopping', action: 'forget-handoff-and-stop' },
    'stop-again': stay('handed-off', 'exit-now'),
    reload: stay('handed-off', 'ignore'),
    'successor-lost': { to: 'ready', action: 'serve-again' },
    'successor-stopped': { to: 'stopping', action: 'forget-handoff-and-stop' },
    'drain-done': { to: 'closed', action: 'close' },
  },
  stopping: {
    upgrade: stay('stopping', 'refuse-upgrade'),
    replaced: stay('stopping', 'keep-draining'),
    stop: stay('stopping', 'keep-draining'),
    'stop-again': stay('stopping', 'exit-now'),
    reload: stay('stopping', 'ignore'),
    // Told to stop: a successor that dies now is not a reason to serve again.
    'successor-lost': stay('stopping', 'keep-draining'),
    'successor-failed': stay('stopping', 'keep-draining'),
    'successor-stopped': stay('stopping', 'keep-draining'),
    'relisten-failed': stay('stopping', 'keep-draining'),
    'drain-done': { to: 'closed', action: 'close' },
  },
  closed: {
    upgrade: stay('closed', 'refuse-upgrade'),
    stop: stay('closed', 'ignore'),
    'stop-again': stay('closed', 'exit-now'),
    reload: stay('closed', 'ignore'),
  },
};

/** The transition for `event` in `state`; events that cannot happen there are ignored. */
export function transition(state: LifecycleState, event: LifecycleEvent): Transition {
  return LIFECYCLE[state][event] ?? stay(state, 'ignore');
}
