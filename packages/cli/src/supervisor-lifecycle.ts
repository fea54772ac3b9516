/**
 * The lifecycle of the `grace-restart run` supervisor, written down as a table of state ×
 * event, like core's lifecycle.ts for one process. supervisor.ts looks every event up here and
 * runs the action the table names, in one switch; the CLI README prints the same table (a test
 * keeps the two equal).
 *
 * The rules the table keeps: once stopping (or handed over to a new supervisor), nothing starts
 * serving again and no upgrade starts; a second stop signal kills in every state; SIGHUP never
 * stops anything. A stop signal is `stop` the first time and `stop-again` after that, counted
 * where the signals arrive (as core counts its own).
 */

/** Where the supervisor is in its life. */
export type SupervisorStateName =
  /** The first workers are starting; nothing reported ready yet. */
  | 'starting'
  /** Serving: every slot has a worker (or a crash restart pending). */
  | 'running'
  /** A rolling upgrade replaces the workers one slot at a time. */
  | 'upgrading'
  /** A new supervisor is starting with this one's sockets (`upgrade --supervisor`, SIGUSR1). */
  | 'upgrading-supervisor'
  /** A new supervisor serves: this one drains its workers and exits 0, never to serve again. */
  | 'handed-over'
  /** Told to stop (or giving up): draining every worker, then exit. Never serves again. */
  | 'stopping'
  /** The workers are gone; the process exits. */
  | 'stopped';

/** What can happen to the supervisor. */
export type SupervisorEvent =
  /** The first workers are ready and the PID file is written. */
  | 'start-done'
  /** A first worker failed to start, or the PID file could not be written. */
  | 'start-failed'
  /** SIGUSR2, `grace-restart upgrade`, or a `--watch` change. */
  | 'upgrade'
  /** The rolling upgrade ended: every slot replaced, or rolled back. */
  | 'upgrade-done'
  /** SIGUSR1, or `grace-restart upgrade --supervisor`. */
  | 'supervisor-upgrade'
  /** The new supervisor served through its probation: it is the service now. */
  | 'supervisor-upgrade-done'
  /** The new supervisor failed (or the upgrade was refused before one started). */
  | 'supervisor-upgrade-failed'
  /** The first SIGTERM/SIGINT. */
  | 'stop'
  /** A later SIGTERM/SIGINT: the operator insists. */
  | 'stop-again'
  /** SIGHUP. */
  | 'hup'
  /** A serving worker exited without being told to (crash, its own exit, someone's kill). */
  | 'crash'
  /** `--max-crashes` crashes within a minute. */
  | 'crash-loop'
  /**
   * The workers of a newly promoted generation crashed like a bad release (twice within
   * `--rollback-window` of its promotion) and the release before it is still on disk.
   */
  | 'bad-release'
  /** A ready worker's RSS stayed above `--max-memory`. */
  | 'over-memory'
  /** Every worker is gone after a stop or a handover. */
  | 'drained';

/** What the supervisor does in answer. */
export type SupervisorAction =
  /** Report ready (systemd's READY=1, or the predecessor's ready pipe), start watching. */
  | 'serve'
  /** Stop the workers that did start, exit 1 with the reason. */
  | 'fail-start'
  /** Start a rolling upgrade. */
  | 'rolling-upgrade'
  /** Answer with the rolling upgrade already running. */
  | 'join-upgrade'
  /** Answer with a failed outcome saying why, change nothing. */
  | 'refuse-upgrade'
  /** Report the upgrade's outcome (systemd's READY=1 with STATUS=). */
  | 'finish-upgrade'
  /** Start a new supervisor with this one's sockets. */
  | 'start-new-supervisor'
  /** Answer with the supervisor upgrade already running. */
  | 'join-supervisor-upgrade'
  /** Answer with a failed outcome saying why, change nothing. */
  | 'refuse-supervisor-upgrade'
  /** Name the new supervisor as systemd's main process, drain every worker, exit 0. */
  | 'retire'
  /** The new supervisor is stopped: this one serves on and names itself in the PID file again. */
  | 'serve-on'
  /** STOPPING=1, drain every worker, exit 0. */
  | 'drain-and-stop'
  /** Abort the rolling upgrade (its new worker is stopped), then as drain-and-stop. */
  | 'abort-upgrade-and-stop'
  /** Stop the new supervisor, then as drain-and-stop. */
  | 'abort-handover-and-stop'
  /** Already draining: say so, the drain goes on. */
  | 'keep-draining'
  /** SIGKILL every worker, remove the PID file, exit 128 + signal at once. */
  | 'kill-now'
  /** Send SIGHUP to the ready workers (their onReload). */
  | 'forward-hup'
  /** Restart the crashed worker's slot with backoff. */
  | 'restart-slot'
  /** Not serving: the exit is logged, nothing restarts. */
  | 'note-exit'
  /** A crash loop: drain the rest, exit 1. */
  | 'give-up'
  /** Say so loudly, then a rolling upgrade to the previous release. */
  | 'roll-back-release'
  /** Start a new worker for the slot, then retire the one over the limit (its connections move). */
  | 'replace-worker'
  /** Exit with the code the stop decided (0, or 1 after a failure). */
  | 'exit'
  | 'ignore';

