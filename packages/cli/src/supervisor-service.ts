/**
 * What the supervisor tells the outside about itself: systemd's notify messages (READY=1,
 * RELOADING=1, STOPPING=1, MAINPID=, STATUS=, the watchdog) and, when it replaced another
 * supervisor, the ready report that lets that one go. Every message the supervisor sends is
 * built here, one method per moment, so the lifecycle (supervisor.ts) names moments, not fields.
 * Without NOTIFY_SOCKET the systemd part says nothing.
 */
import type { Logger } from '@grace-restart/core';
import { reloadingFields, reportReady, type ServiceNotifier, type UpgradeOutcome } from '@grace-restart/core/internal';

/** The supervisor that started this one (`upgrade --supervisor`), from core's handoff env. */
export interface Predecessor {
  /** Its ready pipe, when this supervisor was started by one. */
  readyFd: number | undefined;
  parentPid: number | undefined;
}

export class SupervisorService {
  readonly #notifier: ServiceNotifier | undefined;
  readonly #logger: Logger;
  readonly #predecessor: Predecessor;

  constructor(notifier: ServiceNotifier | undefined, logger: Logger, predecessor: Predecessor) {
    this.#notifier = notifier;
    this.#logger = logger;
    this.#predecessor = predecessor;
  }

  /** What a new supervisor needs in its environment to notify in its turn (systemd's NOTIFY_SOCKET). */
  get env(): Readonly<Record<string, string>> | undefined {
    return this.#notifier?.env;
  }

  /** True where systemd listens (Type=notify): a supervisor upgrade can name the new main pid. */
  get listening(): boolean {
    return this.#notifier !== undefined;
  }

  /**
   * The first workers serve: the supervisor that started this one (if any) is told over its
   * pipe, and names this one systemd's main process once it lets go; else systemd hears
   * READY=1 from here.
   */
  ready(serving: string): void {
    const { readyFd, parentPid } = this.#predecessor;
    const handedOver = readyFd !== undefined && reportReady(readyFd);
    if (readyFd !== undefined && !handedOver)
      this.#logger.warn({ parentPid }, 'the supervisor that started this one is gone: serving alone');
    if (!handedOver) this.#notifier?.send(['READY=1', `MAINPID=${process.pid}`, `STATUS=${serving}`]);
    this.#notifier?.startWatchdog();
  }

  /** A rolling upgrade really starts (one refused sends nothing). */
  upgradeStarted(generation: number): void {
    this.#notifier?.send(reloadingFields(`upgrading to generation ${generation}`));
  }

  /** The rolling upgrade ended: READY=1 again, with its outcome. */
  upgradeEnded(outcome: UpgradeOutcome, serving: string): void {
    this.#notifier?.send(['READY=1', outcome.ok ? `STATUS=${serving}` : `STATUS=upgrade failed, ${serving}: ${outcome.error ?? ''}`]);
  }

  /** A new supervisor is being started. */
  supervisorUpgradeStarted(): void {
    this.#notifier?.send(reloadingFields('upgrading the supervisor'));
  }

  /** The new supervisor serves: systemd follows it before this one's exit can end the unit. */
  handedTo(newPid: number, generation: number): void {
    this.#notifier?.stopWatchdog();
    this.#notifier?.send([`MAINPID=${newPid}`, 'READY=1', `STATUS=supervisor ${newPid} serving generation ${generation}`]);
  }

  /** The new supervisor failed: this one serves on. */
  supervisorUpgradeFailed(generation: number, error: string): void {
    this.#notifier?.send(['READY=1', `STATUS=supervisor upgrade failed, still serving generation ${generation}: ${error}`]);
  }

  /** Told to stop: draining the workers. */
  stopping(): void {
    this.#notifier?.send(['STOPPING=1', 'STATUS=stopping: draining the workers']);
  }

  /** The supervisor ends because it failed (`could not start: …`, `stopped: crash loop …`). */
  failed(status: string): void {
    this.#notifier?.send([`STATUS=${status}`]);
  }

  /** Resolves once every queued message was sent (before the process exits). */
  async flush(): Promise<void> {
    await this.#notifier?.flush();
  }
}
