/**
 * The Grace instance: the public face of one process's lifecycle. Every trigger (a signal,
 * an API call, the control socket, a successor's report, the end of a drain) becomes a
 * lifecycle event; lifecycle.ts says what it does in the current state, and this file runs
 * that action with the listeners (listeners.ts), the handoff (handoff.ts) and the drain
 * (drain.ts).
 */
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { Server } from 'node:net';
import type { ListenOptions } from './address.js';
import { adoptMovedConnections } from './connection-handoff.js';
import { moveConnections, type MoveChannel } from './connection-mover.js';
import { controlSocketFile, type ControlServer } from './control.js';
import { drainConnections, type DrainResult } from './drain.js';
import { GraceError, UpgradeError } from './errors.js';
import { foregroundWrapper, foregroundWrapperMessage } from './foreground-wrapper.js';
import {
  foreignListenerMessage,
  foreignListeners,
  watchForeignListeners,
  type ForeignListener,
  type OwnedSockets,
} from './foreign-listeners.js';
import { SeenServers } from './seen-servers.js';
import { closeChannel, reportReady, spawnSuccessor, successorCommand } from './handoff.js';
import { abortableDelay, deferred, withDeadline } from './timing.js';
import { transition, type LifecycleAction, type LifecycleEvent, type LifecycleState } from './lifecycle.js';
import { parseListenArgs } from './listen-args.js';
import { PROBATION_MS } from './protocol.js';
import { appHeardListenError, ListenerSet } from './listeners.js';
import { flushLogger } from './logger.js';
import { resolveOptions, type DrainInfo, type GraceOptions, type ResolvedOptions } from './options.js';
import { removePidFile, writePidFile } from './pid-file.js';
import { openSelfControl, type SelfStatus } from './self-control.js';
import { takeProcessEnv } from './process-env.js';
import { installSignalHandlers, signalExitCode, type InstalledSignals } from './signals.js';
import { createServiceNotifier, reloadingFields, type ServiceNotifier } from './service-notify.js';
import { ownListeningSockets } from './socket-address.js';
import type { Retirement, Supervision } from './supervised.js';

/** Where a Grace instance is in its life, as the public API names it. */
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

/**
 * Moving connections to the successor ends once none has moved for this long: a socket busy
 * with a long request then gets today's drain (`Connection: close`) instead of holding the
 * old process back.
 */
const MOVE_STALL_MS = 1_000;
/** How long the successor may take to acknowledge one moved connection before moving stops. */
const MOVE_ACK_TIMEOUT_MS = 2_000;
/**
 * With autoReady, a successor that has not claimed every inherited listener reports ready once
 * no `listen()` has run for this long: a release may drop or rename a listener.
 */
const LISTEN_SETTLE_MS = 1_000;

const hookType = ['onDrain', 'onShutdown'] as const;
type HookKind = (typeof hookType)[number];
type Hook = (info: DrainInfo) => void | Promise<void>;

