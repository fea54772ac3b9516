/**
 * The supervisor behind `grace-restart run`: it keeps one PID for the life of the service,
 * holds the listening sockets, and replaces its workers one at a time.
 *
 * Workers are cluster workers with the scheduling policy SCHED_NONE: the first worker's
 * `listen()` makes the supervisor bind the address, and every later worker receives the
 * same socket, which the supervisor never accepts on. So the socket stays open while any
 * worker lives, and a worker that drains (core's keep-alive-first drain on SIGTERM) only
 * closes its own copy while its replacement keeps accepting.
 */
import cluster, { type Worker } from 'node:cluster';
import { EventEmitter } from 'node:events';
import { realpathSync } from 'node:fs';
import { removePidFile, stopChild, writePidFile, type Logger } from '@grace-restart/core';
import { scriptPath, type WorkerCommand } from './worker-command.js';

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
  logger: Logger;
}

type WorkerState = 'starting' | 'ready' | 'draining';

interface WorkerRecord {
  worker: Worker;
  pid: number;
  slot: number;
  generation: number;
  state: WorkerState;
  startedAt: number;
}

/** Result of one rolling upgrade. */
export interface UpgradeOutcome {
  ok: boolean;
  trigger: string;
  generation: number;
  durationMs: number;
  replaced: { slot: number; oldPid: number | undefined; newPid: number; readyMs: number }[];
  error?: string;
}

/** What `grace-restart status` prints. */
export interface SupervisorStatus {
  pid: number;
  state: string;
  generation: number;
  uptimeMs: number;
  workers: { pid: number; slot: number; generation: number; state: WorkerState; uptimeMs: number }[];
  lastUpgrade: UpgradeOutcome | undefined;
}

const MESSAGE_KEY = 'grace-restart';
const CRASH_WINDOW_MS = 60_000;
const CRASH_LOOP_COUNT = 5;
const STABLE_AFTER_MS = 10_000;

export class Supervisor extends EventEmitter {
  readonly #o: SupervisorOptions;
  readonly #workers = new Set<WorkerRecord>();
  readonly #startedAt = Date.now();
  #state: 'starting' | 'running' | 'stopping' = 'starting';
  #generation = 1;
  #upgrade: Promise<UpgradeOutcome> | undefined;
  #lastUpgrade: UpgradeOutcome | undefined;
  #crashes: number[] = [];
  #consecutiveCrashes = 0;
  #watchTimer: NodeJS.Timeout | undefined;

  constructor(options: SupervisorOptions) {
    super();
    this.#o = options;
    // Must be set before the first fork: the supervisor binds, the workers accept.
    cluster.schedulingPolicy = cluster.SCHED_NONE;
  }

