/**
 * The app's `onDrain` and `onShutdown` hooks, run in the order they were added, each within
 * `hookTimeout`: a hook that hangs or throws is logged and the stop goes on without it.
 */
import type { Logger } from './logger.js';
import type { DrainInfo } from './options.js';
import { withDeadline } from './timing.js';

export type HookKind = 'onDrain' | 'onShutdown';
export type Hook = (info: DrainInfo) => void | Promise<void>;

export class Hooks {
  readonly #hooks: Record<HookKind, Hook[]> = { onDrain: [], onShutdown: [] };
  readonly #timeoutMs: number;
  readonly #logger: Logger;

  constructor(timeoutMs: number, logger: Logger) {
    this.#timeoutMs = timeoutMs;
    this.#logger = logger;
  }

  add(kind: HookKind, hook: Hook | undefined): void {
    if (hook !== undefined) this.#hooks[kind].push(hook);
  }

  async run(kind: HookKind, info: DrainInfo): Promise<void> {
    for (const hook of this.#hooks[kind]) {
      try {
        const finished = await withDeadline(
          Promise.resolve().then(() => hook(info)),
          this.#timeoutMs,
        );
        if (!finished) {
          this.#logger.warn(
            { hook: kind, hookTimeout: this.#timeoutMs },
            `${kind} hook still running after ${this.#timeoutMs} ms: going on without it`,
          );
        }
      } catch (err) {
        this.#logger.error({ err: String(err), hook: kind }, `${kind} hook failed`);
      }
    }
  }
}