/** One cell of the table. */
export interface SupervisorTransition {
  to: SupervisorStateName;
  action: SupervisorAction;
}

type Row = Readonly<Record<SupervisorEvent, SupervisorTransition>>;

const go = (to: SupervisorStateName, action: SupervisorAction): SupervisorTransition => ({ to, action });

/** What a state that is not serving answers: upgrades refused, a stop goes on, exits are logged. */
function notServing(state: SupervisorStateName, stop: SupervisorTransition): Row {
  return {
    'start-done': go(state, 'ignore'),
    'start-failed': go(state, 'ignore'),
    upgrade: go(state, 'refuse-upgrade'),
    'upgrade-done': go(state, 'ignore'),
    'supervisor-upgrade': go(state, 'refuse-supervisor-upgrade'),
    'supervisor-upgrade-done': go(state, 'ignore'),
    'supervisor-upgrade-failed': go(state, 'ignore'),
    stop,
    'stop-again': go(state, 'kill-now'),
    hup: go(state, 'forward-hup'),
    crash: go(state, 'note-exit'),
    'crash-loop': go(state, 'ignore'),
    'bad-release': go(state, 'ignore'),
    'over-memory': go(state, 'ignore'),
    drained: go('stopped', 'exit'),
  };
}

/**
 * The whole table: every state answers every event (an event that cannot happen in a state,
 * such as `upgrade-done` while running, is named there and ignored).
 */