  /** Starts the first workers; resolves when all are ready, rejects if one fails to start. */
  async start(): Promise<void> {
    const log = this.#o.logger;
    const slots = Array.from({ length: this.#o.workers }, (_, slot) => slot);
    try {
      await Promise.all(slots.map((slot) => this.#spawn(1, slot)));
    } catch (error) {
      await this.#stopWorkers();
      throw error;
    }
    this.#state = 'running';
    if (this.#o.pidFile !== undefined) {
      try {
        writePidFile(this.#o.pidFile);
      } catch (error) {
        await this.#stopWorkers();
        throw new Error(`the workers started, but the PID file ${this.#o.pidFile} could not be written: ${(error as Error).message}`);
      }
    }
    this.#watch();
    log.info({ workers: this.#pids(), generation: 1 }, 'supervisor ready');
  }

  status(): SupervisorStatus {
    const now = Date.now();
    return {
      pid: process.pid,
      state: this.#upgrade ? 'upgrading' : this.#state,
      generation: this.#generation,
      uptimeMs: now - this.#startedAt,
      workers: [...this.#workers].map((w) => ({ pid: w.pid, slot: w.slot, generation: w.generation, state: w.state, uptimeMs: now - w.startedAt })),
      lastUpgrade: this.#lastUpgrade,
    };
  }

  /** Rolling upgrade: for each slot, start a new worker, wait until ready, drain the old one. */
  upgrade(trigger: string): Promise<UpgradeOutcome> {
    if (this.#upgrade) {
      this.#o.logger.info({ trigger }, 'an upgrade is already running: joining it');
      return this.#upgrade;
    }
    if (this.#state !== 'running') {
      return Promise.resolve(this.#failed(trigger, Date.now(), [], `the supervisor is ${this.#state}`));
    }
    this.#upgrade = this.#rollingUpgrade(trigger).finally(() => (this.#upgrade = undefined));
    return this.#upgrade;
  }

  /** Sends `signal` (SIGHUP: reload) to every worker. */
  forward(signal: NodeJS.Signals): void {
    for (const w of this.#workers) w.worker.process.kill(signal);
  }

  /** Drains every worker, then resolves; the PID file is removed. */
  async stop(signal: string): Promise<void> {
    if (this.#state === 'stopping') return;
    const log = this.#o.logger;
    this.#state = 'stopping';
    clearInterval(this.#watchTimer);
    log.info({ signal, shutdownDelay: this.#o.shutdownDelay }, 'stopping: draining all workers');
    if (this.#o.shutdownDelay > 0) await new Promise((r) => setTimeout(r, this.#o.shutdownDelay));
    await this.#upgrade?.catch(() => undefined);
    await this.#stopWorkers();
    if (this.#o.pidFile !== undefined) removePidFile(this.#o.pidFile);
    log.info({}, 'stopped');
  }

  /** Kills every worker at once (a second stop signal). */
  kill(): void {
    for (const w of this.#workers) w.worker.process.kill('SIGKILL');
  }

  async #rollingUpgrade(trigger: string): Promise<UpgradeOutcome> {
    const log = this.#o.logger;
    const startedAt = Date.now();
    const generation = this.#generation + 1;
    const replaced: UpgradeOutcome['replaced'] = [];
    log.info({ trigger, generation }, 'upgrade started');
    for (let slot = 0; slot < this.#o.workers; slot++) {
      const old = [...this.#workers].find((w) => w.slot === slot && w.state === 'ready');
      const slotStart = Date.now();
      let fresh: WorkerRecord;
      try {
        fresh = await this.#spawn(generation, slot);
      } catch (error) {
        const outcome = this.#failed(trigger, startedAt, replaced, (error as Error).message);
        log.error({ ...outcome }, `upgrade failed, old workers keep serving: ${outcome.error}`);
        return outcome;
      }
      replaced.push({ slot, oldPid: old?.pid, newPid: fresh.pid, readyMs: Date.now() - slotStart });
      if (old) this.#retire(old);
    }
    this.#generation = generation;
    const outcome: UpgradeOutcome = { ok: true, trigger, generation, durationMs: Date.now() - startedAt, replaced };
    this.#lastUpgrade = outcome;
    log.info({ ...outcome }, 'upgrade done');
    this.emit('upgrade', outcome);
    return outcome;
  }

  #failed(trigger: string, startedAt: number, replaced: UpgradeOutcome['replaced'], error: string): UpgradeOutcome {
    const outcome: UpgradeOutcome = { ok: false, trigger, generation: this.#generation, durationMs: Date.now() - startedAt, replaced, error };
    this.#lastUpgrade = outcome;
    this.emit('upgrade', outcome);
    return outcome;
  }

  /** Forks a worker and resolves once it reports ready; rejects (after stopping it) otherwise. */
  #spawn(generation: number, slot: number): Promise<WorkerRecord> {
    const { command, startDir } = this.#o;
    cluster.setupPrimary({ exec: scriptPath(command, startDir), args: command.args, execArgv: command.execArgv, cwd: startDir });
    const worker = cluster.fork({ GRACE_RESTART_SUPERVISOR: String(process.pid), GRACE_RESTART_GENERATION: String(generation), PWD: startDir });
    const record: WorkerRecord = { worker, pid: worker.process.pid ?? 0, slot, generation, state: 'starting', startedAt: Date.now() };
    this.#workers.add(record);
    worker.on('message', (message: unknown) => this.#onMessage(record, message));
    worker.once('exit', (code, signal) => this.#onExit(record, code, signal));

    return new Promise((resolve, reject) => {
      const fail = (reason: string): void => {
        clearTimeout(timer);
        worker.removeListener('message', onReady);
        worker.removeListener('exit', onExit);
        this.#terminate(record);
        reject(new Error(`worker ${record.pid} (slot ${slot}) ${reason}`));
      };
      const onReady = (message: unknown): void => {
        if (readMessage(message)?.type !== 'ready') return;
        clearTimeout(timer);
        worker.removeListener('message', onReady);
        worker.removeListener('exit', onExit);
        record.state = 'ready';
        resolve(record);
      };
      const onExit = (code: number | null, signal: string | null): void => {
        fail(`exited (${signal === null ? `exit code ${code}` : `signal ${signal}`}) before it was ready`);
      };
      const timer = setTimeout(() => fail(`was not ready within ${this.#o.readyTimeout} ms`), this.#o.readyTimeout);
      worker.on('message', onReady);
      worker.once('exit', onExit);
    });
  }

  #onMessage(record: WorkerRecord, message: unknown): void {
    const body = readMessage(message);
    if (body === undefined) return;
    this.#o.logger.debug({ pid: record.pid, ...body }, `worker ${body.type}`);
    if (body.type === 'drain-start' && record.state !== 'draining') record.state = 'draining';
  }

  #onExit(record: WorkerRecord, code: number | null, signal: string | null): void {
    this.#workers.delete(record);
    const expected = record.state === 'draining' || record.state === 'starting' || this.#state === 'stopping';
    if (expected) {
      this.#o.logger.info({ pid: record.pid, code, signal }, 'worker exited');
      return;
    }
    this.#restartAfterCrash(record, code, signal);
  }

  #restartAfterCrash(record: WorkerRecord, code: number | null, signal: string | null): void {
    const log = this.#o.logger;
    const now = Date.now();
    this.#crashes = [...this.#crashes.filter((t) => now - t < CRASH_WINDOW_MS), now];
    this.#consecutiveCrashes = now - record.startedAt >= STABLE_AFTER_MS ? 1 : this.#consecutiveCrashes + 1;
    const delay = Math.min(100 * 2 ** (this.#consecutiveCrashes - 1), 30_000);
    const loop = this.#crashes.length >= CRASH_LOOP_COUNT;
    log.error(
      { pid: record.pid, code, signal, slot: record.slot, restartInMs: delay, crashesLastMinute: this.#crashes.length },
      loop ? `crash loop: worker crashed ${this.#crashes.length} times in a minute; backing off` : 'worker crashed: restarting',
    );
    setTimeout(() => {
      if (this.#state !== 'running') return;
      this.#spawn(this.#generation, record.slot).catch((error: unknown) => {
        log.error({ slot: record.slot }, `restart failed: ${(error as Error).message}`);
        // A replacement that never got ready counts as one more crash of this slot.
        this.#restartAfterCrash({ ...record, startedAt: Date.now() }, null, null);
      });
    }, delay).unref();
  }

  /** Drains a worker that has been replaced: SIGTERM, SIGKILL past the drain deadline. */
  #retire(record: WorkerRecord): void {
    record.state = 'draining';
    this.#terminate(record, this.#o.drainTimeout + this.#o.killTimeout);
  }

  #terminate(record: WorkerRecord, killAfterMs = this.#o.killTimeout): Promise<void> {
    const child = record.worker.process;
    const running = child.exitCode === null && child.signalCode === null;
    if (running && record.state === 'starting') record.state = 'draining';
    return stopChild(child, killAfterMs);
  }

  async #stopWorkers(): Promise<void> {
    await Promise.all([...this.#workers].map((w) => this.#terminate(w, this.#o.drainTimeout + this.#o.killTimeout)));
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

  #pids(): number[] {
    return [...this.#workers].map((w) => w.pid);
  }
}

function readMessage(message: unknown): { type: string } | undefined {
  if (typeof message !== 'object' || message === null) return undefined;
  const body = (message as Record<string, unknown>)[MESSAGE_KEY];
  if (typeof body !== 'object' || body === null || typeof (body as { type?: unknown }).type !== 'string') return undefined;
  return body as { type: string };
}

function safeRealpath(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}
