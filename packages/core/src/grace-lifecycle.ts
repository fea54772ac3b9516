/**
 * The lifecycle of one Grace instance, run: every event (grace.ts turns signals, API calls and
 * the control socket into events; the upgrade, the handover and the drain add their own) is
 * looked up in lifecycle.ts's table, and its action runs here, by name, in one exhaustive
 * switch. Each state's data lives in the state (grace-life.ts): the upgrade under way in
 * `upgrading`, the Handover (handover.ts) in `handed-off`, how the process ends in `stopping`.
 */
import type { AnswerCounts } from './answer-counts.js';
import { SuccessorCanary } from './successor-canary.js';
import { describeBootPriority, planBootPriority, returnFromBootPriority } from './boot-priority.js';
import type { EventEmitter } from 'node:events';
import { GraceError, UpgradeError } from './errors.js';
import { foregroundWrapper, foregroundWrapperMessage } from './foreground-wrapper.js';
import type { GraceEnvironment } from './grace-environment.js';
import type { GraceEvents, UpgradeResult } from './grace-events.js';
import type { Life, LifeEvent, Upgraded } from './grace-life.js';
import { closeChannel, reportReady, reportUnhealthy, successorCommand } from './handoff.js';
import { runHealthCheck } from './health-check.js';
import { Handover, type HandoverContext } from './handover.js';
import type { Hooks } from './hooks.js';
import { transition, type LifecycleAction } from './lifecycle.js';
import type { ListenerSet } from './listeners.js';
import type { Miswiring } from './miswiring.js';
import type { ResolvedOptions } from './options.js';
import { removePidFile, writePidFile } from './pid-file.js';
import { processRuns } from './process-runs.js';
import type { ControlServer } from './control.js';
import { signalExitCode } from './signals.js';
import type { Supervision } from './supervised.js';
import type { SystemdLink } from './systemd-link.js';
import { Shutdown } from './shutdown.js';
import { deferred } from './timing.js';

/** What the lifecycle works with: the parts grace.ts builds from the options and the process. */
export interface LifecycleContext {
  readonly options: ResolvedOptions;
  readonly environment: GraceEnvironment;
  readonly listeners: ListenerSet;
  readonly link: SystemdLink;
  readonly supervision: Supervision | undefined;
  readonly hooks: Hooks;
  readonly miswiring: Miswiring;
  readonly control: Promise<ControlServer | undefined>;
  readonly generation: number;
  readonly parentPid: number | undefined;
  readonly readyFd: number | undefined;
  readonly startDir: string;
  /** Whether this process takes connections moved to it (it says so in its ready report). */
  readonly adopting: boolean;
  readonly createdAt: number;
  /** What this process answered so far (answer-counts.ts): the `canary` option's baseline. */
  readonly ownAnswers: () => AnswerCounts;
  /** The Grace instance, whose events the lifecycle emits. */
  readonly events: EventEmitter<GraceEvents>;
  uninstallSignals(): void;
}

export class Lifecycle {
  readonly #c: LifecycleContext;
  readonly #shutdown: Shutdown;
  /** Settles when this process's life ends: `close()` returns it. */
  readonly #closed = closedPromise();
  #life: Life;
  /** Events dispatched so far: tells a nested dispatch from the action's own change of state. */
  #dispatched = 0;

  constructor(context: LifecycleContext, starting: Life & { name: 'starting' }) {
    this.#c = context;
    this.#shutdown = new Shutdown(context);
    this.#life = starting;
  }

  /** The current state and its data (read-only: only an event changes it). */
  get life(): Life {
    return this.#life;
  }

  get closed(): Promise<void> {
    return this.#closed.promise;
  }

  /**
   * Looks the event up in the lifecycle table and runs its action, each action by name. The
   * action moves `#life` to the state the table names (checked); only the upgrade actions
   * return something: the upgrade to join, or why there is none.
   */
  dispatch(event: LifeEvent): Promise<Upgraded> | undefined {
    const from = this.#life;
    const { to, action } = transition(from.name, event.type);
    if (action !== 'ignore' || from.name !== to)
      this.#c.options.logger.debug({ from: from.name, event: event.type, to, action }, 'lifecycle');
    const seq = ++this.#dispatched;
    const answer = this.#run(action, from, event);
    // An app's event handler may dispatch in turn (upgrade() on 'ready'): then the state is its.
    if (seq === this.#dispatched && this.#life.name !== to) {
      throw new Error(`grace-restart: ${action} left the lifecycle in ${this.#life.name}, not ${to}`);
    }
    return answer;
  }

