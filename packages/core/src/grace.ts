/**
 * The Grace instance: the public face of one process's lifecycle. Every trigger (a signal,
 * an API call, the control socket, a successor's report, the end of a drain) becomes a
 * lifecycle event; lifecycle.ts says which action it is in the current state, and
 * `#dispatch` runs that action, by name, in one exhaustive switch. Each state's data lives
 * in the state (grace-life.ts); the handover to a successor is a Handover (handover.ts),
 * what systemd hears a SystemdLink (systemd-link.ts), the process around it a
 * GraceEnvironment (grace-environment.ts).
 */
import { type AnswerCounter, type AnswerCounts, countAnswers } from './answer-counts.js';
import { EventEmitter } from 'node:events';
import type { Server } from 'node:net';
import type { ListenOptions } from './address.js';
import { adoptMovedConnections } from './connection-handoff.js';
import { GraceError, UpgradeError } from './errors.js';
import { processEnvironment, type GraceEnvironment } from './grace-environment.js';
import type { GraceEvents, GraceState, UpgradeResult } from './grace-events.js';
import { AutoReady, type ReadyWhen, type Upgraded } from './grace-life.js';
import { Hooks, type Hook } from './hooks.js';
import { Lifecycle, PASSED_ON, type LifecycleContext } from './grace-lifecycle.js';
import { parseListenArgs } from './listen-args.js';
import { appHeardListenError, ListenerSet } from './listeners.js';
import { Miswiring } from './miswiring.js';
import { resolveOptions, type GraceOptions, type ResolvedOptions } from './options.js';
import type { ProcessEnv } from './process-env.js';
import { openSelfControl, type SelfStatus } from './self-control.js';
import { createServiceNotifier } from './service-notify.js';
import { installSignalHandlers, type InstalledSignals } from './signals.js';
import type { Supervision } from './supervised.js';
import { SystemdLink } from './systemd-link.js';

