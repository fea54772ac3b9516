/**
 * A rolling upgrade of the supervisor's workers: for each slot, a new worker, its ready report,
 * then the old one retired (its connections move). With a canary (`--canary-window`) the first
 * new worker is judged by its answers before the other slots are replaced (canary.ts); a
 * rollback after promotion runs the same path with the previous release's directory. The
 * supervisor's lifecycle decides when one runs; this file is what it does.
 */
import type { Logger } from '@grace-restart/core';
import { NO_ANSWERS, type UpgradeOutcome } from '@grace-restart/core/internal';
import { type CanarySettings, type CanaryVerdict, judgeCanaryWindow } from './canary.js';
import type { Releases } from './releases.js';
import type { SupervisorService } from './supervisor-service.js';
import type { WorkerPool, WorkerRecord } from './workers.js';

/** What a rolling upgrade works with: the supervisor's parts, and the generation serving when it starts. */
export interface RollingUpgradeContext {
  readonly workers: WorkerPool;
  readonly releases: Releases;
  readonly slots: number;
  readonly canary: CanarySettings | undefined;
  readonly logger: Logger;
  readonly service: SupervisorService;
  readonly generation: number;
}

/**
 * Replaces every slot's worker with one of the next generation, started from the start
 * directory or, for a rollback, from `release`. Resolves with the outcome (never rejects): a
 * new worker that fails, or a canary that fails, leaves the old workers serving.
 */
export async function rollingUpgrade(
  c: RollingUpgradeContext,
  trigger: string,
  signal: AbortSignal,
  release?: string,
): Promise<UpgradeOutcome> {
  const startedAt = Date.now();
  const generation = c.generation + 1;
  const target = release ?? c.releases.resolveTarget();
  if (release === undefined) c.releases.checkUpgrade(target);
  const replaced: UpgradeOutcome['replaced'] = [];
  const failed = (error: string): UpgradeOutcome => {
    const outcome = failedOutcome(trigger, c.generation, startedAt, replaced, error);
    if (signal.aborted) outcome.aborted = true;
    c.logger.error({ ...outcome }, `upgrade failed, old workers keep serving: ${error}`);
    return outcome;
  };
  c.logger.info({ trigger, generation }, 'upgrade started');
  c.service.upgradeStarted(generation);
  for (let slot = 0; slot < c.slots; slot++) {
    const slotStart = Date.now();
    let fresh: WorkerRecord;
    try {
      fresh = await c.workers.spawn(generation, slot, signal, release);
    } catch (error) {
      return failed((error as Error).message);
    }
    // Every other worker of the slot goes, including one a crash restart brought meanwhile.
    const old = c.workers.inSlot(slot).filter((w) => w !== fresh);
    replaced.push({ slot, oldPid: old[0]?.pid, newPid: fresh.pid, readyMs: Date.now() - slotStart });
    for (const w of old) c.workers.retire(w, fresh);
    if (slot === 0 && release === undefined && c.canary !== undefined) {
      const verdict = await judge(c, fresh, c.canary, signal);
      if (!verdict.ok) {
        await takeSlotBack(c, signal);
        return failed(verdict.note ?? 'canary failed');
      }
    }
  }
  c.releases.promote(target, generation, release !== undefined);
  const outcome: UpgradeOutcome = { ok: true, trigger, generation, durationMs: Date.now() - startedAt, replaced };
  c.logger.info({ ...outcome }, 'upgrade done');
  return outcome;
}

/** The outcome of an upgrade that did not happen: `generation` serves on. */
export function failedOutcome(
  trigger: string,
  generation: number,
  startedAt: number,
  replaced: UpgradeOutcome['replaced'],
  error: string,
): UpgradeOutcome {
  return { ok: false, trigger, generation, durationMs: Date.now() - startedAt, replaced, error };
}

/** The canary serves its slot through the window; its answers against the old generation's decide. */
async function judge(
  c: RollingUpgradeContext,
  canary: WorkerRecord,
  settings: CanarySettings,
  signal: AbortSignal,
): Promise<CanaryVerdict> {
  c.logger.info(
    { workerPid: canary.pid, windowMs: settings.windowMs },
    `canary: worker ${canary.pid} serves slot 0 before the others are replaced`,
  );
  const verdict = await judgeCanaryWindow(
    {
      canary: () => (c.workers.all().includes(canary) ? (canary.answers ?? NO_ANSWERS) : undefined),
      baseline: () => c.workers.answersByGeneration().find((g) => g.generation === c.generation),
    },
    settings,
    signal,
  );
  const fields = { workerPid: canary.pid, canary: verdict.canary, baseline: verdict.baseline };
  if (verdict.ok) c.logger.info(fields, verdict.note ?? 'canary passed: replacing the other workers');
  else c.logger.error(fields, verdict.note ?? 'canary failed');
  return verdict;
}

/** The canary failed: a worker of the old release takes slot 0 back, and the canary's connections move to it. */
async function takeSlotBack(c: RollingUpgradeContext, signal: AbortSignal): Promise<void> {
  const back = await c.workers.spawn(c.generation, 0, signal, c.releases.current).catch((error: unknown) => {
    c.logger.error({}, `could not start a worker of the old release for slot 0, the canary serves on: ${(error as Error).message}`);
    return undefined;
  });
  if (back !== undefined) for (const w of c.workers.inSlot(0)) if (w !== back) c.workers.retire(w, back);
}
