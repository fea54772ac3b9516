/**
 * The supervisor's workers: forking one (cluster, SCHED_NONE, with the inherited sockets at fds
 * 3, 4, …) and waiting for its ready report, retiring a replaced one (SIGTERM, or `retire` with
 * its keep-alive connections relayed to the replacement), stopping them all. Each worker's one
 * state says whether its exit is expected; an exit that is not is handed to the supervisor's
 * lifecycle (`onUnbiddenExit`), which decides about restarts.
 */
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from '@grace-restart/core';
import {
  type AnswerCounts,
  addAnswers,
  awaitReady,
  type BootPriority,
  bootPriorityEnv,
  type ConnectionRelay,
  ENV,
  type InheritedFd,
  listenFdsEnv,
  NO_ANSWERS,
  type ReadyRace,
  readWorkerMessage,
  relayConnections,
  spawnAtBootPriority,
  type SupervisorMessage,
  stopChild,
  WORKER_MESSAGE_KEY,
  type WorkerMessage,
} from '@grace-restart/core/internal';
import { releaseScript, type WorkerCommand } from './worker-command.js';

/**
 * Where one worker is in its life, the one field that says it:
 * - `starting`: forked, no ready report yet (an exit is the start's failure, never a crash);
 * - `ready`: serving (an exit is a crash: its slot is restarted);
 * - `draining`: it started draining without being told to by this supervisor (someone else's
 *   SIGTERM): it still counts as serving, and its exit is a crash;
 * - `retiring`: this supervisor told it to go (SIGTERM, or `retire` after an upgrade): its exit
 *   is expected.
 */
export type WorkerState = 'starting' | 'ready' | 'draining' | 'retiring';

export interface WorkerRecord {
  worker: Worker;
  pid: number;
  slot: number;
  generation: number;
  state: WorkerState;
  startedAt: number;
  /**
   * From the ready report: the listener names this worker adopts moved connections on, when
   * it runs with `moveConnections` (it then also understands `retire`); else undefined.
   */
  adopts: string[] | undefined;
  /** How the worker answered, as it last reported (every second while it changes). */
  answers: AnswerCounts | undefined;
}

/** A generation's answers: its workers' reports, those of the workers gone included. */
export interface GenerationAnswers extends AnswerCounts {
  generation: number;
}

/** A worker's ready report. */
type ReadyReport = Extract<WorkerMessage, { type: 'ready' }>;

/** What the worker pool needs from the supervisor. */
export interface WorkerPoolOptions {
  command: WorkerCommand;
  /** Directory the service was started from (logical: a `current` symlink is followed). */
  startDir: string;
  /** Listening sockets this process inherited (socket activation), passed on to every worker. */
  listeners: readonly InheritedFd[];
  readyTimeout: number;
  drainTimeout: number;
  killTimeout: number;
  logger: Logger;
  /** How a worker boots while others serve (GRACE_RESTART_BOOT_NICE, issue #29), planned by the CLI. */
  bootPriority: BootPriority;
  /** Whether processes other than this pool's serve the service now (the supervisor this one replaces). */
  othersServe: () => boolean;
  /** A ready (or draining) worker exited without being told to: a crash, for the lifecycle to answer. */
  onUnbiddenExit: (record: WorkerRecord, code: number | null, signal: string | null) => void;
}

const NOT_NICED: BootPriority = { mode: 'off', why: 'no other worker serves' };

export class WorkerPool {
  readonly #o: WorkerPoolOptions;
  readonly #records = new Set<WorkerRecord>();
  /** Connections being relayed from retiring workers to their replacements. */
  readonly #relays = new Set<ConnectionRelay>();
  /** The last answers of the workers that exited, summed per generation. */
  readonly #answersOfGone = new Map<number, AnswerCounts>();

  constructor(options: WorkerPoolOptions) {
    this.#o = options;
    // Must be set before the first fork: the supervisor binds, the workers accept.
    cluster.schedulingPolicy = cluster.SCHED_NONE;
  }

