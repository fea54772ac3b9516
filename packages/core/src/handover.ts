/**
 * One handover: this process gives its service to one successor (or, in a supervised worker,
 * to the replacement the supervisor relays to). Phases, in order:
 *
 *   probation   the successor serves; this process keeps its listening sockets and moves its
 *               idle keep-alive connections, and the connections it accepts, to the successor,
 *               until the successor has served the `probation` option's time (a supervised
 *               worker has none: the supervisor deals with its replacement's failures). Were the
 *               successor to die now, the sockets' accept queue survives here: no connect is
 *               refused, and this process serves again.
 *   letting-go  this process stops accepting (`letGo`: systemd follows the successor); the
 *               connections accepted until then move too, until the move ends
 *   draining    what did not move drains here (shutdown.ts drains, ended by `drainSignal`)
 *
 * With the `canary` option the probation ends with a verdict on the successor's answers
 * (successor-canary.ts): a successor that fails is told to stop, the move ends, and `run`
 * returns undefined with `canaryFailure` set: this process serves again.
 *
 * Two ways out early, one method each: `hurry()` (told to stop: the probation and the move
 * end, the drain goes on, nothing is taken back) and `cancel()` (the successor died: every
 * phase ends, this process serves again). The successor's connections and channel live here
 * and nowhere else. `verdict` says how the probation ended.
 */
import type { Logger } from './logger.js';
import { moveConnections, type MoveChannel } from './connection-mover.js';
import type { ListenerSet } from './listeners.js';
import type { UpgradeError } from './errors.js';
import type { CanaryReading, SuccessorCanary } from './successor-canary.js';
import { abortableDelay, deferred } from './timing.js';

/**
 * Moving connections to the successor ends once none has moved for this long: a socket busy
 * with a long request then gets today's drain (`Connection: close`) instead of holding the
 * old process back.
 */
const MOVE_STALL_MS = 1_000;
/** How long the successor may take to acknowledge one moved connection before moving stops. */
const MOVE_ACK_TIMEOUT_MS = 2_000;

/** The process that takes over, as the handover sees it. */
export interface Successor {
  /** Where moved connections go: the successor's IPC channel, or the supervisor's. */
  channel: MoveChannel;
  /** Listener names whose connections the successor adopts (none: nothing moves). */
  adopts: readonly string[];
  /** The successor's pid; undefined for a supervisor's replacement (the supervisor speaks for it). */
  pid: number | undefined;
  /** In a supervised worker: aborts when the supervisor stops relaying (the replacement exited). */
  relayEnded?: AbortSignal | undefined;
  /** Ends the channel once nothing more goes over it. */
  release(): void;
}

/** What a handover works with. */
export interface HandoverContext {
  listeners: ListenerSet;
  /** `moveConnections`, `idleGrace` and `slowStart` of the options. */
  moveConnections: boolean;
  idleGrace: number;
  slowStart: number;
  logger: Logger;
  /**
   * This process stops accepting: the successor served through its probation and speaks for
   * the service from now on, unless this process was told to stop meanwhile (`hurried`).
   */
  letGo(successorPid: number | undefined, hurried: boolean): void;
}

export class Handover {
  readonly successor: Successor;
  /** When the probation ends: `probationMs` after the successor's ready report. */
  readonly #probationEnds: number;
  /** Settles when the probation ends: with why the successor failed, or undefined when it served through. */
  readonly #verdict = deferred<UpgradeError | undefined>();
  /** Ends the probation and the move: a stop or the successor's death. */
  readonly #hurry = new AbortController();
  /** Ends every phase: the successor died. */
  readonly #cancel = new AbortController();
  /** Judges the successor at the probation's end (the `canary` option), or undefined. */
  readonly #canary: SuccessorCanary | undefined;
  /** Ends the move: the canary failed. */
  readonly #canaryFailed = new AbortController();

  /**
   * @param probationMs How long this process keeps its sockets and watches the successor: the
   * `probation` option for a successor of its own; 0 for a supervised worker's replacement,
   * whose failures the supervisor deals with (it restarts the slot).
   */
  constructor(successor: Successor, probationMs: number, canary?: SuccessorCanary) {
    this.successor = successor;
    this.#probationEnds = Date.now() + probationMs;
    this.#canary = canary;
  }

