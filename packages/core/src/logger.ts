/**
 * The subset of a pino logger grace-restart calls: `logger.info({ ...fields }, 'message')`.
 * A pino instance, Fastify's `fastify.log`, or any object with these four methods fits.
 */
export interface Logger {
  error(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
  /** pino's `flush(cb)`: called before the process exits, so an async transport loses no line. */
  flush?(callback?: (error?: Error) => void): void;
}

const LEVELS = { debug: 20, info: 30, warn: 40, error: 50 } as const;
type LevelName = keyof typeof LEVELS;

/**
 * A dependency-free logger writing one JSON line per event to stderr, in pino's shape.
 * `level` defaults to `error`: quiet in normal operation, loud when something failed.
 */
export function createJsonLogger(level: LevelName | 'silent' = 'error', stream: NodeJS.WritableStream = process.stderr): Logger {
  const threshold = level === 'silent' ? Infinity : LEVELS[level];
  const write =
    (name: LevelName) =>
    (obj: object, msg?: string): void => {
      if (LEVELS[name] < threshold) return;
      // The base fields come last: a caller's `pid` field must not disguise which process logged.
      const line = { ...obj, level: LEVELS[name], time: Date.now(), pid: process.pid, name: 'grace-restart', msg };
      stream.write(`${JSON.stringify(line)}\n`);
    };
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') };
}

/**
 * The logger of an app that gives none: warnings and errors, what an operator must act on (a
 * drain deadline reached, a hook that timed out, a server grace-restart never saw).
 * GRACE_RESTART_LOG_LEVEL turns it up or down without a code change.
 */
export function defaultLogger(env: NodeJS.ProcessEnv = process.env): Logger {
  const wanted = env['GRACE_RESTART_LOG_LEVEL'];
  if (wanted === undefined || wanted === '') return createJsonLogger('warn');
  if (wanted === 'silent' || wanted in LEVELS) return createJsonLogger(wanted as LevelName | 'silent');
  const logger = createJsonLogger('warn');
  logger.error({ value: wanted }, 'ignoring invalid GRACE_RESTART_LOG_LEVEL: expected debug, info, warn, error or silent');
  return logger;
}

/**
 * Flushes `logger` if it offers `flush()` (pino does), resolving when it says it is done or
 * after `timeoutMs`, whichever comes first: an exit must not hang on a stuck transport.
 */
export function flushLogger(logger: Logger, timeoutMs = 1_000): Promise<void> {
  const { flush } = logger;
  if (typeof flush !== 'function') return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    const done = (): void => {
      clearTimeout(timer);
      resolve();
    };
    try {
      // pino < 9 takes no callback: its flush is synchronous.
      if (flush.length === 0) {
        flush.call(logger);
        done();
      } else flush.call(logger, done);
    } catch {
      done();
    }
  });
}
