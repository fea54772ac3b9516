/**
 * The supervisor behind `grace-restart run`: it keeps one PID for the life of the service,
 * holds the listening sockets, and replaces its workers one at a time.
 *
 * Workers are cluster workers with the scheduling policy SCHED_NONE: the first worker's
 * `listen()` makes the supervisor bind the address, and every later worker receives the
 * same socket, which the supervisor never accepts on. So the socket stays open while any
 * worker lives, and a worker that drains (core's keep-alive-first drain on SIGTERM) only
 * closes its own copy while its replacement keeps accepting.
 *
 * Lifecycle: the table is supervisor-lifecycle.ts (printed in the CLI README); every event goes
 * through #dispatch, and #act runs the action the table names. While serving, a worker that
 * exits without being told to is restarted with backoff (the pending restart keeps the process
 * alive, so it never ends up idle with no worker); a crash loop ends the supervisor with a
 * non-zero code. A stop aborts a running upgrade and drains every worker at once.
 * Forking, retiring and stopping the workers themselves is workers.ts's job.
 *
 * Socket activation: sockets the supervisor inherited (systemd's `LISTEN_FDS`, or a
 * `.socket` unit's) are held here for the life of the process and given to every worker at
 * fds 3, 4, … with `LISTEN_FDS`/`LISTEN_FDNAMES`, exactly as systemd gives them; core in the
 * worker claims each by name or by the address its `listen()` asks for, and listens on its
 * own copy, so a worker that exits closes only that copy. Addresses no inherited socket
 * serves are bound through cluster as above.
 *
 * A replaced worker whose replacement adopts connections (both run with core's
 * `moveConnections`, and say so in their ready report) is sent `retire` instead of SIGTERM:
 * it moves its idle keep-alive connections here and they are relayed to the replacement
 * (core's connection-relay.ts), so those clients keep their TCP connections.
 */
import { realpathSync } from 'node:fs';
import { type Logger, removePidFile, writePidFile } from '@grace-restart/core';
import { type AnswerCounts, type BootPriority, type InheritedFd, signalExitCode, type UpgradeOutcome } from '@grace-restart/core/internal';
import type { HandoverResult, SupervisorHandover, SupervisorHandoverOutcome } from './supervisor-handover.js';
import { type SupervisorAction, type SupervisorEvent, type SupervisorStateName, supervisorTransition } from './supervisor-lifecycle.js';
import type { SupervisorService } from './supervisor-service.js';
import { MemoryWatch } from './memory-limit.js';
import type { CanarySettings } from './canary.js';
import { BAD_RELEASE_CRASHES, Releases } from './releases.js';
import { failedOutcome, rollingUpgrade } from './rolling-upgrade.js';
import type { WorkerCommand } from './worker-command.js';
import { type GenerationAnswers, type WorkerRecord, type WorkerState, WorkerPool } from './workers.js';

export type { WorkerState };

export type { UpgradeOutcome };

/** Options of a {@link Supervisor}. */
export interface SupervisorOptions {
  command: WorkerCommand;
  /** Directory the service was started from (logical: a `current` symlink is followed). */
  startDir: string;
  workers: number;
  readyTimeout: number;
  drainTimeout: number;
  killTimeout: number;
  shutdownDelay: number;
  pidFile: string | undefined;
  /** Path (usually a symlink) whose target change triggers an upgrade. */
  watch: string | undefined;
  watchInterval: number;
  /** Generation of the first workers: 1, or the one after the workers of the supervisor this one replaces. */
  generation?: number;
  /** Listening sockets this process inherited (socket activation) or holds (`--listen`), passed on to every worker. */
  listeners?: readonly InheritedFd[];
  /** After the first workers are ready: why a socket the supervisor holds (`--listen`) is not served, or undefined. */
  unservedListeners?: () => string | undefined;
  /** Worker crashes within a minute that end the supervisor (a crash loop). Default {@link CRASH_LOOP_COUNT}. */
  maxCrashes?: number;
  /**
   * How long after a promotion a generation whose workers crash twice is rolled back to the
   * previous release (ms; 0: never). Default {@link ROLLBACK_WINDOW_MS}.
   */
  rollbackWindow?: number;
  /** The first new worker of a rolling upgrade is a canary judged by its answers (`--canary-window`); undefined: none. */
  canary?: CanarySettings | undefined;
  /** A ready worker whose RSS stays above this many bytes is replaced (`--max-memory`); undefined: no limit. */
  maxMemory?: number | undefined;
  /** How a worker (and a new supervisor) boots while others serve (issue #29); default: not niced. */
  bootPriority?: BootPriority;
  /** Whether processes other than this supervisor's workers serve now (the supervisor this one replaces). */
  othersServe?: () => boolean;
  logger: Logger;
  /** What the supervisor tells systemd and the supervisor it replaces. */
  service: SupervisorService;
  /** Starts a new supervisor with this one's sockets (`upgrade --supervisor`). */
  handover: SupervisorHandover;
  /** Ends the process with `code` once what it owes is flushed (after a drain). */
  exit: (code: number) => void;
  /** Ends the process with `code` at once (a second stop signal). */
  exitNow: (code: number) => void;
}

