/**
 * The control socket of a self-upgrading process (not under a supervisor, whose own socket
 * answers for it): `grace-restart status` gets its state, `grace-restart upgrade` starts an
 * upgrade and gets its outcome in the supervisor's shape, one row for this process.
 */
import type { AnswerCounts } from './answer-counts.js';
import { controlSocketPath, serveControl, type ControlServer, type UpgradeOutcome } from './control.js';
import { UpgradeError } from './errors.js';
import type { Upgraded } from './grace-life.js';
import type { Logger } from './logger.js';

/** What a self-upgrading process answers to `status`. */
export interface SelfStatus {
  mode: 'self';
  pid: number;
  state: string;
  generation: number;
  parentPid: number | undefined;
  uptimeMs: number;
  /** How this process answered since it started. */
  answers: AnswerCounts;
}

/** What the socket asks of the process. */
export interface SelfControlHandlers {
  status(): SelfStatus;
  /** Starts (or joins) an upgrade; resolves once the successor is ready, with its probation's verdict to await. */
  upgrade(): Promise<Upgraded>;
  /** The `probation` option: how long the verdict takes after the ready report. */
  probationMs: number;
  /** The predecessor judged this process's answers and found them worse than its own: stop (false: not a successor on probation). */
  canaryFailed(reason: string): boolean;
}

/** Opens `<dir>/<pid>.sock`; without it (an unusable directory) signals still work, so it is only logged. */
export async function openSelfControl(dir: string, handlers: SelfControlHandlers, logger: Logger): Promise<ControlServer | undefined> {
  try {
    return await serveControl(controlSocketPath(process.pid, dir), async (request) => {
      if (request.cmd === 'status') return { ok: true, status: handlers.status() };
      if (request.cmd === 'canary-failed')
        return handlers.canaryFailed(request.reason) ? { ok: true } : { ok: false, error: 'not a successor serving its probation' };
      if (request.cmd === 'upgrade-supervisor')
        return { ok: false, error: 'this process upgrades itself, it has no supervisor: upgrade it without --supervisor' };
      const outcome = await upgradeOutcome(handlers);
      return { ok: outcome.ok, outcome };
    });
  } catch (error) {
    logger.warn({ controlDir: dir, err: String(error) }, 'grace-restart: no control socket');
    return undefined;
  }
}

/**
 * The upgrade's outcome once the successor's probation is over: a successor that dies within
 * it is a failed upgrade (this process serves again), reported as such.
 */
async function upgradeOutcome(handlers: SelfControlHandlers): Promise<UpgradeOutcome> {
  const startedAt = Date.now();
  const oldPid = process.pid;
  try {
    const { result, verdict } = await handlers.upgrade();
    const failure = await verdict;
    if (failure !== undefined) throw failure;
    const replaced = [{ slot: 0, oldPid, newPid: result.pid, readyMs: result.durationMs }];
    const { generation, durationMs } = result;
    return { ok: true, trigger: 'control', generation, durationMs, replaced, probationMs: handlers.probationMs };
  } catch (error) {
    const reason = error instanceof UpgradeError ? ` (${error.reason})` : '';
    const aborted = error instanceof UpgradeError && error.reason === 'aborted';
    return {
      ok: false,
      trigger: 'control',
      generation: handlers.status().generation,
      durationMs: Date.now() - startedAt,
      replaced: [],
      error: `${(error as Error).message}${reason}`,
      ...(aborted ? { aborted } : {}),
    };
  }
}
