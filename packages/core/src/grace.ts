/**
 * The Grace instance: one per process. It owns the listeners, decides when the process is
 * ready, runs upgrades (handoff.ts), drains (drain.ts) and answers signals (signals.ts).
 */
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { Server } from 'node:net';
import type { ListenOptions } from './address.js';
import { drainConnections, type DrainResult } from './drain.js';
import { GraceError, UpgradeError } from './errors.js';
import { reportReady, spawnSuccessor, startDirectory, successorCommand, takeHandoffEnv, type HandoffEnv } from './handoff.js';
import { takeInheritedListeners, type InheritedListeners } from './listen-fds.js';
import { parseListenArgs } from './listen-args.js';
import { appHeardListenError, ListenerSet } from './listeners.js';
import { resolveOptions, type DrainInfo, type GraceOptions, type ResolvedOptions } from './options.js';
import { removePidFile, writePidFile } from './pid-file.js';
import { installSignalHandlers } from './signals.js';
import { takeSupervision, type Supervision } from './supervised.js';

/** Where a Grace instance is in its life. */
export type GraceState = 'starting' | 'ready' | 'upgrading' | 'draining' | 'closed';

/** A successful upgrade. */
export interface UpgradeResult {
  /** pid of the successor, now serving. */
  pid: number;
  /** The successor's generation. */
  generation: number;
  /** From the trigger to the successor's ready report (ms). */
  durationMs: number;
}

/** Payloads of the events a Grace instance emits. */
export interface GraceEvents {
  ready: [{ pid: number; generation: number; durationMs: number }];
  'upgrade-start': [{ generation: number; trigger: string }];
  'upgrade-ready': [UpgradeResult];
  'upgrade-failed': [UpgradeError];
  'drain-start': [{ reason: DrainInfo['reason'] }];
  'drain-end': [DrainResult & { reason: DrainInfo['reason'] }];
  error: [Error];
}

// Read once per process: the variables are removed from process.env when read.
let processEnv:
  | { listeners: InheritedListeners; handoff: HandoffEnv; startDir: string; supervision: ReturnType<typeof takeSupervision> }
  | undefined;
function takeProcessEnv(): NonNullable<typeof processEnv> {
  const listeners = processEnv?.listeners ?? takeInheritedListeners(process.env, process.pid);
  processEnv ??= {
    listeners,
    handoff: takeHandoffEnv(process.env, listeners.fds.map((l) => l.fd)),
    startDir: startDirectory(),
    supervision: takeSupervision(process.env),
  };
  return processEnv;
}

/** After a handoff the old process outlives its drain until the successor has been ready this long. */
const SUCCESSOR_PROBATION_MS = 1_000;