  /** Why the successor failed its canary, once it has: this process serves again. */
  get canaryFailure(): UpgradeError | undefined {
    return this.#canaryFailed.signal.aborted ? (this.#canaryFailed.signal.reason as UpgradeError) : undefined;
  }

  /**
   * Settles once the probation is over: undefined when the successor served through it (or
   * this process was told to stop meanwhile), else the failure that ended it.
   */
  get verdict(): Promise<UpgradeError | undefined> {
    return this.#verdict.promise;
  }

  /** Aborts when the successor died: the drain that follows the move must end too. */
  get drainSignal(): AbortSignal {
    return this.#cancel.signal;
  }

  get cancelled(): boolean {
    return this.#cancel.signal.aborted;
  }

  /** Told to stop: no probation to wait out, no more connections to move; the drain goes on. */
  hurry(): void {
    this.#hurry.abort();
  }

  /** The successor died (`failure` says how): every phase ends, this process serves again. */
  cancel(failure: UpgradeError): void {
    this.#verdict.resolve(failure);
    this.#cancel.abort();
    this.#hurry.abort();
  }

  /**
   * Probation and move; then this process accepts no more. Resolves with how many
   * connections moved, or undefined when the handover was cancelled (the caller serves again).
   */
  async run(context: HandoverContext): Promise<number | undefined> {
    // Connections start moving at once; the listening sockets stay through the probation.
    const intake = deferred();
    const moving = this.#move(context, intake.promise);
    const start = await this.#canary?.read();
    await abortableDelay(this.#probationEnds - Date.now(), this.#hurry.signal);
    if (start !== undefined && !this.#hurry.signal.aborted) await this.#judge(start);
    if (this.cancelled) {
      intake.resolve();
      return undefined;
    }
    if (this.canaryFailure !== undefined) {
      // The sockets on their way are answered (or come back) before this process serves alone.
      intake.resolve();
      await moving;
      return undefined;
    }
    this.#verdict.resolve(undefined);
    context.letGo(this.successor.pid, this.#hurry.signal.aborted);
    context.listeners.stopAccepting(true);
    intake.resolve();
    const moved = await moving;
    return this.cancelled ? undefined : moved;
  }

  /** The canary's verdict; a failed successor is told to stop, and the move ends. */
  async #judge(start: CanaryReading): Promise<void> {
    const canary = this.#canary;
    const failure = canary === undefined ? undefined : await canary.judge(start);
    // Died or told to stop while judged: that decides, not the verdict.
    if (failure === undefined || canary === undefined || this.cancelled || this.#hurry.signal.aborted) return;
    this.#verdict.resolve(failure);
    this.#canaryFailed.abort(failure);
    await canary.tellFailed(failure);
  }

  /**
   * Moves the idle plain-HTTP/1 keep-alive connections to the successor that adopts them
   * (connection-mover.ts); returns how many moved. `intake` settles when this process stops
   * accepting: connections accepted until then move too. The rest, and every connection of
   * a listener the successor does not adopt, drain as before.
   */
  async #move(context: HandoverContext, intake: Promise<void>): Promise<number> {
    const { channel, adopts, relayEnded } = this.successor;
    // Told to stop meanwhile: the successor stops too, the connections drain here.
    if (!context.moveConnections || this.#hurry.signal.aborted || adopts.length === 0 || !channel.connected) {
      this.successor.release();
      return 0;
    }
    const listeners = context.listeners.named.filter((l) => adopts.includes(l.name));
    const result = await moveConnections(listeners, channel, {
      deadline: MOVE_STALL_MS,
      maxDuration: Math.max(MOVE_STALL_MS, context.idleGrace),
      ackTimeout: MOVE_ACK_TIMEOUT_MS,
      slowStart: context.slowStart,
      // In a supervised worker, also when the supervisor stops relaying (the replacement exited).
      signal: AbortSignal.any([this.#hurry.signal, this.#canaryFailed.signal, ...(relayEnded === undefined ? [] : [relayEnded])]),
      // Straight to the successor, a socket it did not answer before its death comes back here.
      unansweredComeBack: relayEnded === undefined,
      intake,
      logger: context.logger,
    });
    // Nothing more goes over the channel: it must keep neither process alive.
    this.successor.release();
    context.logger.info({ ...result, successorPid: this.successor.pid }, `moved ${result.moved} connections to the successor`);
    return result.moved;
  }
}