  /** Every worker, in the order they were forked. */
  all(): readonly WorkerRecord[] {
    return [...this.#records];
  }

  /** The workers that serve (a worker still starting may not handle a signal yet). */
  ready(): WorkerRecord[] {
    return [...this.#records].filter((w) => w.state === 'ready');
  }

  /** Workers of `slot` that serve or are about to (not those draining). */
  inSlot(slot: number): WorkerRecord[] {
    return [...this.#records].filter((w) => w.slot === slot && (w.state === 'starting' || w.state === 'ready'));
  }

  /**
   * Forks a worker of `generation` for `slot`, from the start directory (whatever release it
   * points to now) or, for a rollback, from the release directory `release`. Resolves once it
   * reports ready; rejects (after stopping it) if it exits, errors, is not ready in time, or
   * `signal` aborts (a stop).
   */
  spawn(generation: number, slot: number, signal?: AbortSignal, release?: string): Promise<WorkerRecord> {
    const worker = this.#fork(generation, release ?? this.#o.startDir);
    const record: WorkerRecord = {
      worker,
      pid: worker.process.pid ?? 0,
      slot,
      generation,
      state: 'starting',
      startedAt: Date.now(),
      adopts: undefined,
      answers: undefined,
    };
    this.#records.add(record);
    worker.on('message', (message: unknown) => this.#onMessage(record, message));
    worker.once('exit', (code, sig) => this.#onExit(record, code, sig));
    // A spawn that fails (EAGAIN, ENOMEM) or a kill that is refused (EPERM) is reported here.
    worker.on('error', (error: Error) => this.#o.logger.error({ workerPid: record.pid, slot, err: error.message }, 'worker error'));
    return this.#awaitReadyReport(record, signal);
  }

  /** Forks the worker process itself: the inherited sockets, the environment, the boot priority. */
  #fork(generation: number, startDir: string): Worker {
    const { command } = this.#o;
    const inherited = this.#o.listeners;
    // The inherited sockets at the worker's fds 3, 4, … (in this order), the IPC channel after them.
    const stdio = inherited.length === 0 ? undefined : ['inherit', 'inherit', 'inherit', ...inherited.map((l) => l.fd), 'ipc'];
    cluster.setupPrimary({
      exec: releaseScript(command, this.#o.startDir, startDir),
      args: command.args,
      execArgv: command.execArgv,
      cwd: startDir,
      stdio,
    });
    const activation = inherited.length === 0 ? {} : listenFdsEnv(inherited.map((l) => l.name));
    // Niced while it boots only when another worker serves: then its boot's CPU comes from them.
    const othersServe = this.ready().length > 0 || this.#o.othersServe();
    const priority = othersServe ? this.#o.bootPriority : NOT_NICED;
    return spawnAtBootPriority(priority, () =>
      cluster.fork({
        ...activation,
        ...bootPriorityEnv(priority),
        [ENV.supervisor]: String(process.pid),
        [ENV.generation]: String(generation),
        PWD: startDir,
      }),
    );
  }

  /** Resolves with `record` marked ready at its worker's ready report; else stops it and rejects. */
  #awaitReadyReport(record: WorkerRecord, signal: AbortSignal | undefined): Promise<WorkerRecord> {
    const { worker } = record;
    return awaitReady(worker, {
      timeout: this.#o.readyTimeout,
      signal,
      onReady: (ready: (report: ReadyReport) => void) => {
        const onMessage = (message: unknown): void => {
          const body = readWorkerMessage<WorkerMessage>(message);
          if (body?.type === 'ready') ready(body);
        };
        worker.on('message', onMessage);
        return () => worker.removeListener('message', onMessage);
      },
    }).then((race) => {
      if (race.kind === 'ready') {
        // Checked, not trusted: the type is what a worker should send.
        const adopts: unknown = race.report.adopts;
        if (Array.isArray(adopts)) record.adopts = adopts.filter((name): name is string => typeof name === 'string');
        record.state = 'ready';
        return record;
      }
      void this.#terminate(record);
      throw new Error(`worker ${record.pid} (slot ${record.slot}) ${notReadyReason(race, this.#o.readyTimeout)}`);
    });
  }

  #onMessage(record: WorkerRecord, message: unknown): void {
    const body = readWorkerMessage<WorkerMessage>(message);
    if (body === undefined) return;
    this.#o.logger.debug({ workerPid: record.pid, ...body }, `worker ${body.type}`);
    // A drain this supervisor asked for is a retirement already; one it did not is someone else's signal.
    if (body.type === 'drain-start' && record.state !== 'retiring') record.state = 'draining';
    if (body.type === 'answers') record.answers = readAnswers(body);
  }

  /** Answers per generation, oldest first: the live workers' last reports plus the sums of those gone. */
  answersByGeneration(): GenerationAnswers[] {
    const sums = new Map<number, AnswerCounts>();
    const add = (generation: number, counts: AnswerCounts, unanswered: boolean): void => {
      sums.set(generation, addAnswers(sums.get(generation) ?? NO_ANSWERS, counts, { unanswered }));
    };
    // A gone worker's unanswered requests were lost with it (#answersOfGone keeps none).
    for (const [generation, counts] of this.#answersOfGone) add(generation, counts, false);
    for (const record of this.#records) if (record.answers !== undefined) add(record.generation, record.answers, true);
    return [...sums].sort(([a], [b]) => a - b).map(([generation, counts]) => ({ generation, ...counts }));
  }

  #onExit(record: WorkerRecord, code: number | null, signal: string | null): void {
    this.#records.delete(record);
    if (record.answers !== undefined) {
      const gone = this.#answersOfGone.get(record.generation) ?? NO_ANSWERS;
      this.#answersOfGone.set(record.generation, addAnswers(gone, record.answers, { unanswered: false }));
    }
    // A worker that dies while starting is spawn's failure: an upgrade rolls back, a restart retries.
    if (record.state === 'retiring' || record.state === 'starting') {
      this.#o.logger.info({ workerPid: record.pid, code, signal }, 'worker exited');
      return;
    }
    // Not told to go: a crash, an exit of the app's own, or a signal from someone else.
    this.#o.onUnbiddenExit(record, code, signal);
  }

  /**
   * Drains a worker that has been replaced: SIGTERM, SIGKILL past the drain deadline. When
   * both it and its replacement handle moved connections, it is sent `retire` instead and its
   * connections are relayed to the replacement; the same SIGKILL deadline holds.
   */
  retire(record: WorkerRecord, replacement?: WorkerRecord): void {
    record.state = 'retiring';
    const killAfterMs = this.#o.drainTimeout + this.#o.killTimeout;
    const adopts = replacement?.adopts ?? [];
    if (
      replacement === undefined ||
      record.adopts === undefined ||
      adopts.length === 0 ||
      !record.worker.isConnected() ||
      !replacement.worker.isConnected()
    ) {
      void this.#terminate(record, killAfterMs);
      return;
    }
    const relay = relayConnections(record.worker, replacement.worker, this.#o.logger);
    this.#relays.add(relay);
    const kill = setTimeout(() => record.worker.process.kill('SIGKILL'), killAfterMs);
    record.worker.once('exit', () => {
      clearTimeout(kill);
      this.#relays.delete(relay);
    });
    const retire: SupervisorMessage = { type: 'retire', adopts };
    record.worker.send({ [WORKER_MESSAGE_KEY]: retire }, undefined, (error) => {
      // Not delivered (the worker is exiting): its exit ends the relay; SIGTERM covers a worker that lingers.
      if (error !== null) void this.#terminate(record, killAfterMs);
    });
    this.#o.logger.info(
      { workerPid: record.pid, replacementPid: replacement.pid, adopts },
      'retiring the worker: its keep-alive connections move to the replacement',
    );
  }

  #terminate(record: WorkerRecord, killAfterMs = this.#o.killTimeout): Promise<void> {
    record.state = 'retiring';
    return stopChild(record.worker.process, killAfterMs);
  }

  /** Stops every worker: SIGTERM (each drains), SIGKILL past the drain and kill deadlines. */
  async stopAll(): Promise<void> {
    await Promise.all([...this.#records].map((w) => this.#terminate(w, this.#o.drainTimeout + this.#o.killTimeout)));
  }

  /** Ends every relay: nothing to move to when the replacements stop too (`reason` is logged). */
  endRelays(reason: string): void {
    for (const relay of this.#relays) relay.end(reason);
  }

  /** SIGKILLs every worker (a second stop signal). */
  killAll(): void {
    for (const w of this.#records) w.worker.process.kill('SIGKILL');
  }

  pids(): number[] {
    return [...this.#records].map((w) => w.pid);
  }
}

/** Why a worker did not get ready, as the upgrade's outcome says it. */
function notReadyReason(race: Exclude<ReadyRace<ReadyReport>, { kind: 'ready' }>, readyTimeout: number): string {
  switch (race.kind) {
    case 'exited':
      return `exited (${race.signal === null ? `exit code ${race.code}` : `signal ${race.signal}`}) before it was ready`;
    case 'error':
      return `could not be started: ${race.error.message}`;
    case 'timeout':
      return `was not ready within ${readyTimeout} ms`;
    case 'aborted':
      return 'was stopped before it was ready: the supervisor is stopping';
    default: {
      const unknown: never = race;
      throw new Error(`no reason for ${String(unknown)}`);
    }
  }
}

/** A worker's `answers` message, checked: counts are whole numbers, anything else reads as 0. */
function readAnswers(body: Partial<AnswerCounts>): AnswerCounts {
  const count = (value: unknown): number => (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : 0);
  return { requests: count(body.requests), errors5xx: count(body.errors5xx), unanswered: count(body.unanswered) };
}