function abortableDelay(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

const hookType = ['onDrain', 'onShutdown'] as const;
type HookKind = (typeof hookType)[number];
type Hook = (info: DrainInfo) => void | Promise<void>;

/**
 * Zero-downtime upgrades for the servers of this process. Create it with {@link createGrace}.
 */
export class Grace extends EventEmitter<GraceEvents> {
  /** 1 for a process started by hand, then 2, 3… for each successor. */
  readonly generation: number;
  /** pid of the process this one took over from, if any. */
  readonly parentPid: number | undefined;

  readonly #options: ResolvedOptions;
  readonly #listeners: ListenerSet;
  readonly #readyFd: number | undefined;
  readonly #startDir: string;
  readonly #supervision: Supervision | undefined;
  readonly #createdAt = Date.now();
  readonly #hooks: Record<HookKind, Hook[]> = { onDrain: [], onShutdown: [] };
  readonly #uninstallSignals: () => void;
  #state: GraceState = 'starting';
  #upgrade: Promise<UpgradeResult> | undefined;
  #upgradeAbort: AbortController | undefined;
  #shutdown: Promise<void> | undefined;
  #drainAbort: AbortController | undefined;
  #successorReadyAt = 0;
  #readyScheduled = false;

  constructor(options?: GraceOptions) {
    super();
    this.#options = resolveOptions(options);
    const env = takeProcessEnv();
    const log = this.#options.logger;
    for (const problem of [...env.listeners.problems, ...env.handoff.problems, ...env.supervision.problems]) {
      log.error({}, `grace-restart: ${problem}`);
    }
    this.#supervision = env.supervision.supervision;
    this.generation = env.handoff.generation;
    this.parentPid = env.handoff.parentPid;
    this.#readyFd = env.handoff.readyFd;
    this.#startDir = env.startDir;
    this.#listeners = new ListenerSet(env.listeners.fds, log);
    log.debug({ generation: this.generation, parentPid: this.parentPid, inherited: env.listeners.fds.length }, 'grace-restart started');
    // Claimed once: a second instance in the same process inherits nothing.
    env.listeners.fds = [];
    env.handoff.readyFd = undefined;
    if (this.#options.onDrain) this.#hooks.onDrain.push(this.#options.onDrain);
    if (this.#options.onShutdown) this.#hooks.onShutdown.push(this.#options.onShutdown);
    const { onReload } = this.#options;
    // Under `grace-restart run` the supervisor upgrades: SIGUSR2 belongs to it.
    const signals = this.#supervision ? { ...this.#options, upgradeSignal: false as const } : this.#options;
    this.#uninstallSignals = installSignalHandlers(signals, {
      upgrade: (signal) => this.#upgradeFromTrigger(signal),
      stop: (signal) => this.#stopFromSignal(signal),
      reload: onReload && ((signal) => this.#reload(signal, onReload)),
    });
  }

  /** Current lifecycle state. */
  get state(): GraceState {
    return this.#state;
  }

  /** True from the moment this process starts letting go of its connections (a stop signal or a handoff). */
  get isDraining(): boolean {
    return this.#state === 'draining' || this.#state === 'closed';
  }

  /** pid of the `grace-restart run` supervisor when this process is one of its workers. */
  get supervisorPid(): number | undefined {
    return this.#supervision?.supervisorPid;
  }

  /** True once this process has reported ready. */
  get isReady(): boolean {
    return this.#state !== 'starting';
  }

  /** The servers this instance listens with. */
  get servers(): readonly Server[] {
    return this.#listeners.servers;
  }

  /**
   * Makes `server` listen: on the socket inherited from the previous version when one was
   * bound with the same options, else on a freshly bound one. Takes `server.listen()`'s
   * options; a bare number is a port on every address. Rejects with a GraceError
   * (`GRACE_ERR_LISTEN`) that says why, e.g. when the port is in use.
   */
  async listen(server: Server, options: ListenOptions | number = {}): Promise<void> {
    const opts = typeof options === 'number' ? { port: options } : options;
    if (this.#state === 'draining' || this.#state === 'closed') {
      throw new GraceError('GRACE_ERR_CLOSING', 'grace-restart: cannot listen, this process is shutting down');
    }
    await this.#listeners.listen(server, opts);
    if (this.#options.autoReady) this.#scheduleAutoReady();
  }

  /**
   * Routes `server.listen(...)` through {@link Grace.listen}, for frameworks that call
   * `server.listen()` themselves (`app.listen(port)`). Any of listen's signatures works;
   * the callback and the 'listening' event behave as usual. On failure the server emits
   * 'error' as Node would, with a {@link GraceError} that says why.
   */
  adopt<S extends Server>(server: S): S {
    const listen = (...args: unknown[]): S => {
      const { options, callback } = parseListenArgs(args);
      if (callback) server.once('listening', callback);
      this.listen(server, options).catch((error: unknown) => {
        if (callback) server.removeListener('listening', callback);
        // The app's own 'error' listeners already heard Node's error event.
        if (error instanceof Error && appHeardListenError.has(error)) return;
        // Unhandled, this throws like Node's own listen error would, with our clearer message.
        process.nextTick(() => server.emit('error', error));
      });
      return server;
    };
    Object.defineProperty(server, 'listen', { value: listen, configurable: true, writable: true });
    return server;
  }

  /**
   * Reports this process ready: writes the PID file, tells the predecessor to drain, and
   * closes inherited fds no `listen()` claimed. Called automatically unless `autoReady: false`.
   */
  ready(): void {
    if (this.#state !== 'starting') return;
    this.#state = 'ready';
    this.#listeners.closeUnclaimed();
    const log = this.#options.logger;
    this.#writePidFile();
    if (this.#readyFd !== undefined && !reportReady(this.#readyFd)) {
      log.warn({ parentPid: this.parentPid }, 'the previous process is gone: serving alone');
    }
    this.#supervision?.notify({ type: 'ready', generation: this.generation });
    const event = { pid: process.pid, generation: this.generation, durationMs: Date.now() - this.#createdAt };
    log.info(event, 'ready');
    this.emit('ready', event);
  }

  /**
   * Starts the new version of this program, hands it the listening sockets and waits until
   * it is ready; then this process drains and (with `exit`, the default) exits. Resolves
   * with the successor's pid; rejects with an {@link UpgradeError} after a rollback, while
   * this process keeps serving. A call during an upgrade joins it.
   */
  upgrade(): Promise<UpgradeResult> {
    return this.#startUpgrade('api');
  }

  /** Adds a hook run when a drain starts (close WebSockets here). */
  onDrain(hook: Hook): this {
    this.#hooks.onDrain.push(hook);
    return this;
  }

  /** Adds a hook run after the drain, before exit (close DB pools here). */
  onShutdown(hook: Hook): this {
    this.#hooks.onShutdown.push(hook);
    return this;
  }

  /**
   * Stops gracefully without a successor: stop accepting, drain keep-alive connections
   * first, run `onShutdown` hooks, remove the PID file. Does not exit the process.
   */
  close(): Promise<void> {
    return this.#drainAndShutdown('stop', false);
  }

  #startUpgrade(trigger: string): Promise<UpgradeResult> {
    if (this.#upgrade) {
      this.#options.logger.info({ trigger }, 'an upgrade is already running: joining it');
      return this.#upgrade;
    }
    if (this.#supervision) {
      const { supervisorPid } = this.#supervision;
      return Promise.reject(new GraceError('GRACE_ERR_NOT_SUPPORTED', `grace-restart: this worker is supervised; upgrade through its supervisor (kill -USR2 ${supervisorPid}, or grace-restart upgrade --pid ${supervisorPid})`));
    }
    if (process.platform === 'win32') {
      return Promise.reject(new GraceError('GRACE_ERR_NOT_SUPPORTED', 'grace-restart: upgrades need fd passing, which Windows does not support; graceful stop still works'));
    }
    if (this.#state === 'starting') {
      return Promise.reject(new GraceError('GRACE_ERR_NOT_READY', 'grace-restart: cannot upgrade before this process is ready'));
    }
    // #shutdown is set in the same tick as close(), before the state changes.
    if (this.#state !== 'ready' || this.#shutdown !== undefined) {
      return Promise.reject(new GraceError('GRACE_ERR_CLOSING', 'grace-restart: cannot upgrade, this process is shutting down'));
    }
    this.#state = 'upgrading';
    this.#upgradeAbort = new AbortController();
    this.#upgrade = this.#runUpgrade(trigger, this.#upgradeAbort.signal).finally(() => {
      this.#upgrade = undefined;
      this.#upgradeAbort = undefined;
    });
    return this.#upgrade;
  }

  async #runUpgrade(trigger: string, signal: AbortSignal): Promise<UpgradeResult> {
    const log = this.#options.logger;
    const startedAt = Date.now();
    this.emit('upgrade-start', { generation: this.generation, trigger });
    log.info({ generation: this.generation, trigger }, 'upgrade started');
    let pid: number;
    let child: ChildProcess;
    try {
      const successor = await spawnSuccessor({
        command: successorCommand(this.#startDir),
        listeners: this.#listeners.handoffList(),
        generation: this.generation,
        readyTimeout: this.#options.readyTimeout,
        killTimeout: this.#options.killTimeout,
        startedAt,
        signal,
      });
      pid = successor.pid;
      child = successor.child;
      this.#successorReadyAt = Date.now();
      successor.child.once('exit', (code, sig) => this.#successorLost(pid, code, sig, startedAt));
    } catch (error) {
      const failure = error instanceof UpgradeError ? error : new UpgradeError('spawn', String(error), { durationMs: Date.now() - startedAt, cause: error });
      if (this.#state === 'upgrading') this.#state = 'ready';
      log.error({ reason: failure.reason, successorPid: failure.pid, exitCode: failure.exitCode, signal: failure.signal, durationMs: failure.durationMs }, `upgrade failed, still serving: ${failure.message}`);
      this.emit('upgrade-failed', failure);
      throw failure;
    }
    const result = { pid, generation: this.generation + 1, durationMs: Date.now() - startedAt };
    log.info({ successorPid: pid, generation: result.generation, durationMs: result.durationMs }, 'upgrade ready: draining this process');
    this.emit('upgrade-ready', result);
    setImmediate(() => {
      // #successorLost handles a successor that dies from here on; this, one that died already.
      if (child.exitCode !== null || child.signalCode !== null) {
        this.#state = 'ready';
        return;
      }
      this.#drainAndShutdown('upgrade', this.#options.exit).catch((err: unknown) => this.#fatal(err));
    });
    return result;
  }

  /**
   * The successor died after it was ready. If this process is still draining it binds its
   * addresses again and goes back to serving, so the service outlives a new version that
   * crashes shortly after start; connections in the gap between the two are refused.
   */
  #successorLost(pid: number, code: number | null, signal: NodeJS.Signals | null, startedAt: number): void {
    const log = this.#options.logger;
    const error = new UpgradeError('exited', `successor ${pid} exited (${signal ?? `exit code ${code}`}) after it was ready`, {
      pid,
      exitCode: code,
      signal,
      durationMs: Date.now() - startedAt,
    });
    if (this.#state === 'upgrading') {
      log.error({ successorPid: pid, code, signal }, `${error.message}: this process keeps serving`);
      this.emit('upgrade-failed', error);
      return;
    }
    if (this.#state !== 'draining' || this.#drainAbort === undefined || this.#drainAbort.signal.aborted) {
      log.warn({ successorPid: pid, code, signal }, error.message);
      return;
    }
    this.#drainAbort.abort();
    for (const tracker of this.#listeners.trackers) tracker.stopDraining();
    this.#listeners.relisten().then(
      () => {
        this.#state = 'ready';
        this.#shutdown = undefined;
        this.#writePidFile();
        log.error({ successorPid: pid, code, signal }, `${error.message}: this process serves again`);
        this.emit('upgrade-failed', error);
      },
      (relistenError: unknown) => {
        log.error({ successorPid: pid, err: String(relistenError) }, `${error.message} and this process cannot bind again: stopping`);
        this.#shutdown = undefined;
        this.#drainAndShutdown('stop', this.#options.exit).catch((err: unknown) => this.#fatal(err));
      },
    );
  }

  #upgradeFromTrigger(trigger: string): void {
    // Outcomes are logged and emitted by #runUpgrade; a signal has nobody to reject to.
    this.#startUpgrade(trigger).catch((error: unknown) => {
      if (!(error instanceof UpgradeError)) this.#options.logger.warn({ trigger }, `ignoring ${trigger}: ${(error as Error).message}`);
    });
  }

  #stopFromSignal(signal: NodeJS.Signals): void {
    this.#options.logger.info({ signal }, 'stopping: draining connections');
    this.#drainAndShutdown('stop', this.#options.exit).catch((err: unknown) => this.#fatal(err));
  }

  #reload(signal: NodeJS.Signals, onReload: () => void | Promise<void>): void {
    const log = this.#options.logger;
    log.info({ signal }, 'reloading configuration');
    Promise.resolve()
      .then(onReload)
      .catch((err: unknown) => log.error({ err: String(err) }, 'onReload failed'));
  }

  #drainAndShutdown(reason: DrainInfo['reason'], exit: boolean): Promise<void> {
    this.#shutdown ??= this.#runShutdown(reason, exit);
    return this.#shutdown;
  }

  async #runShutdown(reason: DrainInfo['reason'], exit: boolean): Promise<void> {
    const { logger: log, shutdownDelay, idleGrace, drainTimeout, pidFile } = this.#options;
    this.#upgradeAbort?.abort();
    await this.#upgrade?.catch(() => undefined);
    this.#state = 'draining';
    this.emit('drain-start', { reason });
    if (reason === 'stop' && shutdownDelay > 0) {
      log.info({ shutdownDelay }, 'still serving while load balancers deregister');
      await new Promise((resolve) => setTimeout(resolve, shutdownDelay));
    }
    this.#drainAbort = new AbortController();
    const { signal } = this.#drainAbort;
    this.#listeners.stopAccepting(reason === 'upgrade');
    const connections = this.#listeners.trackers.reduce((n, t) => n + t.connections.size, 0);
    this.#supervision?.notify({ type: 'drain-start', reason, connections });
    const result = await drainConnections(this.#listeners.trackers, {
      idleGrace,
      timeout: drainTimeout,
      onDrain: () => this.#runHooks('onDrain', { reason }),
      signal,
    });
    if (signal.aborted) return; // the successor died: this process serves again (#successorLost)
    const level = result.forced > 0 ? 'warn' : 'info';
    log[level]({ ...result, reason }, result.forced > 0 ? `drain deadline reached: destroyed ${result.forced} connections` : 'drained');
    this.emit('drain-end', { ...result, reason });
    this.#supervision?.notify({ type: 'drain-end', reason, durationMs: result.durationMs, forced: result.forced });
    if (reason === 'upgrade') {
      // A new version that crashes right after its ready report (an error thrown on the next
      // tick, say) must still find this process able to take the service back.
      await abortableDelay(this.#successorReadyAt + SUCCESSOR_PROBATION_MS - Date.now(), signal);
      if (signal.aborted) return;
    }
    this.#listeners.release(reason === 'stop');
    await this.#runHooks('onShutdown', { reason });
    if (pidFile !== undefined && reason === 'stop' && !this.#supervision) removePidFile(pidFile);
    this.#state = 'closed';
    this.#uninstallSignals();
    if (exit) process.exit(0);
  }

  /** Names this process in the PID file (not under a supervisor, whose pid is the service's). */
  #writePidFile(): void {
    const { pidFile, logger } = this.#options;
    if (pidFile === undefined || this.#supervision) return;
    try {
      writePidFile(pidFile);
    } catch (error) {
      // A PID file is for operators; failing to write one must not stop the service.
      logger.error({ pidFile, err: String(error) }, 'grace-restart: could not write the PID file');
    }
  }

  async #runHooks(kind: HookKind, info: DrainInfo): Promise<void> {
    for (const hook of this.#hooks[kind]) {
      try {
        await hook(info);
      } catch (err) {
        this.#options.logger.error({ err: String(err), hook: kind }, `${kind} hook failed`);
      }
    }
  }

  #scheduleAutoReady(): void {
    if (this.#readyScheduled || this.#state !== 'starting') return;
    this.#readyScheduled = true;
    // Let the app's own 'listening' handlers and further listen() calls run first.
    setImmediate(() => {
      this.#readyScheduled = false;
      if (this.#state !== 'starting' || this.#listeners.pending > 0) return;
      // A successor is ready once every listener of its predecessor listens again.
      if (this.#readyFd !== undefined && this.#listeners.hasUnclaimed) return;
      this.ready();
    });
  }

  #fatal(error: unknown): void {
    this.#options.logger.error({ err: String(error) }, 'grace-restart: shutdown failed');
    if (this.#options.exit) process.exit(1);
  }
}

/**
 * Creates the grace-restart instance of this process: reads inherited listeners
 * (LISTEN_FDS), installs the signal handlers, and returns the instance whose `listen()`
 * replaces `server.listen()`.
 *
 * @example
 * const grace = createGrace({ pidFile: 'app.pid' })
 * await grace.listen(http.createServer(handler), { port: 3000, host: '127.0.0.1' })
 */
export function createGrace(options?: GraceOptions): Grace {
  return new Grace(options);
}