/** The one live instance of this process (see createGrace). */
let liveInstance: Grace | undefined;

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
  /** systemd's notify socket, when this process serves a Type=notify unit (never in a supervised worker: the supervisor speaks for it). */
  readonly #notifier: ServiceNotifier | undefined;
  readonly #createdAt = Date.now();
  readonly #hooks: Record<HookKind, Hook[]> = { onDrain: [], onShutdown: [] };
  readonly #signals: InstalledSignals;
  /** Stops looking for servers grace-restart never saw (foreign-listeners.ts), and learning them (seen-servers.ts). */
  readonly #stopWatchingForeign: () => void;
  /** The servers of a miswired app, learnt once it is seen, for a stop to drain (seen-servers.ts). */
  readonly #seenServers = new SeenServers();
  readonly #control: Promise<ControlServer | undefined>;
  #state: LifecycleState = 'starting';
  /** Code the process exits with at the end of its life (with `exit`). */
  #exitCode = 0;
  /** Set by close(): a stop through the API never exits the process. */
  #noExit = false;
  /**
   * True while this process is the one that serves its addresses (from its ready report to a
   * handoff): only then may its final stop remove unix socket files.
   */
  #ownsAddresses = false;
  #upgrade: { promise: Promise<UpgradeResult>; abort: AbortController } | undefined;
  #shutdown: Promise<void> | undefined;
  /** Aborted when the drain must end early: the successor died and this process serves again. */
  #drainAbort: AbortController | undefined;
  /** Aborted when the wait for the successor's probation is pointless: this process was told to stop. */
  #probationAbort: AbortController | undefined;
  /** Aborted when connections must stop moving: the successor died, or this process was told to stop. */
  #moveAbort: AbortController | undefined;
  #relisten: Promise<void> | undefined;
  #successorReadyAt = 0;
  /** pid of the successor of the running handoff (systemd's MAINPID once this process lets go). */
  #successorPid: number | undefined;
  /** False once this process has told systemd that its successor is the service's main process. */
  #speaksForService = true;
  /**
   * The successor of the last handoff, while its connections may still move to it; in a
   * supervised worker, the supervisor that relays them to the replacement (`relayEnded`
   * aborts when it stops relaying). `release` ends the channel when nothing more goes over it.
   */
  #successor:
    | { child: MoveChannel; adopts: readonly string[]; pid: number | undefined; relayEnded?: AbortSignal; release: () => void }
    | undefined;
  /** Stops adopting connections moved here by the predecessor. */
  #stopAdopting: (() => void) | undefined;
  #readyScheduled = false;
  #settleTimer: NodeJS.Timeout | undefined;

  constructor(options?: GraceOptions) {
    super();
    this.#options = resolveOptions(options);
    if (liveInstance !== undefined && liveInstance.#state !== 'closed') {
      throw new GraceError(
        'GRACE_ERR_DUPLICATE',
        'grace-restart: this process already has a grace-restart instance; a second one would answer every signal twice. Create one and share it (the adapters accept a Grace instance in place of options), or close() the first',
      );
    }
    liveInstance = this;
    const env = takeProcessEnv();
    const log = this.#options.logger;
    for (const problem of [...env.listeners.problems, ...env.handoff.problems, ...env.supervision.problems, ...env.notify.problems]) {
      log.error({}, `grace-restart: ${problem}`);
    }
    this.#supervision = env.supervision.supervision;
    this.#notifier = this.#supervision ? undefined : createServiceNotifier(env.notify, log);
    this.generation = env.handoff.generation;
    this.parentPid = env.handoff.parentPid;
    this.#readyFd = env.handoff.readyFd;
    this.#startDir = env.startDir;
    this.#listeners = new ListenerSet(env.listeners.fds, log);
    log.debug({ generation: this.generation, parentPid: this.parentPid, inherited: env.listeners.fds.length }, 'grace-restart started');
    // Claimed once: a later instance (after close()) inherits nothing.
    env.listeners.fds = [];
    env.handoff.readyFd = undefined;
    // A successor with an IPC channel from the predecessor that started it (the readiness fd
    // proves which process that is) adopts the keep-alive connections it moves here.
    if (this.#readyFd !== undefined && !this.#supervision && process.channel !== undefined) {
      this.#stopAdopting = adoptMovedConnections(process, (name) => this.#listeners.serverNamed(name), log);
    }
    // A supervised worker adopts what the supervisor relays from the worker it replaces, and
    // is itself retired that way (supervised.ts).
    if (this.#supervision && this.#options.moveConnections) {
      this.#stopAdopting = adoptMovedConnections(this.#supervision.adoptChannel, (name) => this.#listeners.serverNamed(name), log);
    }
    this.#supervision?.onRetire((retirement) => this.#retire(retirement));
    if (this.#supervision && this.#options.pidFile !== undefined) {
      log.warn(
        { pidFile: this.#options.pidFile },
        "grace-restart: pidFile is not written under grace-restart run: the supervisor's --pid-file names the service (its pid is the one to signal)",
      );
    }
    if (this.#options.onDrain) this.#hooks.onDrain.push(this.#options.onDrain);
    if (this.#options.onShutdown) this.#hooks.onShutdown.push(this.#options.onShutdown);
    // Under `grace-restart run` the supervisor upgrades: a worker passes SIGUSR2 on to it.
    this.#signals = installSignalHandlers(this.#options, {
      upgrade: (signal) =>
        this.#supervision ? this.#forwardUpgrade(signal, this.#supervision.supervisorPid) : this.#upgradeFromTrigger(signal),
      stop: (signal) => this.#stop(signal),
      stopAgain: (signal) => this.#stopAgain(signal),
      reload: (signal) => this.#reload(signal),
    });
    const { controlDir } = this.#options;
    this.#control =
      controlDir === false || this.#supervision
        ? Promise.resolve(undefined)
        : openSelfControl(controlDir, { status: () => this.#status(), upgrade: () => this.#startUpgrade('control') }, log);
    const stopLooking = watchForeignListeners(
      () => this.#ownedSockets(),
      (found) => {
        log.error({ listeners: found }, foreignListenerMessage(found));
        this.#seenServers.watch();
      },
    );
    this.#stopWatchingForeign = () => {
      stopLooking();
      this.#seenServers.dispose();
    };
  }

  /** What grace-restart itself holds, to tell a server it never saw from its own. */
  #ownedSockets(): OwnedSockets {
    const { controlDir } = this.#options;
    return {
      serving: this.#listeners.servers.length > 0 || this.#listeners.pending > 0,
      fds: new Set(this.#listeners.inheritedFds),
      controlSocket: controlDir === false || this.#supervision ? undefined : controlSocketFile(process.pid, controlDir),
    };
  }

  /**
   * Listening sockets grace-restart does not own, while it owns no server (else none: a second
   * server the app keeps to itself is its choice).
   */
  #foreignNow(): ForeignListener[] {
    const owned = this.#ownedSockets();
    return owned.serving ? [] : foreignListeners(ownListeningSockets(), owned);
  }

  /** Current lifecycle state. */
  get state(): GraceState {
    return this.#state === 'handed-off' || this.#state === 'stopping' ? 'draining' : this.#state;
  }

  /** True from the moment this process starts letting go of its connections (a stop signal or a handoff). */
  get isDraining(): boolean {
    return this.#state === 'handed-off' || this.#state === 'stopping' || this.#state === 'closed';
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
    if (this.isDraining) {
      throw new GraceError('GRACE_ERR_CLOSING', 'grace-restart: cannot listen, this process is shutting down');
    }
    clearTimeout(this.#settleTimer);
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
    if (this.#dispatch('ready') !== 'report-ready') return;
    clearTimeout(this.#settleTimer);
    this.#stopWatchingForeign();
    this.#ownsAddresses = true;
    this.#listeners.closeUnclaimed();
    const log = this.#options.logger;
    this.#writePidFile();
    const adopts = this.#stopAdopting === undefined ? undefined : this.#listeners.listeningNames;
    const handedOver = this.#readyFd !== undefined && reportReady(this.#readyFd, adopts);
    if (this.#readyFd !== undefined && !handedOver) {
      log.warn({ parentPid: this.parentPid }, 'the previous process is gone: serving alone');
    }
    // A successor becomes systemd's main process when its predecessor lets go (#runShutdown).
    if (!handedOver) this.#notifier?.send(['READY=1', `MAINPID=${process.pid}`, `STATUS=serving, generation ${this.generation}`]);
    this.#notifier?.startWatchdog();
    this.#supervision?.notify(
      adopts === undefined ? { type: 'ready', generation: this.generation } : { type: 'ready', generation: this.generation, adopts },
    );
    const wrapper = this.generation === 1 && !this.#supervision ? foregroundWrapper() : undefined;
    if (wrapper !== undefined) log.warn({ wrapperPid: wrapper.pid }, foregroundWrapperMessage(wrapper, this.#options.pidFile));
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
    return this.#stopWith('api', false);
  }

  /** Looks `event` up in the lifecycle table, moves to its state and returns its action. */
  #dispatch(event: LifecycleEvent): LifecycleAction {
    const from = this.#state;
    const { to, action } = transition(from, event);
    this.#state = to;
    if (action !== 'ignore' || from !== to) this.#options.logger.debug({ from, event, to, action }, 'lifecycle');
    return action;
  }

  #startUpgrade(trigger: string): Promise<UpgradeResult> {
    if (this.#supervision) {
      const { supervisorPid } = this.#supervision;
      return Promise.reject(
        new GraceError(
          'GRACE_ERR_NOT_SUPPORTED',
          `grace-restart: this worker is supervised; upgrade through its supervisor (kill -USR2 ${supervisorPid}, or grace-restart upgrade --pid ${supervisorPid})`,
        ),
      );
    }
    if (process.platform === 'win32') {
      return Promise.reject(
        new GraceError(
          'GRACE_ERR_NOT_SUPPORTED',
          'grace-restart: upgrades need fd passing, which Windows does not support; graceful stop still works',
        ),
      );
    }
    const before = this.#state;
    const action = this.#dispatch('upgrade');
    if (action === 'join-upgrade' && this.#upgrade !== undefined) {
      this.#options.logger.info({ trigger }, 'an upgrade is already running: joining it');
      return this.#upgrade.promise;
    }
    if (action !== 'spawn-successor') {
      return Promise.reject(
        before === 'starting'
          ? new GraceError('GRACE_ERR_NOT_READY', 'grace-restart: cannot upgrade before this process is ready')
          : new GraceError(
              'GRACE_ERR_CLOSING',
              `grace-restart: cannot upgrade, this process is ${before === 'handed-off' ? 'handing over to its successor' : 'shutting down'}`,
            ),
      );
    }
    const abort = new AbortController();
    const promise = this.#runUpgrade(trigger, abort.signal).finally(() => {
      this.#upgrade = undefined;
    });
    this.#upgrade = { promise, abort };
    return promise;
  }

  async #runUpgrade(trigger: string, signal: AbortSignal): Promise<UpgradeResult> {
    const log = this.#options.logger;
    const startedAt = Date.now();
    this.emit('upgrade-start', { generation: this.generation, trigger });
    log.info({ generation: this.generation, trigger }, 'upgrade started');
    this.#notifier?.send(reloadingFields(`upgrading: starting generation ${this.generation + 1}`));
    let pid: number;
    let child: ChildProcess;
    let adopts: readonly string[];
    try {
      ({ pid, child, adopts } = await spawnSuccessor({
        command: successorCommand(this.#startDir),
        listeners: this.#listeners.handoffList(),
        generation: this.generation,
        readyTimeout: this.#options.readyTimeout,
        killTimeout: this.#options.killTimeout,
        startedAt,
        signal,
        ipc: this.#options.moveConnections,
        env: this.#notifier?.env,
      }));
    } catch (error) {
      const failure =
        error instanceof UpgradeError
          ? error
          : new UpgradeError('spawn', String(error), { durationMs: Date.now() - startedAt, cause: error });
      const action = this.#dispatch('successor-failed');
      const outcome = action === 'roll-back' ? 'still serving' : 'stopping anyway';
      log.error(
        {
          reason: failure.reason,
          successorPid: failure.pid,
          exitCode: failure.exitCode,
          signal: failure.signal,
          durationMs: failure.durationMs,
        },
        `upgrade failed, ${outcome}: ${failure.message}`,
      );
      if (action === 'roll-back')
        this.#notifier?.send(['READY=1', `STATUS=upgrade failed (${failure.reason}): serving generation ${this.generation}`]);
      this.emit('upgrade-failed', failure);
      throw failure;
    }
    this.#successorReadyAt = Date.now();
    this.#successorPid = pid;
    this.#successor = { child, adopts, pid, release: () => closeChannel(child) };
    child.once('exit', (code, sig) => this.#successorExited(pid, code, sig, startedAt));
    const result = { pid, generation: this.generation + 1, durationMs: Date.now() - startedAt };
    if (this.#dispatch('successor-ready') === 'drain-for-upgrade') {
      this.#ownsAddresses = false;
      log.info({ successorPid: pid, generation: result.generation, durationMs: result.durationMs }, 'upgrade ready: draining this process');
      this.#shutdown = this.#runShutdown('upgrade');
    }
    this.emit('upgrade-ready', result);
    return result;
  }

  /** The successor exited after its ready report. */
  #successorExited(pid: number, code: number | null, signal: NodeJS.Signals | null, startedAt: number): void {
    const log = this.#options.logger;
    const error = new UpgradeError('exited', `successor ${pid} exited (${signal ?? `exit code ${code}`}) after it was ready`, {
      pid,
      exitCode: code,
      signal,
      durationMs: Date.now() - startedAt,
    });
    // A clean exit is a stop the successor was told (the whole service is stopping); anything else a crash.
    const stopped = code === 0 && signal === null;
    const action = this.#dispatch(stopped ? 'successor-stopped' : 'successor-lost');
    if (action === 'forget-handoff-and-stop') {
      // Exit 0 is a successor that handed over to a newer version in turn, or a stop of the service.
      log.info(
        { successorPid: pid },
        `successor ${pid} exited cleanly after it was ready (it handed over to a newer version, or the service is stopping): this process finishes its drain and exits`,
      );
      this.#probationAbort?.abort();
      return;
    }
    if (action !== 'serve-again') {
      log[this.#state === 'stopping' || stopped ? 'info' : 'warn']({ successorPid: pid, code, signal }, error.message);
      return;
    }
    this.#serveAgain(error);
  }

  /**
   * The successor died while this process drained for it: bind the addresses again and
   * serve, so the service outlives a new version that crashes shortly after its start.
   */
  #serveAgain(error: UpgradeError): void {
    const log = this.#options.logger;
    this.#drainAbort?.abort();
    this.#moveAbort?.abort();
    this.#probationAbort?.abort();
    this.#shutdown = undefined;
    for (const tracker of this.#listeners.trackers) tracker.stopDraining();
    this.#relisten = this.#listeners.relisten().then(
      () => {
        this.#ownsAddresses = true;
        this.#writePidFile();
        this.#speaksForService = true;
        this.#notifier?.send([
          'READY=1',
          `MAINPID=${process.pid}`,
          `STATUS=successor ${error.pid} died: serving generation ${this.generation} again`,
        ]);
        this.#notifier?.startWatchdog();
        log.error({ successorPid: error.pid, code: error.exitCode, signal: error.signal }, `${error.message}: this process serves again`);
        this.emit('upgrade-failed', error);
      },
      (relistenError: unknown) => {
        log.error(
          { successorPid: error.pid, err: String(relistenError) },
          `${error.message} and this process cannot bind again: stopping with exit code 1`,
        );
        if (this.#dispatch('relisten-failed') !== 'stop-serving') return;
        this.#notifier?.send(['STOPPING=1', `STATUS=successor ${error.pid} died and the addresses could not be bound again: stopping`]);
        this.#exitCode = 1;
        this.#shutdown = this.#runShutdown('stop');
      },
    );
  }

  /**
   * The supervisor replaces this worker by one that adopts on `adopts`: drain as for an
   * upgrade, moving the idle keep-alive connections to the supervisor, which relays them.
   */
  #retire({ adopts, relayEnded }: Retirement): void {
    const action = this.#dispatch('replaced');
    if (action === 'drain-for-stop') {
      this.#shutdown = this.#runShutdown('stop');
      return;
    }
    if (action !== 'drain-for-upgrade' || this.#supervision === undefined) return;
    this.#ownsAddresses = false;
    // The channel is the worker's own link to the supervisor: it stays open after the move.
    this.#successor = { child: this.#supervision.channel, adopts, pid: undefined, relayEnded, release: () => undefined };
    this.#options.logger.info({ adopts }, 'replaced by a new worker: moving connections to it through the supervisor');
    this.#shutdown = this.#runShutdown('upgrade');
  }

  #upgradeFromTrigger(trigger: string): void {
    // Outcomes are logged and emitted by #runUpgrade; a signal has nobody to reject to.
    this.#startUpgrade(trigger).catch((error: unknown) => {
      if (error instanceof UpgradeError) return;
      const log = this.#options.logger;
      const foreign = this.#state === 'starting' ? this.#foreignNow() : [];
      if (foreign.length === 0) log.warn({ trigger }, `ignoring ${trigger}: ${(error as Error).message}`);
      else log.error({ trigger, listeners: foreign }, `ignoring ${trigger}: ${foreignListenerMessage(foreign)}`);
    });
  }

  /**
   * The upgrade signal reached a worker of `grace-restart run` (`kill -USR2 <worker pid>`): the
   * supervisor upgrades every worker, so it gets the signal; the worker would die of it otherwise.
   */
  #forwardUpgrade(signal: NodeJS.Signals, supervisorPid: number): void {
    const log = this.#options.logger;
    try {
      process.kill(supervisorPid, signal);
      log.warn(
        { signal, supervisorPid },
        `${signal} reached a worker of grace-restart run: passed on to its supervisor ${supervisorPid}, which upgrades every worker`,
      );
    } catch (error) {
      log.error(
        { signal, supervisorPid, err: String(error) },
        `${signal} reached a worker of grace-restart run and its supervisor ${supervisorPid} could not be signalled: ignored`,
      );
    }
  }

  #stop(signal: NodeJS.Signals): void {
    const log = this.#options.logger;
    const foreign = this.#state === 'starting' ? this.#foreignNow() : [];
    if (foreign.length > 0 && process.listeners(signal).length > 1) {
      // The app serves on its own and stops on its own (NestJS's enableShutdownHooks, say):
      // grace-restart has nothing to drain, and taking the signal over would make that stop
      // lossy. From now on the stop signals are the app's alone, as without grace-restart.
      log.error({ signal, listeners: foreign }, `${signal}: left to the app's own handler. ${foreignListenerMessage(foreign)}`);
      this.#signals.releaseStopSignals();
      this.#stopWatchingForeign();
      return;
    }
    if (foreign.length > 0)
      log.error(
        { signal, listeners: foreign },
        `${signal}: draining the servers seen answering requests, then the onShutdown hooks. ${foreignListenerMessage(foreign)}`,
      );
    log.info({ signal }, 'stopping: draining connections');
    this.#stopWith(signal, this.#options.exit).catch((err: unknown) => this.#fatal(err));
  }

  #stopWith(trigger: string, exit: boolean): Promise<void> {
    const action = this.#dispatch('stop');
    if (!exit) this.#noExit = true;
    // Not after the handover: the successor serves on, this stop is this process's alone.
    if (
      this.#speaksForService &&
      (action === 'drain-for-stop' || action === 'abort-upgrade-and-drain' || action === 'forget-handoff-and-stop')
    ) {
      this.#notifier?.send(['STOPPING=1', 'STATUS=stopping: draining connections']);
    }
    switch (action) {
      case 'drain-for-stop':
        this.#shutdown = this.#runShutdown('stop');
        break;
      case 'abort-upgrade-and-drain':
        this.#upgrade?.abort.abort();
        this.#shutdown = this.#runShutdown('stop');
        break;
      case 'forget-handoff-and-stop':
        // The drain for the successor goes on; only the wait for its probation is dropped.
        this.#options.logger.info({ trigger }, 'told to stop while handing over: this process will not serve again');
        this.#moveAbort?.abort();
        this.#probationAbort?.abort();
        break;
      default:
        break;
    }
    return this.#shutdown ?? Promise.resolve();
  }

  #stopAgain(signal: NodeJS.Signals): void {
    // Under the supervisor a worker can get the same stop twice (systemd signals the whole
    // cgroup, the supervisor forwards): the supervisor, not the worker, decides to kill.
    if (this.#supervision) {
      this.#options.logger.info({ signal }, `ignoring a second ${signal}: the supervisor decides when to kill`);
      return;
    }
    if (this.#dispatch('stop-again') !== 'exit-now') return;
    this.#options.logger.warn({ signal }, 'second stop signal: exiting now');
    // No drain, but no stale PID file either (it is removed only if it names this process).
    const { pidFile } = this.#options;
    if (pidFile !== undefined && !this.#supervision) removePidFile(pidFile);
    process.exit(signalExitCode(signal));
  }

  #reload(signal: NodeJS.Signals): void {
    const log = this.#options.logger;
    const { onReload } = this.#options;
    if (this.#dispatch('reload') !== 'call-onReload') {
      log.info({ signal }, `ignoring ${signal}: this process is shutting down`);
      return;
    }
    if (onReload === undefined) {
      log.warn({ signal }, `ignoring ${signal}: no onReload hook (upgrade with SIGUSR2, stop with SIGTERM)`);
      return;
    }
    log.info({ signal }, 'reloading configuration');
    Promise.resolve()
      .then(onReload)
      .catch((err: unknown) => log.error({ err: String(err) }, 'onReload failed'));
  }

  /** Drains (for a successor or for a stop), runs the hooks, and ends this process's life. */
  async #runShutdown(reason: DrainInfo['reason']): Promise<void> {
    const { logger: log, shutdownDelay, idleGrace, drainTimeout } = this.#options;
    await this.#upgrade?.promise.catch(() => undefined);
    await this.#relisten?.catch(() => undefined);
    // Keep-alive connections start moving at once; the listening sockets stay through the probation.
    const intake = reason === 'upgrade' ? deferred() : undefined;
    const moving = intake === undefined ? Promise.resolve(0) : this.#moveConnections(intake.promise);
    if (reason === 'upgrade') await this.#probation();
    // The successor may have died meanwhile: this process serves again (#serveAgain).
    if (this.#state !== 'handed-off' && this.#state !== 'stopping') {
      intake?.resolve();
      return;
    }
    if (this.#state === 'handed-off') this.#letGoOfService();
    this.emit('drain-start', { reason });
    if (reason === 'stop' && shutdownDelay > 0) {
      log.info({ shutdownDelay }, 'still serving while load balancers deregister');
      await new Promise((resolve) => setTimeout(resolve, shutdownDelay));
    }
    const drainAbort = (this.#drainAbort = new AbortController());
    this.#listeners.stopAccepting(reason === 'upgrade');
    intake?.resolve();
    const moved = await moving;
    if (drainAbort.signal.aborted) return; // the successor died: this process serves again (#serveAgain)
    const connections = this.#listeners.trackers.reduce((n, t) => n + t.connections.size, 0);
    this.#supervision?.notify({ type: 'drain-start', reason, connections });
    const result = await drainConnections(this.#listeners.trackers, {
      idleGrace,
      timeout: drainTimeout,
      onDrain: () => this.#runHooks('onDrain', { reason }),
      signal: drainAbort.signal,
    });
    if (drainAbort.signal.aborted) return; // the successor died: this process serves again (#serveAgain)
    result.moved = moved;
    if (reason === 'stop' && this.#seenServers.size > 0) {
      const seen = await this.#seenServers.drain({ idleGrace, timeoutMs: drainTimeout });
      log[seen.forced > 0 ? 'warn' : 'info']({ ...seen }, `drained the ${seen.servers} server(s) grace-restart was not given`);
    }
    const level = result.forced > 0 ? 'warn' : 'info';
    log[level]({ ...result, reason }, result.forced > 0 ? `drain deadline reached: destroyed ${result.forced} connections` : 'drained');
    this.emit('drain-end', { ...result, reason });
    this.#supervision?.notify({ type: 'drain-end', reason, durationMs: result.durationMs, forced: result.forced });
    if (this.#dispatch('drain-done') === 'ignore') return;
    await this.#close(reason);
  }

  /**
   * Moves the idle plain-HTTP/1 keep-alive connections to the successor that adopts them
   * (connection-mover.ts), from its ready report on; returns how many moved. `intake`
   * settles when this process stops accepting: connections accepted until then move too.
   * The rest, and every connection of a listener the successor does not adopt, drain as
   * before. A stop or the successor's death ends the move (#moveAbort).
   */
  async #moveConnections(intake: Promise<void>): Promise<number> {
    const successor = this.#successor;
    this.#successor = undefined;
    if (successor === undefined) return 0;
    const { child, adopts } = successor;
    // Told to stop meanwhile: the successor stops too, the connections drain here.
    if (!this.#options.moveConnections || this.#state === 'stopping' || adopts.length === 0 || !child.connected) {
      successor.release();
      return 0;
    }
    const listeners = this.#listeners.named.filter((l) => adopts.includes(l.name));
    const log = this.#options.logger;
    const abort = (this.#moveAbort = new AbortController());
    const result = await moveConnections(listeners, child, {
      deadline: MOVE_STALL_MS,
      maxDuration: Math.max(MOVE_STALL_MS, this.#options.idleGrace),
      ackTimeout: MOVE_ACK_TIMEOUT_MS,
      // In a supervised worker, also when the supervisor stops relaying (the replacement exited).
      signal: successor.relayEnded === undefined ? abort.signal : AbortSignal.any([abort.signal, successor.relayEnded]),
      // Straight to the successor, a socket it did not answer before its death comes back here.
      unansweredComeBack: successor.relayEnded === undefined,
      intake,
      logger: log,
    });
    // Nothing more goes over the channel: it must keep neither process alive.
    successor.release();
    log.info({ ...result, successorPid: successor.pid }, `moved ${result.moved} connections to the successor`);
    return result.moved;
  }

  /**
   * After a handoff, this process keeps serving — its listening socket open, accepting beside
   * the successor — until the successor has been ready for PROBATION_MS. A new
   * version that crashes right after its ready report (an error thrown on the next tick, say)
   * then finds this process still serving: no connect is refused, nothing has to be bound
   * again. A stop ends the wait (there is nothing to take back), and so does the successor's
   * death (#serveAgain).
   */
  async #probation(): Promise<void> {
    const abort = (this.#probationAbort = new AbortController());
    if (this.#state === 'stopping') return;
    await abortableDelay(this.#successorReadyAt + PROBATION_MS - Date.now(), abort.signal);
  }

  /**
   * The successor has served through its probation and this process stops accepting: from now
   * on systemd follows the successor (MAINPID=), so this process's exit does not end the unit.
   */
  #letGoOfService(): void {
    const successor = this.#successorPid;
    if (this.#notifier === undefined || successor === undefined) return;
    this.#speaksForService = false;
    this.#notifier.stopWatchdog();
    this.#notifier.send([`MAINPID=${successor}`, 'READY=1', `STATUS=serving, generation ${this.generation + 1}`]);
  }

  async #close(reason: DrainInfo['reason']): Promise<void> {
    const { pidFile } = this.#options;
    this.#stopWatchingForeign();
    // Socket files stay while anyone may serve on them: a successor, a predecessor that
    // still serves (this process never got ready), or the supervisor.
    this.#listeners.release(reason === 'stop' && this.#ownsAddresses && !this.#supervision);
    await this.#runHooks('onShutdown', { reason });
    if (pidFile !== undefined && reason === 'stop' && !this.#supervision) removePidFile(pidFile);
    (await this.#control)?.close();
    // A process about to exit keeps its signal handlers until process.exit: a stop that
    // arrives while its logs flush (systemd signals the whole group) is then answered by the
    // table ('closed' ignores it), not by the default action, which would end it by SIGTERM.
    if (this.#options.exit && !this.#noExit) await this.#exit(this.#exitCode);
    else this.#signals.uninstall();
  }

  async #exit(code: number): Promise<void> {
    await this.#notifier?.flush();
    await flushLogger(this.#options.logger);
    process.exit(code);
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
    const { logger: log, hookTimeout } = this.#options;
    for (const hook of this.#hooks[kind]) {
      try {
        const finished = await withDeadline(
          Promise.resolve().then(() => hook(info)),
          hookTimeout,
        );
        if (!finished) log.warn({ hook: kind, hookTimeout }, `${kind} hook still running after ${hookTimeout} ms: going on without it`);
      } catch (err) {
        log.error({ err: String(err), hook: kind }, `${kind} hook failed`);
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
      if (this.#readyFd === undefined || !this.#listeners.hasUnclaimed) return this.ready();
      // A listener of the predecessor is not claimed yet: the app may still listen on it, or
      // this release dropped it. Ready once no listen() has come for a while.
      clearTimeout(this.#settleTimer);
      this.#settleTimer = setTimeout(() => this.ready(), LISTEN_SETTLE_MS);
    });
  }

  /** What `grace-restart status` shows of this process. */
  #status(): SelfStatus {
    return {
      mode: 'self',
      pid: process.pid,
      state: this.state,
      generation: this.generation,
      parentPid: this.parentPid,
      uptimeMs: Date.now() - this.#createdAt,
    };
  }

  #fatal(error: unknown): void {
    this.#options.logger.error({ err: String(error) }, 'grace-restart: shutdown failed');
    if (this.#options.exit) void this.#exit(1);
  }
}

/**
 * Creates the grace-restart instance of this process: reads inherited listeners
 * (LISTEN_FDS), installs the signal handlers, opens the private control socket, and returns
 * the instance whose `listen()` replaces `server.listen()`. A process has one live instance:
 * a second call before the first is closed throws a GraceError `GRACE_ERR_DUPLICATE`.
 *
 * @example
 * const grace = createGrace({ pidFile: 'app.pid' })
 * await grace.listen(http.createServer(handler), { port: 3000, host: '127.0.0.1' })
 */
export function createGrace(options?: GraceOptions): Grace {
  return new Grace(options);
}
