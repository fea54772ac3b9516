/**
 * The canary of a rolling upgrade (`--canary-window`, issue #28): the first new worker serves
 * its slot's share of the traffic (the kernel spreads new connections over the workers, and the
 * worker it replaced moved its idle ones to it) for a window, while the old generation serves
 * the rest. Both count their answers (answer-counts.ts, reported every second); the canary is
 * promoted only if its error rate is not worse than the old generation's by more than the limit.
 * An error is a 5xx answer or a request left unanswered (a hang, a reset) at the window's end.
 */
import { type AnswerCounts, abortableDelay, type CanaryVerdict, judgeCanary, NO_ANSWERS } from '@grace-restart/core/internal';

export type { CanaryVerdict };

/** `--canary-window` and `--canary-max-errors`. */
export interface CanarySettings {
  /** How long the canary serves before the verdict (ms). */
  windowMs: number;
  /** How many percentage points worse than the old generation its error rate may be. */
  maxErrorPoints: number;
}

/** The workers report every second: the verdict waits one report more, so the window's last second counts. */
const REPORT_LAG_MS = 1_100;

/** What the judge reads: the canary's counts (undefined once it is gone) and the old generation's. */
export interface CanarySubject {
  canary(): AnswerCounts | undefined;
  baseline(): AnswerCounts | undefined;
}

/**
 * Waits out the window (or `signal`), then judges: the canary's error rate over the window
 * against the old generation's over the same window, or over its whole life when it served
 * nothing meanwhile (`--workers 1`: the canary took all the traffic).
 */
export async function judgeCanaryWindow(subject: CanarySubject, settings: CanarySettings, signal: AbortSignal): Promise<CanaryVerdict> {
  const canaryStart = subject.canary() ?? NO_ANSWERS;
  const baselineStart = subject.baseline() ?? NO_ANSWERS;
  await abortableDelay(settings.windowMs + REPORT_LAG_MS, signal);
  const canaryEnd = subject.canary();
  const baselineEnd = subject.baseline() ?? baselineStart;
  const verdict = judgeCanary(
    { canaryStart, canaryEnd: canaryEnd ?? canaryStart, baselineStart, baselineEnd },
    settings.maxErrorPoints,
    'the old generation',
  );
  if (signal.aborted) return { ...verdict, ok: false, note: 'aborted: the supervisor is stopping' };
  if (canaryEnd === undefined) return { ...verdict, ok: false, note: 'the canary worker exited during its window' };
  return verdict;
}
