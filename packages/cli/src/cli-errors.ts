/**
 * Errors of the `grace-restart` command line, coded like core's GraceError: scripts check
 * `code` (printed in `--json` output), people read the message (on stderr, unchanged), and the
 * exit code follows from the code, so one table says both.
 */

/** What went wrong, and the exit code it ends the command with. */
export const CLI_ERROR_EXIT_CODES = {
  /** A bad command line: unknown command or option, a malformed value, a missing app. */
  GRACE_ERR_USAGE: 2,
  /** No --pid or --pid-file, and not exactly one grace-restart process of this user answers. */
  GRACE_ERR_NO_TARGET: 2,
  /** The PID file is missing, unreadable or holds no pid. */
  GRACE_ERR_PID_FILE: 1,
  /** No process has the pid given or read (a stale PID file, most often). */
  GRACE_ERR_NO_PROCESS: 1,
  /** The process with that pid runs as another user, whom this one may not signal. */
  GRACE_ERR_PERMISSION: 1,
  /** The process with that pid is not a grace-restart process (or not the kind the command needs). */
  GRACE_ERR_NOT_GRACE: 1,
} as const;

/** Machine-readable codes of the command line's own errors. */
export type CliErrorCode = keyof typeof CLI_ERROR_EXIT_CODES;

/** An error the command line reports in one line, without a stack trace. */
export class CliError extends Error {
  readonly code: CliErrorCode;

  constructor(code: CliErrorCode, message: string) {
    super(message);
    this.name = 'CliError';
    this.code = code;
  }

  /** The exit code of a command that ends with this error. */
  get exitCode(): number {
    return CLI_ERROR_EXIT_CODES[this.code];
  }
}

/** `new CliError('GRACE_ERR_USAGE', message)`: the most common one, named for call sites. */
export function usageError(message: string): CliError {
  return new CliError('GRACE_ERR_USAGE', message);
}

/**
 * Reports `error` as the command's last words and returns its exit code: the message on stderr
 * (with a pointer to --help for a bad command line), and with `--json` also a JSON line on
 * stdout carrying the code. An error of someone else's (a control socket that timed out, say)
 * exits 1 with its message, and its own `code` when it has one.
 */
export function reportFailure(error: unknown, json: boolean): number {
  const message = error instanceof Error ? error.message : String(error);
  const foreignCode = (error as { code?: unknown } | undefined)?.code;
  // util.parseArgs' own errors are a bad command line too.
  const usage =
    (error instanceof CliError && error.code === 'GRACE_ERR_USAGE') ||
    (typeof foreignCode === 'string' && foreignCode.startsWith('ERR_PARSE_ARGS'));
  const exitCode = error instanceof CliError ? error.exitCode : usage ? 2 : 1;
  process.stderr.write(`grace-restart: ${message}${usage ? '\nSee grace-restart --help' : ''}\n`);
  if (json) {
    const code =
      error instanceof CliError ? error.code : usage ? 'GRACE_ERR_USAGE' : typeof foreignCode === 'string' ? foreignCode : undefined;
    process.stdout.write(`${JSON.stringify({ ok: false, code, error: message })}\n`);
  }
  return exitCode;
}
