/**
 * What one process tells systemd about the service, in the words of its lifecycle: ready,
 * reloading around an upgrade, the upgrade's failure, the handover of the service to a
 * successor (MAINPID=), serving again after the successor died, stopping. The messages are
 * built here and nowhere else; service-notify.ts sends them.
 *
 * The link remembers one thing: whether this process still speaks for the service. After
 * `handedTo`, systemd follows the successor, and this process's own stop is no news to it.
 * Without NOTIFY_SOCKET (or in a supervised worker, whose supervisor speaks) every call is a
 * no-op.
 */
import { reloadingFields, type ServiceNotifier } from './service-notify.js';

export class SystemdLink {
  readonly #notifier: ServiceNotifier | undefined;
  #speaksForService = true;

  constructor(notifier: ServiceNotifier | undefined) {
    this.#notifier = notifier;
  }

  /** What a successor needs in its environment to notify in its turn (empty without systemd). */
  get env(): Readonly<Record<string, string>> | undefined {
    return this.#notifier?.env;
  }

  /** This process serves the service (a first start, or a successor whose predecessor is gone). */
  ready(generation: number): void {
    this.#notifier?.send(['READY=1', `MAINPID=${process.pid}`, `STATUS=serving, generation ${generation}`]);
    this.#notifier?.startWatchdog();
  }

  /** A successor serves; systemd hears of it from the predecessor's {@link handedTo}. */
  readyBehindPredecessor(): void {
    this.#notifier?.startWatchdog();
  }

  /** An upgrade to `generation` starts (RELOADING=1 until the next READY=1). */
  reloading(generation: number): void {
    this.#notifier?.send(reloadingFields(`upgrading: starting generation ${generation}`));
  }

  /** The successor never got ready: this process serves on. */
  upgradeFailed(reason: string, generation: number): void {
    this.#notifier?.send(['READY=1', `STATUS=upgrade failed (${reason}): serving generation ${generation}`]);
  }

  /** The successor served through its probation: systemd follows it from now on. */
  handedTo(pid: number, generation: number): void {
    if (this.#notifier === undefined) return;
    this.#speaksForService = false;
    this.#notifier.stopWatchdog();
    this.#notifier.send([`MAINPID=${pid}`, 'READY=1', `STATUS=serving, generation ${generation}`]);
  }

  /** The successor died after the handover and this process bound the addresses again. */
  servesAgain(successorPid: number | undefined, generation: number): void {
    this.#speaksForService = true;
    this.#notifier?.send([
      'READY=1',
      `MAINPID=${process.pid}`,
      `STATUS=successor ${successorPid} died: serving generation ${generation} again`,
    ]);
    this.#notifier?.startWatchdog();
  }

  /** A stop of the service; not sent once the successor speaks for it (the stop is this process's alone). */
  stopping(): void {
    if (this.#speaksForService) this.#notifier?.send(['STOPPING=1', 'STATUS=stopping: draining connections']);
  }

  /** This process stops because nothing could serve: said whoever speaks for the service. */
  stoppingBecause(status: string): void {
    this.#notifier?.send(['STOPPING=1', `STATUS=${status}`]);
  }

  /** Resolves once every message was sent (before the process exits). */
  flush(): Promise<void> {
    return this.#notifier?.flush() ?? Promise.resolve();
  }
}