  #run(action: LifecycleAction, from: Life, event: LifeEvent): Promise<Upgraded> | undefined {
    switch (action) {
      case 'check-health':
        return this.#checkHealth(from);
      case 'report-ready':
        return this.#reportReady();
      case 'stop-unhealthy':
        return this.#stopUnhealthy(event);
      case 'stop-failed-canary':
        return this.#stopFailedCanary(event);
      case 'spawn-successor':
        return this.#spawnSuccessor(event);
      case 'join-upgrade':
        return this.#joinUpgrade(from);
      case 'refuse-upgrade':
        return Promise.reject(upgradeRefusal(from.name));
      case 'pass-upgrade-on':
        return this.#passUpgradeOn(from, event);
      case 'drain-for-stop':
      case 'abort-upgrade-and-drain':
        return this.#drainForStop(from, event);
      case 'forget-handoff-and-stop':
        return this.#forgetHandoff(from, event);
      case 'exit-now':
        return this.#exitNow(event);
      case 'call-onReload':
        return this.#callOnReload(event);
      case 'drain-for-upgrade':
        return this.#drainForUpgrade(event);
      case 'roll-back':
        return this.#rollBack(event);
      case 'serve-again':
        return this.#serveAgain(from, event);
      case 'keep-draining':
        return this.#keepDraining(from, event);
      case 'stop-serving':
        return this.#stopServing(event);
      case 'close':
        return this.#closeLife(from, event);
      case 'ignore':
        if (event.type === 'reload')
          this.#c.options.logger.info({ signal: event.signal }, `ignoring ${event.signal}: this process is shutting down`);
        return undefined;
      default:
        return assertNever(action);
    }
  }

  /** Ready as the app sees it: the health check, when there is one, decides whether it serves. */
  #checkHealth(from: Life): undefined {
    if (from.name === 'starting') from.autoReady.dispose();
    const { healthCheck, healthCheckTimeout, logger } = this.#c.options;
    const check = new AbortController();
    this.#life = { name: 'checking', check };
    if (healthCheck === undefined) {
      this.dispatch({ type: 'healthy' });
      return undefined;
    }
    const started = Date.now();
    void runHealthCheck(healthCheck, this.#c.listeners.servers, healthCheckTimeout).then((failure) => {
      if (check.signal.aborted) return;
      const durationMs = Date.now() - started;
      if (failure === undefined) logger.info({ durationMs }, 'health check passed');
      this.dispatch(failure === undefined ? { type: 'healthy' } : { type: 'unhealthy', reason: failure });
    });
    return undefined;
  }

  /** The health check failed: tell the predecessor why, serve nothing, drain what came in, exit 1. */
  #stopUnhealthy(event: LifeEvent): undefined {
    const reason = event.type === 'unhealthy' ? event.reason : 'unknown';
    this.#c.options.logger.error({ reason }, `health check failed, stopping with exit code 1: ${reason}`);
    // A successor tells its predecessor, which speaks for the service (a STOPPING=1 from here would
    // stop the unit); a first start tells systemd, whose start then fails.
    if (this.#c.readyFd !== undefined) reportUnhealthy(this.#c.readyFd, reason);
    else this.#c.link.stoppingBecause(`health check failed: ${reason}`);
    this.#life = { name: 'stopping', exit: this.#c.options.exit, exitCode: 1, ownsAddresses: false };
    this.#track(this.#stopAndDrain(undefined));
    return undefined;
  }

  /**
   * The predecessor serves again and speaks for the service (systemd's main process still):
   * drain what this process holds and exit 1, with no STOPPING=1, no socket file removed.
   */
  #stopFailedCanary(event: LifeEvent): undefined {
    const reason = event.type === 'canary-failed' ? event.reason : 'unknown';
    this.#c.options.logger.error(
      { parentPid: this.#c.parentPid, reason },
      `${reason}: stopping with exit code 1, the previous process serves again`,
    );
    this.#life = { name: 'stopping', exit: this.#c.options.exit, exitCode: 1, ownsAddresses: false };
    this.#track(this.#stopAndDrain(undefined));
    return undefined;
  }

  /**
   * From the control socket: true when this process is a successor that serves while its
   * predecessor still runs (it then stops). Once the predecessor has let go, nobody could serve
   * again in its place: a verdict then (from whoever can reach the socket) is refused.
   */
  canaryFailed(reason: string): boolean {
    const { parentPid } = this.#c;
    if (
      parentPid === undefined ||
      this.#life.name !== 'ready' ||
      !processRuns(parentPid, (pid, signal) => this.#c.environment.kill(pid, signal))
    )
      return false;
    this.dispatch({ type: 'canary-failed', reason });
    return true;
  }

  #reportReady(): undefined {
    // Full priority before the ready report: the moved connections come right after it.
    const priority = returnFromBootPriority();
    this.#life = { name: 'ready', relisten: undefined };
    this.#c.miswiring.dispose();
    this.#c.listeners.closeUnclaimed();
    const log = this.#c.options.logger;
    this.#writePidFile();
    const adopts = this.#c.adopting ? this.#c.listeners.listeningNames : undefined;
    const handedOver = this.#c.readyFd !== undefined && reportReady(this.#c.readyFd, adopts);
    if (this.#c.readyFd !== undefined && !handedOver) {
      log.warn({ parentPid: this.#c.parentPid }, 'the previous process is gone: serving alone');
    }
    // A successor becomes systemd's main process when its predecessor lets go (handover.ts).
    if (handedOver) this.#c.link.readyBehindPredecessor();
    else this.#c.link.ready(this.#c.generation);
    this.#c.supervision?.notify(
      adopts === undefined ? { type: 'ready', generation: this.#c.generation } : { type: 'ready', generation: this.#c.generation, adopts },
    );
    const wrapper = this.#c.generation === 1 && !this.#c.supervision ? foregroundWrapper() : undefined;
    if (wrapper !== undefined) log.warn({ wrapperPid: wrapper.pid }, foregroundWrapperMessage(wrapper, this.#c.options.pidFile));
    const ready = { pid: process.pid, generation: this.#c.generation, durationMs: Date.now() - this.#c.createdAt };
    if (priority?.ok === false) log.error({ pid: process.pid }, `boot priority: ${priority.text}`);
    log.info(priority === undefined ? ready : { ...ready, bootPriority: priority.text }, 'ready');
    this.#c.events.emit('ready', ready);
    return undefined;
  }

  /** An upgrade from `trigger`: resolves once the successor is ready. */
  upgrade(trigger: string): Promise<UpgradeResult> {
    return this.upgradeWithVerdict(trigger).then((upgraded) => upgraded.result);
  }

  /**
   * An upgrade from `trigger`, with the verdict of the successor's probation to await
   * (`grace-restart upgrade` waits for it). Refused where the platform or supervision does
   * not allow one.
   */
  upgradeWithVerdict(trigger: string): Promise<Upgraded> {
    if (this.#c.supervision) {
      const { supervisorPid } = this.#c.supervision;
      const message = `grace-restart: this worker is supervised; upgrade through its supervisor (kill -USR2 ${supervisorPid}, or grace-restart upgrade --pid ${supervisorPid})`;
      return Promise.reject(new GraceError('GRACE_ERR_NOT_SUPPORTED', message));
    }
    if (process.platform === 'win32') {
      return Promise.reject(
        new GraceError(
          'GRACE_ERR_NOT_SUPPORTED',
          'grace-restart: upgrades need fd passing, which Windows does not support; graceful stop still works',
        ),
      );
    }
    return this.dispatch({ type: 'upgrade', trigger }) ?? Promise.reject(new Error('grace-restart: the upgrade action answered nothing'));
  }

  #spawnSuccessor(event: LifeEvent): Promise<Upgraded> {
    const trigger = event.type === 'upgrade' ? event.trigger : event.type;
    const abort = new AbortController();
    // Started in a microtask, so that the attempt is the state before its first event is emitted.
    const promise = Promise.resolve().then(() => this.#runUpgrade(trigger, abort.signal));
    this.#life = { name: 'upgrading', attempt: { promise, abort } };
    return promise;
  }

  /**
   * An upgrade signal while handing over: the successor serves, so the signal is its. Sent on
   * (the returned rejection, marked PASSED_ON, is not logged again); other triggers are refused.
   */
  #passUpgradeOn(from: Life, event: LifeEvent): Promise<Upgraded> {
    const pid = from.name === 'handed-off' ? from.handover.successor.pid : undefined;
    const signal = event.type === 'upgrade' ? event.trigger : '';
    if (pid === undefined || signal !== this.#c.options.upgradeSignal) return Promise.reject(upgradeRefusal(from.name));
    try {
      this.#c.environment.kill(pid, signal);
    } catch (error) {
      return Promise.reject(
        new GraceError('GRACE_ERR_CLOSING', `grace-restart: cannot pass ${signal} on to the successor ${pid}: ${String(error)}`),
      );
    }
    const message = `${signal} while handing over: passed on to the successor ${pid}, which serves`;
    this.#c.options.logger.info({ successorPid: pid, signal }, message);
    return Promise.reject(new GraceError('GRACE_ERR_CLOSING', `grace-restart: ${message}`, { cause: PASSED_ON }));
  }

  #joinUpgrade(from: Life): Promise<Upgraded> {
    if (from.name !== 'upgrading') return Promise.reject(upgradeRefusal(from.name));
    this.#c.options.logger.info({}, 'an upgrade is already running: joining it');
    return from.attempt.promise;
  }

  async #runUpgrade(trigger: string, signal: AbortSignal): Promise<Upgraded> {
    const log = this.#c.options.logger;
    const startedAt = Date.now();
    this.#c.events.emit('upgrade-start', { generation: this.#c.generation, trigger });
    const bootPriority = planBootPriority(this.#c.options.bootNice);
    log.info({ generation: this.#c.generation, trigger, bootPriority: describeBootPriority(bootPriority) }, 'upgrade started');
    this.#c.link.reloading(this.#c.generation + 1);
    let ready: Awaited<ReturnType<GraceEnvironment['spawnSuccessor']>>;
    try {
      if (signal.aborted) throw new UpgradeError('aborted', 'upgrade aborted: the process is shutting down', { durationMs: 0 });
      ready = await this.#c.environment.spawnSuccessor({
        command: successorCommand(this.#c.startDir),
        listeners: this.#c.listeners.handoffList(),
        generation: this.#c.generation,
        readyTimeout: this.#c.options.readyTimeout,
        killTimeout: this.#c.options.killTimeout,
        startedAt,
        signal,
        ipc: this.#c.options.moveConnections,
        env: this.#c.link.env,
        bootPriority,
      });
    } catch (error) {
      const failure =
        error instanceof UpgradeError
          ? error
          : new UpgradeError('spawn', String(error), { durationMs: Date.now() - startedAt, cause: error });
      this.dispatch({ type: 'successor-failed', error: failure });
      throw failure;
    }
    const { pid, child, adopts } = ready;
    child.once('exit', (code, sig) => this.#successorExited(pid, code, sig, startedAt));
    const result = { pid, generation: this.#c.generation + 1, durationMs: Date.now() - startedAt };
    const successor = { channel: child, adopts, pid, release: () => closeChannel(child) };
    this.dispatch({ type: 'successor-ready', successor, result });
    // The handover starts in that dispatch; a stop that came first has none: nothing to judge.
    const life = this.#life;
    const verdict = life.name === 'handed-off' ? life.handover.verdict : Promise.resolve(undefined);
    this.#c.events.emit('upgrade-ready', result);
    return { result, verdict };
  }

  /** The successor exited after its ready report: a clean exit is a stop it was told, anything else a crash. */
  #successorExited(pid: number, code: number | null, signal: NodeJS.Signals | null, startedAt: number): void {
    const message = `successor ${pid} exited (${signal ?? `exit code ${code}`}) after it was ready`;
    const error = new UpgradeError('exited', message, { pid, exitCode: code, signal, durationMs: Date.now() - startedAt });
    this.dispatch({ type: code === 0 && signal === null ? 'successor-stopped' : 'successor-lost', error });
  }

  #drainForStop(from: Life, event: LifeEvent): undefined {
    const exit = this.#c.options.exit && (event.type !== 'stop' || event.exit);
    const ownsAddresses = from.name === 'ready' || from.name === 'upgrading';
    if (from.name === 'starting') from.autoReady.dispose();
    if (from.name === 'checking') from.check.abort();
    if (from.name === 'upgrading') from.attempt.abort.abort();
    this.#life = { name: 'stopping', exit, exitCode: 0, ownsAddresses };
    if (event.type === 'stop') this.#c.link.stopping();
    // A stop waits for what is under way: an aborted upgrade's end, a bind again after a rollback.
    const before = from.name === 'upgrading' ? from.attempt.promise : from.name === 'ready' ? from.relisten : undefined;
    this.#track(this.#stopAndDrain(before));
    return undefined;
  }

  #forgetHandoff(from: Life, event: LifeEvent): undefined {
    if (from.name !== 'handed-off') throw unreachable(from.name, event.type);
    const log = this.#c.options.logger;
    if (event.type === 'stop') {
      this.#c.link.stopping();
      log.info({ trigger: event.trigger }, 'told to stop while handing over: this process will not serve again');
    } else {
      // Exit 0 is a successor that handed over to a newer version in turn, or a stop of the service.
      const pid = from.handover.successor.pid;
      log.info(
        { successorPid: pid },
        `successor ${pid} exited cleanly after it was ready (it handed over to a newer version, or the service is stopping): this process finishes its drain and exits`,
      );
    }
    // The drain for the successor goes on; only the wait for its probation and the move are dropped.
    from.handover.hurry();
    this.#life = {
      name: 'stopping',
      exit: this.#c.options.exit && (event.type !== 'stop' || event.exit),
      exitCode: 0,
      ownsAddresses: false,
    };
    return undefined;
  }

  #exitNow(event: LifeEvent): undefined {
    const signal = event.type === 'stop-again' ? event.signal : 'SIGTERM';
    this.#c.options.logger.warn({ signal }, 'second stop signal: exiting now');
    // No drain, but no stale PID file either (it is removed only if it names this process).
    const { pidFile } = this.#c.options;
    if (pidFile !== undefined && !this.#c.supervision) removePidFile(pidFile);
    this.#c.environment.exit(signalExitCode(signal));
    return undefined;
  }

  #callOnReload(event: LifeEvent): undefined {
    const log = this.#c.options.logger;
    const { onReload } = this.#c.options;
    const signal = event.type === 'reload' ? event.signal : 'SIGHUP';
    if (onReload === undefined) {
      log.warn({ signal }, `ignoring ${signal}: no onReload hook (upgrade with SIGUSR2, stop with SIGTERM)`);
      return undefined;
    }
    log.info({ signal }, 'reloading configuration');
    Promise.resolve()
      .then(onReload)
      .catch((err: unknown) => log.error({ err: String(err) }, 'onReload failed'));
    return undefined;
  }

  /** A successor (or, under the supervisor, a replacement) serves: hand over to it. */
  #drainForUpgrade(event: LifeEvent): undefined {
    const log = this.#c.options.logger;
    let handover: Handover;
    if (event.type === 'successor-ready') {
      handover = new Handover(event.successor, this.#c.options.probation, this.#successorCanary(event.successor.pid));
      const { pid, generation, durationMs } = event.result;
      log.info({ successorPid: pid, generation, durationMs }, 'upgrade ready: draining this process');
    } else if (event.type === 'replaced' && this.#c.supervision !== undefined) {
      const { adopts, relayEnded } = event.retirement;
      // The channel is the worker's own link to the supervisor: it stays open after the move.
      handover = new Handover({ channel: this.#c.supervision.channel, adopts, pid: undefined, relayEnded, release: () => undefined }, 0);
      log.info({ adopts }, 'replaced by a new worker: moving connections to it through the supervisor');
    } else {
      throw unreachable(this.#life.name, event.type);
    }
    this.#life = { name: 'handed-off', handover };
    this.#track(this.#handOver(handover));
    return undefined;
  }

  /** The judge of the `canary` option for this successor, when the option is on (and the successor has a control socket). */
  #successorCanary(pid: number | undefined): SuccessorCanary | undefined {
    const { canary, controlDir, logger } = this.#c.options;
    if (canary === undefined || pid === undefined || controlDir === false) return undefined;
    return new SuccessorCanary(pid, controlDir, canary.maxErrorPoints, this.#c.ownAnswers, logger);
  }

  /** The successor never got ready (or died before this process let go): this process serves on. */
  #rollBack(event: LifeEvent): undefined {
    this.#life = { name: 'ready', relisten: undefined };
    if (event.type === 'successor-failed') this.#upgradeFailed(event.error, 'still serving');
    else if (event.type === 'successor-lost' || event.type === 'successor-stopped') {
      this.#c.options.logger[event.type === 'successor-stopped' ? 'info' : 'warn'](successorFields(event.error), event.error.message);
    }
    return undefined;
  }

  #upgradeFailed(failure: UpgradeError, outcome: string): void {
    const { reason, pid, exitCode, signal, durationMs } = failure;
    this.#c.options.logger.error(
      { reason, successorPid: pid, exitCode, signal, durationMs },
      `upgrade failed, ${outcome}: ${failure.message}`,
    );
    if (outcome === 'still serving') this.#c.link.upgradeFailed(reason, this.#c.generation);
    this.#c.events.emit('upgrade-failed', failure);
  }

  /**
   * The successor died while this process drained for it: bind the addresses again and
   * serve, so the service outlives a new version that crashes shortly after its start.
   */
  #serveAgain(from: Life, event: LifeEvent): undefined {
    if (from.name !== 'handed-off' || event.type !== 'successor-lost') throw unreachable(from.name, event.type);
    const { error } = event;
    const log = this.#c.options.logger;
    from.handover.cancel(error);
    for (const tracker of this.#c.listeners.trackers) tracker.stopDraining();
    const relisten = this.#c.listeners.relisten().then(
      () => {
        this.#writePidFile();
        this.#c.link.servesAgain(error.pid, this.#c.generation);
        log.error({ successorPid: error.pid, code: error.exitCode, signal: error.signal }, `${error.message}: this process serves again`);
        this.#c.events.emit('upgrade-failed', error);
      },
      (relistenError: unknown) => {
        log.error(
          { successorPid: error.pid, err: String(relistenError) },
          `${error.message} and this process cannot bind again: stopping with exit code 1`,
        );
        this.dispatch({ type: 'relisten-failed', error });
      },
    );
    this.#life = { name: 'ready', relisten };
    return undefined;
  }

  #keepDraining(from: Life, event: LifeEvent): undefined {
    if (from.name !== 'stopping') throw unreachable(from.name, event.type);
    // close() during a signal's stop: the stop through the API never exits the process.
    if (event.type === 'stop' && !event.exit) this.#life = { ...from, exit: false };
    if (event.type === 'successor-failed') this.#upgradeFailed(event.error, 'stopping anyway');
    if (event.type === 'successor-lost' || event.type === 'successor-stopped') {
      this.#c.options.logger.info(successorFields(event.error), event.error.message);
    }
    return undefined;
  }

  /** The addresses could not be bound again after the successor died: nothing serves, stop. */
  #stopServing(event: LifeEvent): undefined {
    const pid = event.type === 'relisten-failed' ? event.error.pid : undefined;
    this.#c.link.stoppingBecause(`successor ${pid} died and the addresses could not be bound again: stopping`);
    this.#life = { name: 'stopping', exit: this.#c.options.exit, exitCode: 1, ownsAddresses: false };
    this.#track(this.#stopAndDrain(undefined));
    return undefined;
  }

  #closeLife(from: Life, event: LifeEvent): undefined {
    const reason = event.type === 'drain-done' ? event.reason : 'stop';
    const ending = from.name === 'stopping' ? from : { exit: this.#c.options.exit, exitCode: 0, ownsAddresses: false };
    this.#life = { name: 'closed' };
    this.#shutdown.close(reason, ending).then(this.#closed.resolve, (error: unknown) => this.#failed(error));
    return undefined;
  }

  /** Probation and move (handover.ts), then the drain of what did not move. */
  async #stopAndDrain(before: Promise<unknown> | undefined): Promise<void> {
    if (await this.#shutdown.stopAndDrain(before)) this.dispatch({ type: 'drain-done', reason: 'stop' });
  }

  async #handOver(handover: Handover): Promise<void> {
    const moved = await handover.run(this.#handoverContext());
    // The successor failed its canary: it drains and exits; this process serves again at once.
    const failure = handover.canaryFailure;
    if (failure !== undefined) {
      this.dispatch({ type: 'successor-lost', error: failure });
      // Told to stop while the canary was judged: nothing else drains this process.
      if (this.#life.name === 'stopping') await this.#stopAndDrain(undefined);
      return;
    }
    if (moved === undefined) return; // the successor died: this process serves again (#serveAgain)
    if (await this.#shutdown.drain('upgrade', moved, handover.drainSignal)) this.dispatch({ type: 'drain-done', reason: 'upgrade' });
  }

  #handoverContext(): HandoverContext {
    const { moveConnections, idleGrace, slowStart, logger } = this.#c.options;
    return {
      listeners: this.#c.listeners,
      moveConnections,
      idleGrace,
      slowStart,
      logger,
      letGo: (successorPid, hurried) => {
        // From now on systemd follows the successor (MAINPID=): this process's exit does not end the unit.
        if (!hurried && successorPid !== undefined) this.#c.link.handedTo(successorPid, this.#c.generation + 1);
        this.#c.events.emit('drain-start', { reason: 'upgrade' });
      },
    };
  }

  /** Names this process in the PID file (not under a supervisor, whose pid is the service's). */
  #writePidFile(): void {
    const { pidFile, logger } = this.#c.options;
    if (pidFile === undefined || this.#c.supervision) return;
    try {
      writePidFile(pidFile);
    } catch (error) {
      // A PID file is for operators; failing to write one must not stop the service.
      logger.error({ pidFile, err: String(error) }, 'grace-restart: could not write the PID file');
    }
  }

  /** Runs a part of the shutdown whose failure ends this process's life in error. */
  #track(work: Promise<void>): void {
    work.catch((error: unknown) => this.#failed(error));
  }

  #failed(error: unknown): void {
    this.#closed.reject(error);
    this.#c.options.logger.error({ err: String(error) }, 'grace-restart: shutdown failed');
    const life = this.#life;
    if (this.#c.options.exit && !(life.name === 'stopping' && !life.exit)) void this.#shutdown.exit(1);
  }
}