export const SUPERVISOR_LIFECYCLE: Readonly<Record<SupervisorStateName, Row>> = {
  starting: {
    'start-done': go('running', 'serve'),
    'start-failed': go('stopping', 'fail-start'),
    upgrade: go('starting', 'refuse-upgrade'),
    'upgrade-done': go('starting', 'ignore'),
    'supervisor-upgrade': go('starting', 'refuse-supervisor-upgrade'),
    'supervisor-upgrade-done': go('starting', 'ignore'),
    'supervisor-upgrade-failed': go('starting', 'ignore'),
    stop: go('stopping', 'drain-and-stop'),
    'stop-again': go('starting', 'kill-now'),
    // Some first workers may be ready (and have an onReload) already.
    hup: go('starting', 'forward-hup'),
    // A first worker that dies is the start's failure (start-failed), not a crash to restart.
    crash: go('starting', 'note-exit'),
    'crash-loop': go('starting', 'ignore'),
    'bad-release': go('starting', 'ignore'),
    'over-memory': go('starting', 'ignore'),
    drained: go('starting', 'ignore'),
  },
  running: {
    'start-done': go('running', 'ignore'),
    'start-failed': go('running', 'ignore'),
    upgrade: go('upgrading', 'rolling-upgrade'),
    'upgrade-done': go('running', 'ignore'),
    'supervisor-upgrade': go('upgrading-supervisor', 'start-new-supervisor'),
    'supervisor-upgrade-done': go('running', 'ignore'),
    'supervisor-upgrade-failed': go('running', 'ignore'),
    stop: go('stopping', 'drain-and-stop'),
    'stop-again': go('running', 'kill-now'),
    hup: go('running', 'forward-hup'),
    crash: go('running', 'restart-slot'),
    'crash-loop': go('stopping', 'give-up'),
    'bad-release': go('upgrading', 'roll-back-release'),
    'over-memory': go('running', 'replace-worker'),
    drained: go('running', 'ignore'),
  },
  upgrading: {
    'start-done': go('upgrading', 'ignore'),
    'start-failed': go('upgrading', 'ignore'),
    upgrade: go('upgrading', 'join-upgrade'),
    'upgrade-done': go('running', 'finish-upgrade'),
    // Both at once would hand the new supervisor a generation still being replaced.
    'supervisor-upgrade': go('upgrading', 'refuse-supervisor-upgrade'),
    'supervisor-upgrade-done': go('upgrading', 'ignore'),
    'supervisor-upgrade-failed': go('upgrading', 'ignore'),
    stop: go('stopping', 'abort-upgrade-and-stop'),
    'stop-again': go('upgrading', 'kill-now'),
    hup: go('upgrading', 'forward-hup'),
    crash: go('upgrading', 'restart-slot'),
    'crash-loop': go('stopping', 'give-up'),
    // An upgrade (or a rollback) is replacing the workers already: its own failure says enough.
    'bad-release': go('upgrading', 'ignore'),
    // The upgrade replaces every worker anyway.
    'over-memory': go('upgrading', 'ignore'),
    drained: go('upgrading', 'ignore'),
  },
  'upgrading-supervisor': {
    'start-done': go('upgrading-supervisor', 'ignore'),
    'start-failed': go('upgrading-supervisor', 'ignore'),
    // The new supervisor starts the next generation from the workers serving now.
    upgrade: go('upgrading-supervisor', 'refuse-upgrade'),
    'upgrade-done': go('upgrading-supervisor', 'ignore'),
    'supervisor-upgrade': go('upgrading-supervisor', 'join-supervisor-upgrade'),
    'supervisor-upgrade-done': go('handed-over', 'retire'),
    'supervisor-upgrade-failed': go('running', 'serve-on'),
    stop: go('stopping', 'abort-handover-and-stop'),
    'stop-again': go('upgrading-supervisor', 'kill-now'),
    hup: go('upgrading-supervisor', 'forward-hup'),
    crash: go('upgrading-supervisor', 'restart-slot'),
    'crash-loop': go('stopping', 'give-up'),
    'bad-release': go('upgrading-supervisor', 'ignore'),
    'over-memory': go('upgrading-supervisor', 'ignore'),
    drained: go('upgrading-supervisor', 'ignore'),
  },
  // The new supervisor serves; a stop signal (systemd and Ctrl-C signal the whole group) is its.
  'handed-over': notServing('handed-over', go('handed-over', 'keep-draining')),
  stopping: notServing('stopping', go('stopping', 'keep-draining')),
  stopped: { ...notServing('stopped', go('stopped', 'ignore')), hup: go('stopped', 'ignore'), drained: go('stopped', 'ignore') },
};

/** The transition for `event` in `state`. */
export function supervisorTransition(state: SupervisorStateName, event: SupervisorEvent): SupervisorTransition {
  return SUPERVISOR_LIFECYCLE[state][event];
}

/** The states and events in the order the README's table lists them. */
export const SUPERVISOR_STATES = Object.keys(SUPERVISOR_LIFECYCLE) as SupervisorStateName[];
export const SUPERVISOR_EVENTS = Object.keys(SUPERVISOR_LIFECYCLE.starting) as SupervisorEvent[];

/**
 * The table as the CLI README prints it (event ↓, state →; a cell is the action, and where the
 * state changes, `→ state`). A test checks the README holds exactly this text.
 */
export function supervisorLifecycleMarkdown(): string {
  const header = ['event ↓ · state →', ...SUPERVISOR_STATES.map((s) => `\`${s}\``)];
  const rows = SUPERVISOR_EVENTS.map((event) => [
    `\`${event}\``,
    ...SUPERVISOR_STATES.map((state) => {
      const { to, action } = supervisorTransition(state, event);
      return to === state ? action : `${action} → \`${to}\``;
    }),
  ]);
  // Padded as the formatter (Biome) pads a Markdown table, so the README stays formatted.
  const widths = header.map((_, column) => Math.max(...[header, ...rows].map((row) => (row[column] ?? '').length)));
  const line = (cells: string[]): string => `| ${cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join(' | ')} |`;
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