/** What `grace-restart status` prints. */
export interface SupervisorStatus {
  mode: 'supervisor';
  pid: number;
  state: SupervisorStateName;
  generation: number;
  uptimeMs: number;
  workers: { pid: number; slot: number; generation: number; state: WorkerState; uptimeMs: number; answers: AnswerCounts | undefined }[];
  /** Answers per generation since this supervisor started (each worker reports every second). */
  generations: GenerationAnswers[];
  lastUpgrade: UpgradeOutcome | undefined;
  /** The directory the workers' release runs from (a `current` symlink resolved). */
  release: string;
  /** Bad releases rolled back to the previous one since this supervisor started. */
  rollbacks: number;
}

/**
 * The supervisor's state with the data that belongs to it, and nothing beside it that says
 * what the state should say: a running upgrade is the state `upgrading`, a stop's exit code is
 * in `stopping`. The table (supervisor-lifecycle.ts) decides every change.
 */
type SupervisorLife =
  | { kind: 'starting' }
  | { kind: 'running' }
  | { kind: 'upgrading'; promise: Promise<UpgradeOutcome>; abort: AbortController }
  | { kind: 'upgrading-supervisor'; promise: Promise<SupervisorHandoverOutcome>; abort: AbortController }
  /** `done`: the drain of this supervisor's workers; the process then exits 0. */
  | { kind: 'handed-over'; done: Promise<void> }
  /** `failure`: why the supervisor gives up (`could not start: …`): it exits 1; undefined for a stop on request. */
  | { kind: 'stopping'; done: Promise<void>; failure: string | undefined }
  | { kind: 'stopped' };

/** What came with an event, for the action that answers it. */
interface EventDetail {
  trigger?: string;
  signal?: NodeJS.Signals;
  /** Why the start failed, or the crash loop's line. */
  error?: string;
  outcome?: UpgradeOutcome;
  handover?: HandoverResult;
  /** The release directory a rollback goes back to. */
  release?: string;
  /** A worker over `--max-memory`, and its RSS in bytes. */
  overMemory?: { record: WorkerRecord; rss: number };
  exited?: { record: WorkerRecord; code: number | null; signal: string | null };
}

/** `value`, which the table guarantees the event carries. */
function given<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`supervisor lifecycle: the event carries no ${what}`);
  return value;
}

const CRASH_WINDOW_MS = 60_000;
/** Default of `rollbackWindow`: a release that crash-loops within a minute of its promotion is rolled back. */
export const ROLLBACK_WINDOW_MS = 60_000;
/** This many crashes within CRASH_WINDOW_MS is a crash loop: the supervisor gives up. */
export const CRASH_LOOP_COUNT = 5;
const STABLE_AFTER_MS = 10_000;

export class Supervisor {
  readonly #o: SupervisorOptions;
  readonly #workers: WorkerPool;
  readonly #startedAt = Date.now();
  #life: SupervisorLife = { kind: 'starting' };
  /** Events dispatched so far: tells a nested dispatch from the action's own change of state. */
  #dispatched = 0;
  #generation: number;
  #lastUpgrade: UpgradeOutcome | undefined;
  #crashes: number[] = [];
  #consecutiveCrashes = 0;
  readonly #restartTimers = new Set<NodeJS.Timeout>();
  readonly #releases: Releases;
  #watchTimer: NodeJS.Timeout | undefined;
  #memoryWatch: MemoryWatch<WorkerRecord> | undefined;