/** Marks the rejection of an upgrade signal passed on to the successor: logged where it was passed on. */
export const PASSED_ON = Symbol('passed on to the successor');

/** Why an upgrade is refused in `state`. */
function upgradeRefusal(state: Life['name']): GraceError {
  if (state === 'starting' || state === 'checking')
    return new GraceError('GRACE_ERR_NOT_READY', 'grace-restart: cannot upgrade before this process is ready');
  const doing = state === 'handed-off' ? 'handing over to its successor' : 'shutting down';
  return new GraceError('GRACE_ERR_CLOSING', `grace-restart: cannot upgrade, this process is ${doing}`);
}

function successorFields(error: UpgradeError): Record<string, unknown> {
  return { successorPid: error.pid, code: error.exitCode, signal: error.signal };
}

function unreachable(state: string, event: string): Error {
  return new Error(`grace-restart: the lifecycle table sent ${event} in ${state} to an action that does not take it`);
}

function assertNever(action: never): never {
  throw new Error(`grace-restart: unhandled lifecycle action ${String(action)}`);
}

/** Settles when the lifecycle ends; rejected with nobody awaiting (a stop by signal), #failed has logged it. */
function closedPromise(): ReturnType<typeof deferred<void>> {
  const closed = deferred();
  closed.promise.catch(() => undefined);
  return closed;
}
