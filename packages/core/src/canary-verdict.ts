/**
 * How a canary is judged (issue #28), for a self-upgrading app (its successor through the
 * probation, handover.ts) and for `grace-restart run` (the first new worker, the CLI's
 * canary.ts): its error rate over its window against the old version's, promoted only if it is
 * not worse by more than a limit. An error is a 5xx answer or a request left unanswered (a hang,
 * a reset) at the window's end.
 */
import { type AnswerCounts, NO_ANSWERS } from './answer-counts.js';

/** Fewer answers than this in the window, and the canary is promoted for want of evidence (said in the log). */
export const CANARY_MIN_REQUESTS = 20;

/** Errors and answers over a stretch of time. */
export interface ErrorRate {
  requests: number;
  errors: number;
  /** errors / requests, in percent; 0 without requests. */
  percent: number;
}

/** What the judge decided, with both rates. */
export interface CanaryVerdict {
  ok: boolean;
  canary: ErrorRate;
  baseline: ErrorRate;
  /** Why it failed, or why it passed without evidence. */
  note: string | undefined;
}

/** Readings at the window's start and end: the canary's, and the old version's. */
export interface CanaryReadings {
  canaryStart: AnswerCounts;
  canaryEnd: AnswerCounts;
  baselineStart: AnswerCounts;
  baselineEnd: AnswerCounts;
}

/** The error rate between two readings; requests still unanswered at the end count as errors. */
export function errorRate(before: AnswerCounts, after: AnswerCounts): ErrorRate {
  const unanswered = Math.max(0, after.unanswered - before.unanswered);
  const requests = after.requests - before.requests + unanswered;
  const errors = after.errors5xx - before.errors5xx + unanswered;
  return { requests, errors, percent: requests === 0 ? 0 : (100 * errors) / requests };
}

/**
 * The verdict: the canary's rate over the window against the old version's over the same
 * window, or over its whole life when it served too little meanwhile (it handed all its traffic
 * to the canary). `oldName` names the old version in the note.
 */
export function judgeCanary(r: CanaryReadings, maxErrorPoints: number, oldName: string): CanaryVerdict {
  const windowed = errorRate(r.baselineStart, r.baselineEnd);
  const baseline = windowed.requests >= CANARY_MIN_REQUESTS ? windowed : errorRate(NO_ANSWERS, r.baselineEnd);
  const canary = errorRate(r.canaryStart, r.canaryEnd);
  if (canary.requests < CANARY_MIN_REQUESTS) {
    return { ok: true, canary, baseline, note: `the canary answered ${canary.requests} requests, too few to judge: promoted` };
  }
  if (canary.percent - baseline.percent > maxErrorPoints) {
    const note = `canary failed: ${formatRate(canary)} errors against ${formatRate(baseline)} for ${oldName} (limit: ${maxErrorPoints} points worse)`;
    return { ok: false, canary, baseline, note };
  }
  return { ok: true, canary, baseline, note: undefined };
}

/** `10.0% (5 of 50)`. */
export function formatRate(rate: ErrorRate): string {
  return `${rate.percent.toFixed(1)}% (${rate.errors} of ${rate.requests})`;
}
