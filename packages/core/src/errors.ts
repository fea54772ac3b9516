/** Machine-readable codes carried by every error grace-restart throws or emits. */
export type GraceErrorCode =
  | 'GRACE_ERR_OPTIONS'
  | 'GRACE_ERR_ENV'
  | 'GRACE_ERR_LISTEN'
  | 'GRACE_ERR_NOT_READY'
  | 'GRACE_ERR_CLOSING'
  | 'GRACE_ERR_NOT_SUPPORTED'
  | 'GRACE_ERR_UPGRADE_FAILED'
  | 'GRACE_ERR_DUPLICATE';

/** Base class of grace-restart errors: check `err.code`, never the message. */
export class GraceError extends Error {
  readonly code: GraceErrorCode;

  constructor(code: GraceErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'GraceError';
    this.code = code;
  }
}

/** Why an upgrade attempt did not produce a serving successor (`unhealthy`: it failed its `healthCheck`). */
export type UpgradeFailureReason = 'spawn' | 'exited' | 'timeout' | 'aborted' | 'unhealthy' | 'canary';

/**
 * An upgrade that was rolled back: the old process keeps serving, the successor
 * has been stopped and every fd of the attempt released.
 */
export class UpgradeError extends GraceError {
  readonly reason: UpgradeFailureReason;
  /** pid of the successor, when it was spawned. */
  readonly pid: number | undefined;
  /** Exit code of the successor when `reason` is `exited`. */
  readonly exitCode: number | null;
  /** Signal that ended the successor when `reason` is `exited`. */
  readonly signal: NodeJS.Signals | null;
  /** Time from the trigger to the failure. */
  readonly durationMs: number;

  constructor(
    reason: UpgradeFailureReason,
    message: string,
    details: { pid?: number; exitCode?: number | null; signal?: NodeJS.Signals | null; durationMs: number; cause?: unknown },
  ) {
    super('GRACE_ERR_UPGRADE_FAILED', message, { cause: details.cause });
    this.name = 'UpgradeError';
    this.reason = reason;
    this.pid = details.pid;
    this.exitCode = details.exitCode ?? null;
    this.signal = details.signal ?? null;
    this.durationMs = details.durationMs;
  }
}
