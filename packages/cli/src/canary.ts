/**
 * The canary of a rolling upgrade (`--canary-window`, issue #28): the first new worker serves
 * its slot's share of the traffic (the kernel spreads new connections over the workers, and the
 * worker it replaced moved its idle ones to it) for a window, while the old generation serves
 * the rest. Both count their answers (answer-counts.ts, reported every second); the canary is
 * promoted only if its error rate is not worse than the old generation's by more than the limit.
 * An error is a 5xx answer or a request left unanswered (a hang, a reset) at the window's end.
 */
import { type AnswerCounts, abortableDelay, NO_ANSWERS } from '@grace-restart/core/internal';

/** `--canary-window` and `--canary-max-errors`. */
export interface CanarySettings {
  /** How long the canary serves before the verdict (ms). */
  windowMs: number;
  /** How many percentage points worse than the old generation its error rate may be. */
  maxErrorPoints: number;
}

/** Fewer answers than this in the window, and the canary is promoted for want of evidence (said in the log). */
export const CANARY_MIN_REQUESTS = 20;
/** The workers report every second: the verdict waits one report more, so the window's last second counts. */
const REPORT_LAG_MS = 1_100;

/** Errors and answers over a stretch of time. */
export interface ErrorRate {
  requests: number;
  errors: number;
  /** errors / requests, in percent; 0 without requests. */
  percent: number;
}

export interface CanaryVerdict {
  ok: boolean;
  canary: ErrorRate;
  baseline: ErrorRate;
  /** Why it failed, or why it passed without evidence. */
  note: string | undefined;
}

/** What the judge reads: the canary's counts (undefined once it is gone) and the old generation's. */
export interface CanarySubject {
  canary(): AnswerCounts | undefined;
  baseline(): AnswerCounts | undefined;
}

/** The error rate between two readings; requests still unanswered at the end count as errors. */
export function errorRate(before: AnswerCounts, after: AnswerCounts): ErrorRate {
  const unanswered = Math.max(0, after.unanswered - before.unanswered);
  const requests = after.requests - before.requests + unanswered;
  const errors = after.errors5xx - before.errors5xx + unanswered;
  return { requests, errors, percent: requests === 0 ? 0 : (100 * errors) / requests };
}

/**
 * Waits out the window (or `signal`), then judges: the canary's error rate over the window
 * against the old generation's over the same window, or over its whole life when it served
 * nothing meanwhile (`--workers 1`: the canary took all the traffic).
 */
export async function judgeCanary(subject: CanarySubject, settings: CanarySettings, signal: AbortSignal): Promise<CanaryVerdict> {
  const canaryStart = subject.canary() ?? NO_ANSWERS;
  const baselineStart = subject.baseline() ?? NO_ANSWERS;
  await abortableDelay(settings.windowMs + REPORT_LAG_MS, signal);
  const canaryEnd = subject.canary();
  const baselineEnd = subject.baseline() ?? baselineStart;
  const windowed = errorRate(baselineStart, baselineEnd);
  const baseline = windowed.requests >= CANARY_MIN_REQUESTS ? windowed : errorRate(NO_ANSWERS, baselineEnd);
  if (signal.aborted)
    return { ok: false, canary: errorRate(NO_ANSWERS, NO_ANSWERS), baseline, note: 'aborted: the supervisor is stopping' };
  if (canaryEnd === undefined)
    return { ok: false, canary: errorRate(NO_ANSWERS, NO_ANSWERS), baseline, note: 'the canary worker exited during its window' };
  const canary = errorRate(canaryStart, canaryEnd);
  if (canary.requests < CANARY_MIN_REQUESTS) {
    return { ok: true, canary, baseline, note: `the canary answered ${canary.requests} requests, too few to judge: promoted` };
  }
  const worse = canary.percent - baseline.percent;
  if (worse > settings.maxErrorPoints) {
    const note = `canary failed: ${fmt(canary)} errors against ${fmt(baseline)} for the old generation (limit: ${settings.maxErrorPoints} points worse)`;
    return { ok: false, canary, baseline, note };
  }
  return { ok: true, canary, baseline, note: undefined };
}

function fmt(rate: ErrorRate): string {
  return `${rate.percent.toFixed(1)}% (${rate.errors} of ${rate.requests})`;
}