export type { GraceEvents, GraceState, UpgradeResult } from './grace-events.js';

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
  readonly #environment: GraceEnvironment;
  readonly #listeners: ListenerSet;
  readonly #readyFd: number | undefined;
  readonly #supervision: Supervision | undefined;
  readonly #createdAt = Date.now();
  readonly #hooks: Hooks;
  readonly #miswiring: Miswiring;
  readonly #lifecycle: Lifecycle;
  readonly #signals: InstalledSignals;
  readonly #answers: AnswerCounter;

  /** @param environment Not public API: the process around the instance (a fake one in in-process tests). */
  constructor(options?: GraceOptions, environment: GraceEnvironment = processEnvironment) {
    super();
    this.#options = resolveOptions(options);
    if (liveInstance !== undefined && liveInstance.#lifecycle.life.name !== 'closed') {
      throw new GraceError(
        'GRACE_ERR_DUPLICATE',
        'grace-restart: this process already has a grace-restart instance; a second one would answer every signal twice. Create one and share it (the adapters accept a Grace instance in place of options), or close() the first',
      );
    }
    liveInstance = this;
    this.#environment = environment;
    const env = environment.inherited();
    const log = this.#options.logger;
    for (const problem of [...env.listeners.problems, ...env.handoff.problems, ...env.supervision.problems, ...env.notify.problems]) {
      log.error({}, `grace-restart: ${problem}`);
    }
    this.#supervision = env.supervision.supervision;
    this.generation = env.handoff.generation;
    this.parentPid = env.handoff.parentPid;
    this.#readyFd = env.handoff.readyFd;
    this.#listeners = new ListenerSet(env.listeners.fds, log);
    log.debug({ generation: this.generation, parentPid: this.parentPid, inherited: env.listeners.fds.length }, 'grace-restart started');
    // Claimed once: a later instance (after close()) inherits nothing.
    env.listeners.fds = [];
    env.handoff.readyFd = undefined;
    this.#hooks = new Hooks(this.#options.hookTimeout, log);
    this.#hooks.add('onDrain', this.#options.onDrain);
    this.#hooks.add('onShutdown', this.#options.onShutdown);
    const { controlDir } = this.#options;
    const controlDirOwned = controlDir !== false && !this.#supervision ? controlDir : undefined;
    this.#miswiring = new Miswiring(this.#listeners, controlDirOwned, log);
    this.#lifecycle = new Lifecycle(this.#lifecycleContext(env, controlDirOwned), {
      name: 'starting',
      autoReady: new AutoReady(
        () => this.ready(),
        () => this.#readyWhen(),
      ),
    });
    this.#signals = this.#installSignals();
    this.#answers = this.#countAnswers();
  }

  /** What the lifecycle works with, built from the options and what this process inherited. */
  #lifecycleContext(env: ProcessEnv, controlDirOwned: string | undefined): LifecycleContext {
    const status = (): SelfStatus => this.#status();
    const upgrade = (): Promise<Upgraded> => this.#lifecycle.upgradeWithVerdict('control');
    const log = this.#options.logger;
    return {
      options: this.#options,
      environment: this.#environment,
      listeners: this.#listeners,
      link: new SystemdLink(this.#supervision ? undefined : createServiceNotifier(env.notify, log)),
      supervision: this.#supervision,
      hooks: this.#hooks,
      miswiring: this.#miswiring,
      control:
        controlDirOwned === undefined
          ? Promise.resolve(undefined)
          : openSelfControl(
              controlDirOwned,
              { status, upgrade, probationMs: this.#options.probation, canaryFailed: (reason) => this.#lifecycle.canaryFailed(reason) },
              log,
            ),
      generation: this.generation,
      parentPid: this.parentPid,
      readyFd: this.#readyFd,
      startDir: env.startDir,
      adopting: this.#adoptMovedConnections(),
      createdAt: this.#createdAt,
      ownAnswers: () => this.#answers.counts,
      events: this,
      uninstallSignals: () => this.#signals.uninstall(),
    };
  }

  /**
   * Counts this process's answers for the canary verdict, reported to the supervisor when there
   * is one. Counted until the drain ends (a process that exits never sees `closed` settle): its
   * last report then says all it answered.
   */
  #countAnswers(): AnswerCounter {
    const supervision = this.#supervision;
    const report = supervision && ((counts: AnswerCounts): void => supervision.notify({ type: 'answers', ...counts }));
    const drained = new Promise((resolve) => this.once('drain-end', resolve));
    return countAnswers((server) => this.#listeners.serves(server), report, Promise.race([drained, this.#lifecycle.closed]));
  }

  /** Current lifecycle state. */
  get state(): GraceState {
    const { name } = this.#lifecycle.life;
    if (name === 'checking') return 'starting'; // not ready until the health check passed
    return name === 'handed-off' || name === 'stopping' ? 'draining' : name;
  }

  /** True from the moment this process starts letting go of its connections (a stop signal or a handoff). */
  get isDraining(): boolean {
    const { name } = this.#lifecycle.life;
    return name === 'handed-off' || name === 'stopping' || name === 'closed';
  }

  /** pid of the `grace-restart run` supervisor when this process is one of its workers. */
  get supervisorPid(): number | undefined {
    return this.#supervision?.supervisorPid;
  }

  /** True once this process has reported ready. */
  get isReady(): boolean {
    return this.#lifecycle.life.name !== 'starting';
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
    const life = this.#lifecycle.life;
    const starting = life.name === 'starting' ? life : undefined;
    starting?.autoReady.hold();
    await this.#listeners.listen(server, opts);
    if (this.#options.autoReady) starting?.autoReady.schedule();
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
    this.#lifecycle.dispatch({ type: 'ready' });
  }

  /**
   * Starts the new version of this program, hands it the listening sockets and waits until
   * it is ready; then this process drains and (with `exit`, the default) exits. Resolves
   * with the successor's pid; rejects with an {@link UpgradeError} after a rollback, while
   * this process keeps serving. A call during an upgrade joins it.
   */
  upgrade(): Promise<UpgradeResult> {
    return this.#lifecycle.upgrade('api');
  }

  /** Adds a hook run when a drain starts (close WebSockets here). */
  onDrain(hook: Hook): this {
    this.#hooks.add('onDrain', hook);
    return this;
  }

  /** Adds a hook run after the drain, before exit (close DB pools here). */
  onShutdown(hook: Hook): this {
    this.#hooks.add('onShutdown', hook);
    return this;
  }

  /**
   * Stops gracefully without a successor: stop accepting, drain keep-alive connections
   * first, run `onShutdown` hooks, remove the PID file. Does not exit the process.
   */
  close(): Promise<void> {
    this.#lifecycle.dispatch({ type: 'stop', trigger: 'api', exit: false });
    return this.#lifecycle.closed;
  }

  /** A successor with an IPC channel from its predecessor, or a supervised worker, adopts moved connections. */
  #adoptMovedConnections(): boolean {
    const log = this.#options.logger;
    const serverNamed = (name: string): Server | undefined => this.#listeners.serverNamed(name);
    // The readiness fd proves that the channel is the predecessor's.
    if (this.#readyFd !== undefined && !this.#supervision && process.channel !== undefined) {
      adoptMovedConnections(process, serverNamed, log);
      return true;
    }
    // A supervised worker adopts what the supervisor relays from the worker it replaces, and
    // is itself retired that way (supervised.ts).
    if (this.#supervision && this.#options.moveConnections) {
      adoptMovedConnections(this.#supervision.adoptChannel, serverNamed, log);
      return true;
    }
    return false;
  }

  #installSignals(): InstalledSignals {
    const supervision = this.#supervision;
    const log = this.#options.logger;
    supervision?.onRetire((retirement) => this.#lifecycle.dispatch({ type: 'replaced', retirement }));
    if (supervision && this.#options.pidFile !== undefined) {
      log.warn(
        { pidFile: this.#options.pidFile },
        "grace-restart: pidFile is not written under grace-restart run: the supervisor's --pid-file names the service (its pid is the one to signal)",
      );
    }
    const actions = {
      // Under `grace-restart run` the supervisor upgrades: a worker passes SIGUSR2 on to it.
      upgrade: (signal: NodeJS.Signals) =>
        supervision ? this.#forwardUpgrade(signal, supervision.supervisorPid) : this.#upgradeFromTrigger(signal),
      stop: (signal: NodeJS.Signals) => this.#stop(signal),
      // Under the supervisor a worker can get the same stop twice (systemd signals the whole
      // cgroup, the supervisor forwards): the supervisor, not the worker, decides to kill.
      stopAgain: (signal: NodeJS.Signals) =>
        supervision
          ? log.info({ signal }, `ignoring a second ${signal}: the supervisor decides when to kill`)
          : this.#lifecycle.dispatch({ type: 'stop-again', signal }),
      reload: (signal: NodeJS.Signals) => this.#lifecycle.dispatch({ type: 'reload', signal }),
    };
    return installSignalHandlers(this.#options, actions, this.#environment.signals);
  }

  #upgradeFromTrigger(trigger: string): void {
    // Outcomes are logged and emitted by #runUpgrade; a signal has nobody to reject to.
    this.#lifecycle.upgrade(trigger).catch((error: unknown) => {
      if (error instanceof GraceError && error.cause === PASSED_ON) return;
      if (!(error instanceof UpgradeError))
        this.#miswiring.refused(trigger, (error as Error).message, this.#lifecycle.life.name === 'starting');
    });
  }

  /**
   * The upgrade signal reached a worker of `grace-restart run` (`kill -USR2 <worker pid>`): the
   * supervisor upgrades every worker, so it gets the signal; the worker would die of it otherwise.
   */
  #forwardUpgrade(signal: NodeJS.Signals, supervisorPid: number): void {
    const log = this.#options.logger;
    try {
      this.#environment.kill(supervisorPid, signal);
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
    // Our own handler is one of the signal's listeners; any other is the app's.
    const appHandlers = this.#environment.signals.listenerCount(signal) - 1;
    if (this.#miswiring.leaveStopToApp(signal, this.#lifecycle.life.name === 'starting', appHandlers)) {
      // From now on the stop signals are the app's alone, as without grace-restart.
      this.#signals.releaseStopSignals();
      return;
    }
    this.#options.logger.info({ signal }, 'stopping: draining connections');
    this.#lifecycle.dispatch({ type: 'stop', trigger: signal, exit: this.#options.exit });
  }

  /** When autoReady may report: once no listen() is pending, after a settle time while an inherited listener is unclaimed. */
  #readyWhen(): ReadyWhen {
    if (this.#listeners.pending > 0) return 'not-yet';
    return this.#readyFd === undefined || !this.#listeners.hasUnclaimed ? 'now' : 'settle';
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
      answers: this.#answers.counts,
    };
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
