/**
 * Which release the workers run, and the one before it, so that a release that crash-loops
 * soon after its promotion is replaced by the previous one instead of taking the service down
 * (issue #28). A release is the real directory the start directory resolves to when its
 * workers are forked: a deploy that puts each release in its own directory and switches a
 * `current` symlink keeps the previous one on disk; one that replaces files in place does not,
 * and is told so when it upgrades.
 */
import { realpathSync } from 'node:fs';
import type { Logger } from '@grace-restart/core';

/**
 * Crashes of a newly promoted generation, within the rollback window, that make it a bad
 * release: one crash may be the odd failure a restart fixes; two in a row within a minute of
 * the promotion, when the release before ran without them, is the release.
 */
export const BAD_RELEASE_CRASHES = 2;

interface Promoted {
  readonly dir: string;
  readonly generation: number;
  readonly at: number;
  /** The release before, to go back to; undefined after a rollback (no rollback of a rollback) or an in-place deploy. */
  readonly previous: string | undefined;
}

export class Releases {
  readonly #startDir: string;
  readonly #windowMs: number;
  readonly #logger: Logger;
  #promoted: Promoted;
  #rollbacks = 0;

  /** @param windowMs How long after a promotion a crash loop rolls back (0: never). */
  constructor(startDir: string, generation: number, windowMs: number, logger: Logger) {
    this.#startDir = startDir;
    this.#windowMs = windowMs;
    this.#logger = logger;
    this.#promoted = { dir: this.resolveTarget(), generation, at: Date.now(), previous: undefined };
  }

  /** The release the workers of this generation run. */
  get current(): string {
    return this.#promoted.dir;
  }

  /** What an upgrade starts now: the start directory's target. Warns when it is the current release (files replaced in place). */
  resolveTarget(): string {
    try {
      return realpathSync(this.#startDir);
    } catch {
      return this.#startDir;
    }
  }

  /** Says, at upgrade time, whether the release being replaced stays available to roll back to. */
  checkUpgrade(target: string): void {
    if (this.#windowMs === 0 || target !== this.#promoted.dir) return;
    // A container started without WORKDIR (or a unit without WorkingDirectory=) starts in /: no
    // release lives there, so "replaced in place" would send the operator looking for the wrong thing.
    if (target === '/') {
      this.#logger.warn(
        { release: target },
        'the supervisor started in /, so it cannot tell one release from the next and a crash-looping release cannot be rolled back: start it in the release directory (systemd WorkingDirectory=, Docker WORKDIR) through a symlink switched at each deploy',
      );
      return;
    }
    this.#logger.warn(
      { release: target },
      `the new release runs from the same directory as the current one (${target}): files replaced in place cannot be rolled back to if it crash-loops; deploy each release to its own directory and switch a symlink`,
    );
  }

  /** Rollbacks to a previous release since this supervisor started. */
  get rollbacks(): number {
    return this.#rollbacks;
  }

  /** The workers of `generation`, started from `dir`, replaced every slot. */
  promote(dir: string, generation: number, rollback: boolean): void {
    if (rollback) this.#rollbacks += 1;
    const previous = rollback || dir === this.#promoted.dir ? undefined : this.#promoted.dir;
    this.#promoted = { dir, generation, at: Date.now(), previous };
  }

  /**
   * The release to go back to when the workers of `generation` crashed `crashTimes` (ms
   * timestamps, the latest last) like a bad release: often enough since their promotion and
   * within the window. Undefined when there is nothing to roll back to, or no reason.
   */
  rollbackTarget(generation: number, crashTimes: readonly number[], now: number): string | undefined {
    const { previous, at } = this.#promoted;
    if (this.#windowMs === 0 || previous === undefined || generation !== this.#promoted.generation || now - at > this.#windowMs)
      return undefined;
    return crashTimes.filter((t) => t >= at).length >= BAD_RELEASE_CRASHES ? previous : undefined;
  }

  /** Seconds since the promotion, for the log line that announces a rollback. */
  sincePromotion(now: number): number {
    return now - this.#promoted.at;
  }
}