  constructor(options: SupervisorOptions) {
    this.#o = options;
    this.#generation = options.generation ?? 1;
    this.#releases = new Releases(options.startDir, this.#generation, options.rollbackWindow ?? ROLLBACK_WINDOW_MS, options.logger);
    this.#workers = new WorkerPool({
      ...options,
      listeners: options.listeners ?? [],
      bootPriority: options.bootPriority ?? { mode: 'off', why: 'not asked for' },
      othersServe: options.othersServe ?? (() => false),
      // Not told to go: a crash, an exit of the app's own, or a signal from someone else.
      onUnbiddenExit: (record, code, signal) => this.#dispatch('crash', { exited: { record, code, signal } }),
    });
  }

  get state(): SupervisorStateName {
    return this.#life.kind;
  }

  /** Generation of the workers that serve now. */
  get generation(): number {
    return this.#generation;
  }

  /** Starts the first workers, then writes the PID file; the table says what follows either way. */
  async start(): Promise<void> {
    const slots = Array.from({ length: this.#o.workers }, (_, slot) => slot);
    const results = await Promise.allSettled(slots.map((slot) => this.#workers.spawn(this.#generation, slot)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) {
      this.#dispatch('start-failed', { error: (failed.reason as Error).message });
      return;
    }
    const unserved = this.#o.unservedListeners?.();
    if (unserved !== undefined) {
      this.#dispatch('start-failed', { error: unserved });
      return;
    }
    // Written while still starting: a stop that came meanwhile removes it again.
    if (this.#o.pidFile !== undefined && this.#life.kind === 'starting') {
      try {
        writePidFile(this.#o.pidFile);
      } catch (error) {
        const error_ = `the workers started, but the PID file ${this.#o.pidFile} could not be written: ${(error as Error).message}`;
        this.#dispatch('start-failed', { error: error_ });
        return;
      }
    }
    this.#dispatch('start-done');
  }

  /** Rolling upgrade: for each slot, start a new worker, wait until ready, drain the old one. */
  upgrade(trigger: string): Promise<UpgradeOutcome> {
    this.#dispatch('upgrade', { trigger });
    const life = this.#life;
    // Refused: the outcome saying why is the last one.
    return life.kind === 'upgrading' ? life.promise : Promise.resolve(this.#lastUpgrade as UpgradeOutcome);
  }

  /** Replaces this supervisor process (supervisor-handover.ts); resolves with the outcome. */
  upgradeSupervisor(trigger: string): Promise<SupervisorHandoverOutcome> {
    const refusal = this.#handoverRefusal();
    this.#dispatch('supervisor-upgrade', { trigger });
    const life = this.#life;
    if (life.kind === 'upgrading-supervisor') return life.promise;
    return Promise.resolve({ ok: false, oldPid: process.pid, generation: this.#generation, durationMs: 0, error: refusal });
  }

  /** A stop signal: the first drains and exits, a later one kills (`again`). */
  stop(signal: NodeJS.Signals, again = false): void {
    this.#dispatch(again ? 'stop-again' : 'stop', { signal });
  }

  /** SIGHUP: forwarded to the ready workers. */
  reload(): void {
    this.#dispatch('hup', { signal: 'SIGHUP' });
  }

  status(): SupervisorStatus {
    const now = Date.now();
    return {
      mode: 'supervisor',
      pid: process.pid,
      state: this.#life.kind,
      generation: this.#generation,
      uptimeMs: now - this.#startedAt,
      workers: this.#workers.all().map((w) => ({
        pid: w.pid,
        slot: w.slot,
        generation: w.generation,
        state: w.state,
        uptimeMs: now - w.startedAt,
        answers: w.answers,
      })),
      generations: this.#workers.answersByGeneration(),
      lastUpgrade: this.#lastUpgrade,
      release: this.#releases.current,
      rollbacks: this.#releases.rollbacks,
    };
  }

  /** `serving, generation 3, 2 workers`: systemd's STATUS= while serving. */
  #serving(): string {
    return `serving, generation ${this.#generation}, ${this.#workers.ready().length} workers`;
  }

  /** True in the states whose slots are kept filled (a crash restarts its slot). */
  #keepsSlots(): boolean {
    const { kind } = this.#life;
    return kind === 'running' || kind === 'upgrading' || kind === 'upgrading-supervisor';
  }

  /** Looks `event` up in the table, runs the action it names, and checks the state it says. */
  #dispatch(event: SupervisorEvent, detail: EventDetail = {}): SupervisorAction {
    const from = this.#life;
    const { to, action } = supervisorTransition(from.kind, event);
    this.#o.logger.debug({ event, from: from.kind, to, action }, `supervisor ${event}: ${action}`);
    const seq = ++this.#dispatched;
    this.#act(action, from, detail);
    // An action may dispatch in turn (a crash that turns out to be a bad release): then the state is that event's.
    if (seq === this.#dispatched && this.#life.kind !== to) {
      throw new Error(`supervisor lifecycle: ${action} left ${this.#life.kind}, the table says ${to}`);
    }
    return action;
  }

  /** Every action of the table, by name; the `never` check makes a new action a compile error here. */
  #act(action: SupervisorAction, from: SupervisorLife, d: EventDetail): void {
    const log = this.#o.logger;
    switch (action) {
      case 'serve':
        return this.#serve();
      case 'fail-start':
        return this.#failStart(given(d.error, 'error'));
      case 'rolling-upgrade':
        return this.#startRollingUpgrade(given(d.trigger, 'trigger'));
      case 'join-upgrade':
        log.info({ trigger: d.trigger }, 'an upgrade is already running: joining it');
        return;
      case 'refuse-upgrade':
        return this.#refuseUpgrade(given(d.trigger, 'trigger'), from);
      case 'finish-upgrade':
        this.#life = { kind: 'running' };
        this.#o.service.upgradeEnded(given(d.outcome, 'outcome'), this.#serving());
        return;
      case 'start-new-supervisor':
        return this.#startHandover(given(d.trigger, 'trigger'));
      case 'join-supervisor-upgrade':
        return;
      case 'refuse-supervisor-upgrade':
        log.warn({ trigger: d.trigger }, `not upgrading the supervisor: ${this.#handoverRefusal(from)}`);
        return;
      case 'retire':
        return this.#retireForNewSupervisor(given(d.handover, 'handover').outcome);
      case 'serve-on':
        return this.#serveOn(given(d.handover, 'handover'));
      case 'abort-upgrade-and-stop':
      case 'abort-handover-and-stop':
        if (from.kind === 'upgrading' || from.kind === 'upgrading-supervisor') from.abort.abort();
        return this.#stopOnRequest(given(d.signal, 'signal'), from);
      case 'drain-and-stop':
        return this.#stopOnRequest(given(d.signal, 'signal'), from);
      case 'keep-draining':
        return this.#keepDraining(from, d.signal);
      case 'kill-now':
        return this.#killNow(given(d.signal, 'signal'));
      case 'forward-hup':
        return this.#forward('SIGHUP');
      case 'restart-slot': {
        const { record, code, signal } = given(d.exited, 'exited worker');
        return this.#restartAfterCrash(record, code, signal);
      }
      case 'note-exit': {
        const { record, code, signal } = given(d.exited, 'exited worker');
        log.info({ workerPid: record.pid, code, signal }, 'worker exited');
        return;
      }
      case 'replace-worker': {
        const { record, rss } = given(d.overMemory, 'worker over the memory limit');
        return this.#replaceWorker(record, rss);
      }
      case 'roll-back-release':
        return this.#rollBackRelease(given(d.release, 'release'));
      case 'give-up':
        return this.#giveUp(from, given(d.error, 'error'));
      case 'exit':
        return this.#exit(from);
      case 'ignore':
        return;
      default: {
        const unhandled: never = action;
        throw new Error(`supervisor lifecycle: no code for the action ${String(unhandled)}`);
      }
    }
  }

  #serve(): void {
    this.#life = { kind: 'running' };
    this.#watch();
    this.#watchMemory();
    this.#o.logger.info({ workerPids: this.#workers.pids(), generation: this.#generation }, 'supervisor ready');
    this.#o.service.ready(this.#serving());
  }

  #failStart(error: string): void {
    this.#life = { kind: 'stopping', failure: `could not start: ${error}`, done: this.#workers.stopAll() };
    this.#whenDrained(this.#life.done);
  }

  #keepDraining(from: SupervisorLife, signal: EventDetail['signal']): void {
    this.#o.logger.info(
      { signal },
      from.kind === 'handed-over'
        ? `${signal}: this supervisor is already draining its workers after handing over`
        : `${signal}: this supervisor is already stopping`,
    );
  }

  /** A crash loop: the workers keep dying, so the supervisor drains what is left and stops. */
  #giveUp(from: SupervisorLife, error: string): void {
    if (from.kind === 'upgrading' || from.kind === 'upgrading-supervisor') from.abort.abort();
    this.#life = { kind: 'stopping', failure: `stopped: ${error}`, done: this.#drain('crash-loop', from) };
    this.#whenDrained(this.#life.done);
  }

  #whenDrained(done: Promise<void>): void {
    void done.then(() => this.#dispatch('drained'));
  }

  /** A bad release: the previous one's workers replace its workers, slot by slot, as an upgrade does. */
  #rollBackRelease(release: string): void {
    const now = Date.now();
    this.#o.logger.error(
      { generation: this.#generation, badRelease: this.#releases.current, release },
      `bad release: the workers of generation ${this.#generation} crashed ${BAD_RELEASE_CRASHES} times within ${Math.round(this.#releases.sincePromotion(now) / 1000)} s of its promotion; rolling back to the previous release ${release}`,
    );
    this.#startRollingUpgrade('rollback', release);
  }

  /** A rolling upgrade to what the start directory points to now, or (a rollback) to `release`. */
  #startRollingUpgrade(trigger: string, release?: string): void {
    const abort = new AbortController();
    const { logger, service, workers: slots, canary } = this.#o;
    const context = { workers: this.#workers, releases: this.#releases, slots, canary, logger, service, generation: this.#generation };
    const promise = rollingUpgrade(context, trigger, abort.signal, release).then((outcome) => {
      this.#lastUpgrade = outcome;
      if (outcome.ok) this.#generation = outcome.generation;
      this.#dispatch('upgrade-done', { outcome });
      return outcome;
    });
    this.#life = { kind: 'upgrading', promise, abort };
  }

  #refuseUpgrade(trigger: string, from: SupervisorLife): void {
    // The table refuses upgrades while starting, handing over, handed over or stopping.
    const why = from.kind === 'upgrading-supervisor' ? 'the supervisor itself is being upgraded' : `the supervisor is ${describe(from)}`;
    this.#lastUpgrade = failedOutcome(trigger, this.#generation, Date.now(), [], why);
    this.#o.logger.warn({ trigger }, `ignoring the upgrade: ${why}`);
  }

  /** Why a supervisor upgrade is refused in the state `life` (the table says whether it is). */
  #handoverRefusal(life: SupervisorLife = this.#life): string {
    if (life.kind === 'upgrading') return 'a rolling upgrade of the workers is running: upgrade the supervisor once it is done';
    return `the supervisor is ${describe(life)}`;
  }

  #startHandover(trigger: string): void {
    const abort = new AbortController();
    const promise = this.#o.handover.run(trigger, this.#generation, abort.signal).then((handover) => {
      this.#dispatch(handover.outcome.ok ? 'supervisor-upgrade-done' : 'supervisor-upgrade-failed', { handover });
      return handover.outcome;
    });
    this.#life = { kind: 'upgrading-supervisor', promise, abort };
  }

  /** The new supervisor serves: it becomes systemd's main process, this one drains and exits 0. */
  #retireForNewSupervisor(outcome: SupervisorHandoverOutcome): void {
    this.#o.service.handedTo(given(outcome.newPid, 'new pid'), outcome.generation);
    this.#o.logger.info({ ...outcome }, 'supervisor upgrade done: the new supervisor serves, this one drains its workers and exits');
    // The PID file names the new supervisor now: the drain leaves it, and the sockets stay for it.
    this.#life = { kind: 'handed-over', done: this.#drain('supervisor-upgrade', this.#life) };
    this.#whenDrained(this.#life.done);
  }

  #serveOn({ outcome, started }: HandoverResult): void {
    this.#life = { kind: 'running' };
    if (!started) return; // refused before anything started: nothing changed
    // The new supervisor may have written the PID file before it failed: it names this one again.
    if (this.#o.pidFile !== undefined) writePidFile(this.#o.pidFile);
    this.#o.service.supervisorUpgradeFailed(this.#generation, outcome.error ?? '');
  }

  #stopOnRequest(signal: NodeJS.Signals, from: SupervisorLife): void {
    this.#o.service.stopping();
    this.#life = { kind: 'stopping', failure: undefined, done: this.#drain(signal, from) };
    this.#whenDrained(this.#life.done);
  }

  #killNow(signal: NodeJS.Signals): void {
    this.#o.logger.warn({ signal }, 'second stop signal: killing workers');
    this.#workers.killAll();
    // No drain, but no stale PID file either (the control socket goes with the exit).
    if (this.#o.pidFile !== undefined) removePidFile(this.#o.pidFile);
    this.#o.exitNow(signalExitCode(signal));
  }

  #exit(from: SupervisorLife): void {
    this.#life = { kind: 'stopped' };
    const failure = from.kind === 'stopping' ? from.failure : undefined;
    if (failure === undefined) return this.#o.exit(0);
    this.#o.service.failed(failure);
    this.#o.logger.error({}, failure);
    this.#o.exit(1);
  }

  /**
   * Drains every worker (after `--shutdown-delay`), then removes the PID file (only if it
   * still names this process). `from`'s rolling upgrade, already aborted, is awaited so that its
   * new worker is gone too.
   */
  async #drain(signal: string, from: SupervisorLife): Promise<void> {
    const log = this.#o.logger;
    clearInterval(this.#watchTimer);
    this.#memoryWatch?.stop();
    for (const timer of this.#restartTimers) clearTimeout(timer);
    this.#restartTimers.clear();
    // Nothing to move to: the replacements stop too, every worker drains what it holds.
    this.#workers.endRelays('the supervisor is stopping');
    log.info({ signal, shutdownDelay: this.#o.shutdownDelay }, 'stopping: draining all workers');
    if (this.#o.shutdownDelay > 0) await new Promise((r) => setTimeout(r, this.#o.shutdownDelay));
    await this.#workers.stopAll();
    if (from.kind === 'upgrading') await from.promise.catch(() => undefined);
    if (this.#o.pidFile !== undefined) removePidFile(this.#o.pidFile);
    log.info({}, 'stopped');
  }

  /**
   * Sends `signal` (SIGHUP: reload) to the workers that are ready. A worker still starting
   * may not handle it yet, and an unhandled SIGHUP kills: it is not sent there.
   */
  #forward(signal: NodeJS.Signals): void {
    const ready = this.#workers.ready();
    this.#o.logger.info({ signal, workerPids: ready.map((w) => w.pid) }, `forwarding ${signal} to the workers`);
    for (const w of ready) w.worker.process.kill(signal);
  }

  #restartAfterCrash(record: WorkerRecord, code: number | null, signal: string | null): void {
    const log = this.#o.logger;
    const now = Date.now();
    this.#crashes = [...this.#crashes.filter((t) => now - t < CRASH_WINDOW_MS), now];
    this.#consecutiveCrashes = now - record.startedAt >= STABLE_AFTER_MS ? 1 : this.#consecutiveCrashes + 1;
    // A new release crashing soon after its promotion: the previous release's workers take over (if the state allows).
    const previous = this.#releases.rollbackTarget(record.generation, this.#crashes, now);
    if (previous !== undefined && supervisorTransition(this.#life.kind, 'bad-release').action !== 'ignore') {
      log.error({ workerPid: record.pid, code, signal, slot: record.slot }, 'worker crashed');
      this.#dispatch('bad-release', { release: previous });
      return;
    }
    if (this.#crashes.length >= (this.#o.maxCrashes ?? CRASH_LOOP_COUNT)) {
      const message = `crash loop: workers crashed ${this.#crashes.length} times within ${CRASH_WINDOW_MS / 1000} s (last: worker ${record.pid}, ${signal ?? `exit code ${code}`}); giving up`;
      log.error({ workerPid: record.pid, code, signal, slot: record.slot }, message);
      this.#dispatch('crash-loop', { error: message });
      return;
    }
    const delay = Math.min(100 * 2 ** (this.#consecutiveCrashes - 1), 30_000);
    log.error(
      { workerPid: record.pid, code, signal, slot: record.slot, restartInMs: delay, crashesLastMinute: this.#crashes.length },
      'worker crashed: restarting',
    );
    // Not unref'd: a supervisor whose only worker crashed must stay alive to restart it.
    const timer = setTimeout(() => {
      this.#restartTimers.delete(timer);
      if (!this.#keepsSlots()) return;
      // An upgrade may have filled the slot meanwhile.
      if (this.#workers.inSlot(record.slot).length > 0) return;
      this.#workers.spawn(this.#generation, record.slot, this.#life.kind === 'upgrading' ? this.#life.abort.signal : undefined).then(
        (fresh) => this.#keepOnePerSlot(fresh),
        (error: unknown) => {
          if (!this.#keepsSlots()) return;
          log.error({ slot: record.slot }, `restart failed: ${(error as Error).message}`);
          // A replacement that never got ready counts as one more crash of this slot.
          this.#restartAfterCrash({ ...record, startedAt: Date.now() }, null, null);
        },
      );
    }, delay);
    this.#restartTimers.add(timer);
  }

  /** A crash restart that got ready beside a worker an upgrade brought to the same slot retires. */
  #keepOnePerSlot(fresh: WorkerRecord): void {
    const newer = this.#workers.inSlot(fresh.slot).some((w) => w !== fresh && w.generation > fresh.generation);
    if (newer) this.#workers.retire(fresh);
  }

  /** `--max-memory`: samples the ready workers' RSS while running (an upgrade replaces them anyway). */
  #watchMemory(): void {
    const limit = this.#o.maxMemory;
    if (limit === undefined) return;
    this.#memoryWatch = new MemoryWatch(
      limit,
      () => (this.#life.kind === 'running' ? this.#workers.ready() : []),
      (record, rss) => this.#dispatch('over-memory', { overMemory: { record, rss } }),
    );
  }

  /** A worker over `--max-memory`: a new one for its slot first, then the old one retires (its connections move). */
  #replaceWorker(record: WorkerRecord, rss: number): void {
    const log = this.#o.logger;
    const mib = (bytes: number): number => Math.round(bytes / 1024 ** 2);
    log.warn(
      { workerPid: record.pid, slot: record.slot, rssMiB: mib(rss), maxMemoryMiB: mib(this.#o.maxMemory ?? 0) },
      `worker ${record.pid} uses ${mib(rss)} MiB, above --max-memory: replacing it`,
    );
    this.#workers.spawn(this.#generation, record.slot).then(
      (fresh) => {
        // Stopping meanwhile: the new worker goes too. An upgrade meanwhile replaces the slot's workers itself.
        if (!this.#keepsSlots()) return this.#workers.retire(fresh);
        log.info({ workerPid: fresh.pid, replaced: record.pid, slot: record.slot }, 'worker replaced after --max-memory');
        if (this.#workers.inSlot(record.slot).includes(record)) this.#workers.retire(record, fresh);
      },
      (error: unknown) =>
        log.error({ slot: record.slot, workerPid: record.pid }, `could not replace the worker: ${(error as Error).message}`),
    );
  }

  #watch(): void {
    const path = this.#o.watch;
    if (path === undefined) return;
    let target = safeRealpath(path);
    this.#watchTimer = setInterval(() => {
      const now = safeRealpath(path);
      if (now === undefined || now === target) return;
      this.#o.logger.info({ path, from: target, to: now }, 'watched path changed: upgrading');
      target = now;
      void this.upgrade('watch');
    }, this.#o.watchInterval);
    this.#watchTimer.unref();
  }
}

function safeRealpath(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}

/** The state's name in refusals, as operators have read it: a supervisor that handed over is stopping. */
function describe(life: { kind: SupervisorStateName }): string {
  return life.kind === 'handed-over' ? 'stopping' : life.kind;
}
