/**
 * How a process stops serving: the drain of the connections it still holds (drain.ts), the
 * servers of a miswired app, the hooks, and the end of its life (sockets, PID file, control
 * socket, exit). The lifecycle decides when (grace-lifecycle.ts); this file does it.
 */
import { drainConnections } from './drain.js';
import type { LifecycleContext } from './grace-lifecycle.js';
import { flushLogger } from './logger.js';
import type { DrainInfo } from './options.js';
import { removePidFile } from './pid-file.js';

/** How the process ends, from the state that ends it. */
export interface Ending {
  /** False after `close()`: a stop through the API never exits the process. */
  exit: boolean;
  exitCode: number;
  /** This process served its addresses when told to stop: its stop may remove unix socket files. */
  ownsAddresses: boolean;
}

export class Shutdown {
  readonly #c: LifecycleContext;

  constructor(context: LifecycleContext) {
    this.#c = context;
  }

  /** A stop: after what is under way, keep serving `shutdownDelay`, stop accepting, drain. True once drained. */
  async stopAndDrain(before: Promise<unknown> | undefined): Promise<boolean> {
    const { logger: log, shutdownDelay } = this.#c.options;
    await before?.catch(() => undefined);
    this.#c.events.emit('drain-start', { reason: 'stop' });
    if (shutdownDelay > 0) {
      log.info({ shutdownDelay }, 'still serving while load balancers deregister');
      await new Promise((resolve) => setTimeout(resolve, shutdownDelay));
    }
    this.#c.listeners.stopAccepting(false);
    return this.drain('stop', 0, undefined);
  }

  /**
   * Drains the connections this process still holds. True once drained; false when `signal`
   * ended it (the successor died: this process serves again).
   */
  async drain(reason: DrainInfo['reason'], moved: number, signal: AbortSignal | undefined): Promise<boolean> {
    const { logger: log, idleGrace, drainTimeout } = this.#c.options;
    const connections = this.#c.listeners.trackers.reduce((n, t) => n + t.connections.size, 0);
    this.#c.supervision?.notify({ type: 'drain-start', reason, connections });
    const onDrain = (): Promise<void> => this.#c.hooks.run('onDrain', { reason });
    const result = await drainConnections(this.#c.listeners.trackers, { idleGrace, timeout: drainTimeout, onDrain, signal });
    if (signal?.aborted) return false;
    result.moved = moved;
    if (reason === 'stop') await this.#c.miswiring.drainSeen(idleGrace, drainTimeout);
    const forced = result.forced > 0;
    log[forced ? 'warn' : 'info'](
      { ...result, reason },
      forced ? `drain deadline reached: destroyed ${result.forced} connections` : 'drained',
    );
    this.#c.events.emit('drain-end', { ...result, reason });
    this.#c.supervision?.notify({ type: 'drain-end', reason, durationMs: result.durationMs, forced: result.forced });
    return true;
  }

  /** The end of this process's life: sockets released, onShutdown hooks, PID file and control socket removed, exit. */
  async close(reason: DrainInfo['reason'], ending: Ending): Promise<void> {
    const { pidFile } = this.#c.options;
    this.#c.miswiring.dispose();
    // Socket files stay while anyone may serve on them: a successor, a predecessor that
    // still serves (this process never got ready), or the supervisor.
    this.#c.listeners.release(reason === 'stop' && ending.ownsAddresses && !this.#c.supervision);
    await this.#c.hooks.run('onShutdown', { reason });
    if (pidFile !== undefined && reason === 'stop' && !this.#c.supervision) removePidFile(pidFile);
    (await this.#c.control)?.close();
    // A process about to exit keeps its signal handlers until it exits: a stop that arrives
    // while its logs flush (systemd signals the whole group) is then answered by the table
    // ('closed' ignores it), not by the default action, which would end it by SIGTERM.
    if (ending.exit) await this.exit(ending.exitCode);
    else this.#c.uninstallSignals();
  }

  /** Exits once systemd has heard everything and the logs are flushed. */
  async exit(code: number): Promise<void> {
    await this.#c.link.flush();
    await flushLogger(this.#c.options.logger);
    this.#c.environment.exit(code);
  }
}
