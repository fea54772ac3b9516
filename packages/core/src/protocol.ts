/**
 * Names shared by the processes of one service: the environment variables a parent sets for
 * its successor or worker, the key of supervised workers' IPC messages, and the one pattern
 * a pid (or another positive count) must match wherever one is read from outside.
 */

/** Environment variables of the handoff and of supervision (LISTEN_* are systemd's: listen-fds.ts). */
export const ENV = {
  /** fd of the successor's readiness channel. */
  readyFd: 'GRACE_RESTART_READY_FD',
  /** Generation of the process being started. */
  generation: 'GRACE_RESTART_GENERATION',
  /** pid of the process that started this successor. */
  parentPid: 'GRACE_RESTART_PARENT_PID',
  /** pid of the `grace-restart run` supervisor of this worker. */
  supervisor: 'GRACE_RESTART_SUPERVISOR',
  /** Set on a child started niced (boot-priority.ts): the nice value it returns to at its ready report. */
  niceAfterBoot: 'GRACE_RESTART_NICE_AFTER_BOOT',
} as const;

/**
 * How long a new supervisor must have served after its ready report before the one it
 * replaces lets go (`grace-restart upgrade --supervisor`): a supervisor that crashes right
 * after its ready report then finds the old one still serving. A self-upgrading app's
 * successor is watched for the `probation` option instead (10 s by default).
 */
export const PROBATION_MS = 1_000;

/** Supervised workers' IPC messages are `{ [WORKER_MESSAGE_KEY]: WorkerMessage }`. */
export const WORKER_MESSAGE_KEY = 'grace-restart';

/** A positive decimal integer without sign, spaces or leading zeros. */
const POSITIVE_DECIMAL = /^[1-9][0-9]*$/;

/** `text` as a positive safe integer (a pid, a generation), or undefined when it is not one. */
export function parsePositiveInteger(text: string): number | undefined {
  if (!POSITIVE_DECIMAL.test(text)) return undefined;
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : undefined;
}
