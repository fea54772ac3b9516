/**
 * The `canary` option, the old process's side (issue #28): the successor's answers through its
 * probation, read on its control socket at the probation's start and end, against this
 * process's own (canary-verdict.ts); a successor that fails is told to stop (`canary-failed`
 * on its control socket) and this process serves again.
 */
import type { AnswerCounts } from './answer-counts.js';
import { judgeCanary } from './canary-verdict.js';
import { controlSocketPath, sendControl } from './control.js';
import { UpgradeError } from './errors.js';
import type { Logger } from './logger.js';

/** How long one request on the successor's control socket may take (ms). */
const CONTROL_TIMEOUT_MS = 2_000;

/** Both processes' answers at one moment. */
export interface CanaryReading {
  successor: AnswerCounts;
  own: AnswerCounts;
  at: number;
}

export class SuccessorCanary {
  readonly #pid: number;
  readonly #socketPath: string;
  readonly #maxErrorPoints: number;
  readonly #ownAnswers: () => AnswerCounts;
  readonly #logger: Logger;

  constructor(pid: number, controlDir: string, maxErrorPoints: number, ownAnswers: () => AnswerCounts, logger: Logger) {
    this.#pid = pid;
    this.#socketPath = controlSocketPath(pid, controlDir);
    this.#maxErrorPoints = maxErrorPoints;
    this.#ownAnswers = ownAnswers;
    this.#logger = logger;
  }

  /** Both processes' answers now; undefined (logged) when the successor does not say. */
  async read(): Promise<CanaryReading | undefined> {
    try {
      const reply = await sendControl(this.#socketPath, { cmd: 'status' }, CONTROL_TIMEOUT_MS);
      const successor = readAnswers((reply['status'] as { answers?: unknown } | undefined)?.answers);
      if (successor !== undefined) return { successor, own: this.#ownAnswers(), at: Date.now() };
      this.#logger.warn({ successorPid: this.#pid }, 'canary: the successor did not report its answers: not judged');
    } catch (error) {
      this.#logger.warn({ successorPid: this.#pid, err: String(error) }, "canary: cannot read the successor's answers: not judged");
    }
    return undefined;
  }

  /** The verdict over the probation: the failure (reason `canary`, both rates in its message), or undefined. */
  async judge(start: CanaryReading): Promise<UpgradeError | undefined> {
    const end = await this.read();
    if (end === undefined) return undefined;
    const verdict = judgeCanary(
      { canaryStart: start.successor, canaryEnd: end.successor, baselineStart: start.own, baselineEnd: end.own },
      this.#maxErrorPoints,
      'this process',
    );
    const fields = { successorPid: this.#pid, canary: verdict.canary, baseline: verdict.baseline };
    if (verdict.ok) {
      this.#logger.info(fields, verdict.note ?? 'canary passed');
      return undefined;
    }
    const note = verdict.note ?? 'canary failed';
    return new UpgradeError('canary', `successor ${this.#pid}: ${note}`, { pid: this.#pid, durationMs: end.at - start.at });
  }

  /** Tells the successor it failed: it drains and exits 1 without speaking for the service. */
  async tellFailed(failure: UpgradeError): Promise<void> {
    try {
      await sendControl(this.#socketPath, { cmd: 'canary-failed', reason: failure.message }, CONTROL_TIMEOUT_MS);
    } catch (error) {
      // Not SIGTERM: a successor that serves would take it as the service's stop (STOPPING=1).
      this.#logger.error({ successorPid: this.#pid, err: String(error) }, 'canary: cannot tell the successor it failed: SIGKILL');
      try {
        process.kill(this.#pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
  }
}

/** Counts as a status reply carries them, checked: whole numbers, or undefined. */
function readAnswers(value: unknown): AnswerCounts | undefined {
  const v = value as Partial<Record<keyof AnswerCounts, unknown>> | null | undefined;
  const ok = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
  if (!ok(v?.requests) || !ok(v.errors5xx) || !ok(v.unanswered)) return undefined;
  return { requests: v.requests, errors5xx: v.errors5xx, unanswered: v.unanswered };
}
