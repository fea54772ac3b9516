/**
 * Boot priority under `grace-restart run` (issue #29; core's boot-priority.ts does the work):
 * which nice a worker boots at, and the supervisor's own return when the supervisor it replaces
 * started it niced. Read once, at the start; logged once.
 */
import type { Logger } from '@grace-restart/core';
import {
  BOOT_NICE_ENV,
  type BootPriority,
  bootNice,
  describeBootPriority,
  planBootPriority,
  processRuns,
  returnFromBootPriority,
} from '@grace-restart/core/internal';
import { usageError } from './cli-errors.js';

/** GRACE_RESTART_BOOT_NICE, validated as a usage error (exit 2) before anything starts. */
export function bootNiceFromEnv(env: NodeJS.ProcessEnv): number {
  try {
    return bootNice(undefined, env);
  } catch {
    throw usageError(`${BOOT_NICE_ENV} must be a whole number from 0 to 19 (0: off), got ${JSON.stringify(env[BOOT_NICE_ENV])}`);
  }
}

/**
 * The plan for workers started while others serve. A supervisor started niced by the one it
 * replaces returns first: its own boot is over, and a plan made at nice 10 would start its
 * workers at 19 and return them to 10, leaving the service niced.
 */
export function planWorkerBootPriority(nice: number, logger: Logger): BootPriority {
  const returned = returnFromBootPriority();
  if (returned?.ok === true) logger.info({}, `boot priority: ${returned.text} before starting workers`);
  // A supervisor left niced serves its workers' relays and signals late: as core logs a worker so left, at error.
  if (returned?.ok === false) logger.error({}, `boot priority: ${returned.text}`);
  const plan = planBootPriority(nice);
  logger.info({ bootPriority: describeBootPriority(plan) }, 'boot priority of the workers started while others serve');
  return plan;
}

/** Whether the supervisor this one replaces (its pid from the handoff) still runs, so its workers serve. */
export function predecessorServes(parentPid: number | undefined): () => boolean {
  return parentPid === undefined ? () => false : () => processRuns(parentPid);
}
