/** Reading the command line: flags through util.parseArgs, with messages for people. */
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { OPTION_DEFAULTS } from '@grace-restart/core/internal';
import { usageError } from './cli-errors.js';
import { CRASH_LOOP_COUNT, ROLLBACK_WINDOW_MS } from './supervisor.js';

/**
 * Every flag default of the command line, read by the flags and by --help alike. Flags with a
 * core option of the same meaning take core's default (one table, core's OPTION_DEFAULTS).
 */
export const FLAG_DEFAULTS = {
  workers: 1,
  readyTimeout: OPTION_DEFAULTS.readyTimeout,
  drainTimeout: OPTION_DEFAULTS.drainTimeout,
  killTimeout: OPTION_DEFAULTS.killTimeout,
  shutdownDelay: OPTION_DEFAULTS.shutdownDelay,
  watchInterval: 1_000,
  maxCrashes: CRASH_LOOP_COUNT,
  rollbackWindow: ROLLBACK_WINDOW_MS,
  /** Percentage points of errors a canary may have above the old workers'. */
  canaryMaxErrors: 1,
  /** How long `grace-restart upgrade` waits for the outcome. */
  upgradeTimeout: 60_000,
} as const;

/** setTimeout's limit: a larger duration would fire at once. */
export const MAX_DURATION = 2 ** 31 - 1;

/** `value` as a whole number from 0 to `max`, `fallback` when the flag was not given. */
export function integer(value: string | undefined, flag: string, fallback: number, max = MAX_DURATION): number {
  if (value === undefined) return fallback;
  if (!/^[0-9]+$/.test(value) || Number(value) > max) throw usageError(`${flag} must be a whole number from 0 to ${max}, got "${value}"`);
  return Number(value);
}

/**
 * util.parseArgs with messages for people: an unknown or misspelled flag is named with the
 * command's own flags, instead of parseArgs' raw text.
 */
export function parseFlags<O extends NonNullable<ParseArgsConfig['options']>>(
  command: string,
  args: string[],
  options: O,
  allowPositionals = false,
): ReturnType<typeof parseArgs<{ args: string[]; options: O; allowPositionals: boolean; strict: true }>> {
  try {
    return parseArgs({ args, options, allowPositionals, strict: true });
  } catch (error) {
    const message = (error as Error).message;
    const flag = /'([^']+)'/.exec(message)?.[1];
    const known = Object.keys(options)
      .map((name) => `--${name}`)
      .join(', ');
    if ((error as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      throw usageError(
        `unknown option ${flag ?? ''} for "${command}"; its options are ${known}${command === 'run' ? ', then -- and the command' : ''}`,
      );
    }
    if ((error as { code?: string }).code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      throw usageError(`option ${flag ?? ''} of "${command}" needs a value`);
    }
    if ((error as { code?: string }).code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
      throw usageError(`unexpected argument ${flag ?? ''} for "${command}"`);
    }
    throw usageError(message);
  }
}
