/** Options of {@link createGrace}, their defaults and their validation. */
import { constants } from 'node:os';
import { GraceError } from './errors.js';
import { defaultControlDirectory } from './control.js';
import type { HealthCheck } from './health-check.js';
import { defaultLogger, type Logger } from './logger.js';

/** Information given to `onDrain` hooks. */
export interface DrainInfo {
  /** `upgrade`: a successor took over; `stop`: the service is stopping. */
  reason: 'upgrade' | 'stop';
}

/** Options of {@link createGrace}. Every field is optional. */
export interface GraceOptions {
  /** pino-compatible logger. Default: JSON lines on stderr, warnings and errors (`GRACE_RESTART_LOG_LEVEL` sets the level). */
  logger?: Logger;
  /** Signal that triggers an upgrade, or `false` to disable. Default `'SIGUSR2'`. */
  upgradeSignal?: NodeJS.Signals | false;
  /** Signals that stop gracefully (a second one exits at once), or `false`. Default `['SIGTERM', 'SIGINT']`. */
  stopSignals?: readonly NodeJS.Signals[] | false;
  /** Signal bound to `onReload`, or `false`. Default `'SIGHUP'` (installed only when `onReload` is given). */
  reloadSignal?: NodeJS.Signals | false;
  /** How long a successor may take to report ready before the upgrade is rolled back (ms). Default 30000. */
  readyTimeout?: number;
  /** Hard limit on a drain: connections still open then are destroyed (ms). Default 30000. */
  drainTimeout?: number;
  /**
   * During a drain, a keep-alive socket is closed only after staying idle this long (ms). Default 3000.
   * Longer than the usual cadence of keep-alive clients, so nearly every socket carries one more
   * request (answered with `Connection: close`) instead of being closed under a request on the wire;
   * shorter than Node's `keepAliveTimeout` (5 s), so it adds no race Node does not already have.
   */
  idleGrace?: number;
  /** A failed successor gets SIGTERM, then SIGKILL after this long (ms). Default 5000. */
  killTimeout?: number;
  /**
   * After a successor's ready report, how long this process keeps its listening sockets and
   * watches it (ms). The connections it accepts meanwhile move to the successor (most at once;
   * those waiting their turn at the move's pace are served here);
   * if the successor exits within this time, this process serves again with no connection
   * refused: a release that crashes in its first seconds of real traffic is rolled back.
   * Default 10000, or what `GRACE_RESTART_PROBATION` says when it is set; an explicit option
   * wins. It delays this process's exit (and systemd's `MAINPID` handover) by as much.
   */
  probation?: number;
  /**
   * How much lower the CPU priority of a successor is while it boots (nice value steps, 0 to
   * 19; 0: not lowered). It returns to this process's priority at its ready report, so the boot
   * takes CPU from idle time before it takes it from the process that serves. Applied only where
   * the successor can return by itself (CAP_SYS_NICE, or an RLIMIT_NICE reaching this process's
   * nice value: systemd `LimitNICE=+0`, Docker `--ulimit nice=20`); the upgrade's log line says
   * which. Default 10, or what `GRACE_RESTART_BOOT_NICE` says; an explicit option wins.
   */
  bootNice?: number;
  /**
   * A slow start of the connection move (ms; 0: none): for this long after the successor's
   * ready report, at most the elapsed share of this process's keep-alive connections has moved
   * to it, and this warm process serves the others meanwhile (HAProxy's `slowstart`). A cold
   * successor given every connection at once answers slowly until its JIT warms up; over 3 s it
   * takes the load as it warms (Express, Fastify, Koa and `node:http` all answered faster over
   * 3 s than over 1 s, docs/benchmarks.md). It delays this process's exit only where it outlasts
   * the probation. Default 3000, or what `GRACE_RESTART_SLOW_START` says; an explicit option wins.
   */
  slowStart?: number;
  /**
   * Judges the successor by its answers through its probation: at the probation's end its error
   * rate (5xx answers, and requests left unanswered) is compared with this process's, over the
   * probation or, when this process served too little meanwhile, over its life. Worse by more
   * than `maxErrorPoints` percentage points (default 1), and the successor is stopped, its
   * clients come back here, and the upgrade fails with both rates (`UpgradeError` reason
   * `canary`). The successor serves what this process moves to it through the probation, so a
   * bad release fails the requests it answers badly until then. Fewer than 20 answers are too
   * few to judge: promoted, logged. Needs the control socket (`controlDir`). Default off; under
   * `grace-restart run` the supervisor's `--canary-window` judges instead.
   */
  canary?: boolean | { maxErrorPoints?: number };
  /**
   * Must pass before the process reports ready: a path (`'/healthz'`, requested in process from
   * the app's own HTTP server, any 2xx passes) or a function that throws or rejects when the
   * process cannot serve. A successor that fails it is stopped and the upgrade rolled back with
   * the reason (`UpgradeError` reason `unhealthy`); a first start that fails it stops, exit code 1.
   */
  healthCheck?: HealthCheck;
  /** How long `healthCheck` may take before it counts as failed (ms). Default 5000. */
  healthCheckTimeout?: number;
  /**
   * Deadline of each `onDrain`/`onShutdown` hook (ms). Default 10000. A hook still running then
   * is logged and left behind, so a hung `pool.end()` cannot keep an old process alive forever.
   */
  hookTimeout?: number;
  /**
   * Directory of the private control socket `<pid>.sock` that `grace-restart upgrade` and
   * `status` talk to, or `false` for none. Default `$TMPDIR/grace-restart-<uid>` (mode 0700).
   * Not used under `grace-restart run`, whose supervisor has its own.
   */
  controlDir?: string | false;
  /** On a stop signal, keep serving this long with `isDraining` already true, so load balancers deregister first (ms). Default 0. */
  shutdownDelay?: number;
  /** Report ready as soon as every inherited listener listens again. Default `true`; with `false` call `ready()`. */
  autoReady?: boolean;
  /** Path of a PID file, written by the process that currently serves. */
  pidFile?: string;
  /** Exit the process (code 0) after a stop signal or a completed handoff. Default `true`. */
  exit?: boolean;
  /**
   * After an upgrade, move idle plain-HTTP/1 keep-alive connections to the successor over an
   * IPC channel instead of closing them, so clients keep their TCP connections. Default `true`
   * where this Node has the internals it needs (else a warning and the drain), or what the
   * environment variable `GRACE_RESTART_MOVE_CONNECTIONS` (`1`/`0`) says when it is set; an
   * explicit option wins over both. TLS, HTTP/2 and upgraded connections always drain.
   * `false`: the successor gets no IPC channel and every connection drains.
   */
  moveConnections?: boolean;
  /** Called when a drain starts: close WebSockets (code 1001) and other long-lived streams here. */
  onDrain?: (info: DrainInfo) => void | Promise<void>;
  /** Called after the drain, before the process exits: close DB pools here. */
  onShutdown?: (info: DrainInfo) => void | Promise<void>;
  /** Called on `reloadSignal`: reload configuration without a restart. */
  onReload?: () => void | Promise<void>;
}

/**
 * Every default that is a value, in one place: {@link resolveOptions} applies them, and
 * `grace-restart run` shows them in its --help and uses them for its flags of the same meaning
 * (through `@grace-restart/core/internal`). Durations are in ms.
 */
export const OPTION_DEFAULTS = {
  upgradeSignal: 'SIGUSR2',
  stopSignals: ['SIGTERM', 'SIGINT'],
  reloadSignal: 'SIGHUP',
  readyTimeout: 30_000,
  drainTimeout: 30_000,
  idleGrace: 3_000,
  killTimeout: 5_000,
  probation: 10_000,
  bootNice: 10,
  slowStart: 3_000,
  healthCheckTimeout: 5_000,
  hookTimeout: 10_000,
  shutdownDelay: 0,
  autoReady: true,
  exit: true,
} as const satisfies Partial<Record<keyof GraceOptions, unknown>>;

/** Options with every default applied: {@link GraceOptions}' names, none of them optional. */
export type ResolvedOptions = Required<
  Omit<GraceOptions, 'stopSignals' | 'pidFile' | 'onDrain' | 'onShutdown' | 'onReload' | 'healthCheck' | 'canary'>
> & {
  canary: { maxErrorPoints: number } | undefined;
  healthCheck: HealthCheck | undefined;
  stopSignals: readonly NodeJS.Signals[];
  pidFile: string | undefined;
  onDrain: GraceOptions['onDrain'] | undefined;
  onShutdown: GraceOptions['onShutdown'] | undefined;
  onReload: GraceOptions['onReload'] | undefined;
};

/** The names createGrace accepts: the compiler holds this to exactly {@link GraceOptions}' keys. */
const KNOWN: Readonly<Record<keyof GraceOptions, true>> = {
  logger: true,
  upgradeSignal: true,
  stopSignals: true,
  reloadSignal: true,
  readyTimeout: true,
  drainTimeout: true,
  idleGrace: true,
  killTimeout: true,
  probation: true,
  bootNice: true,
  slowStart: true,
  canary: true,
  healthCheck: true,
  healthCheckTimeout: true,
  hookTimeout: true,
  controlDir: true,
  shutdownDelay: true,
  autoReady: true,
  pidFile: true,
  exit: true,
  moveConnections: true,
  onDrain: true,
  onShutdown: true,
  onReload: true,
};

const fail = (message: string): never => {
  throw new GraceError('GRACE_ERR_OPTIONS', `grace-restart: ${message}`);
};

/** An environment variable that sets an option's default is malformed: the operator's to fix, so its own code. */
const failEnv = (name: string, expected: string, value: string): never => {
  throw new GraceError('GRACE_ERR_ENV', `grace-restart: environment variable ${name} must be ${expected}, got ${JSON.stringify(value)}`);
};

function duration(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 2 ** 31 - 1) {
    fail(`option "${name}" must be a whole number of milliseconds (0 to 2147483647), got ${JSON.stringify(value)}`);
  }
  return value as number;
}

function signal(value: unknown, name: string, fallback: NodeJS.Signals | false): NodeJS.Signals | false {
  if (value === undefined) return fallback;
  if (value === false) return false;
  if (typeof value !== 'string' || !(value in constants.signals) || value === 'SIGKILL' || value === 'SIGSTOP') {
    fail(`option "${name}" must be a catchable signal name such as "SIGUSR2", or false, got ${JSON.stringify(value)}`);
  }
  return value as NodeJS.Signals;
}

function hook<T>(value: unknown, name: string): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'function') fail(`option "${name}" must be a function, got ${typeof value}`);
  return value as T;
}

function healthCheck(value: unknown): HealthCheck | undefined {
  if (value === undefined || typeof value === 'function') return value as HealthCheck | undefined;
  if (typeof value !== 'string' || !value.startsWith('/') || /[\s]/.test(value)) {
    fail(`option "healthCheck" must be a path such as "/healthz" or a function, got ${JSON.stringify(value)}`);
  }
  return value as string;
}

function isLogger(value: unknown): value is Logger {
  if (typeof value !== 'object' || value === null) return false;
  const candidate = value as Record<string, unknown>;
  return ['error', 'warn', 'info', 'debug'].every((level) => typeof candidate[level] === 'function');
}

/** Environment variable that sets the default of `moveConnections` (an operator's switch). */
export const MOVE_CONNECTIONS_ENV = 'GRACE_RESTART_MOVE_CONNECTIONS';

/** The default of `moveConnections`: the environment's word when it says one, else true. */
function moveConnectionsDefault(env: NodeJS.ProcessEnv): boolean {
  const value = env[MOVE_CONNECTIONS_ENV];
  if (value === undefined || value === '') return true;
  if (value === '1' || value === 'true') return true;
  if (value === '0' || value === 'false') return false;
  return failEnv(MOVE_CONNECTIONS_ENV, '1 or 0 (true or false)', value);
}

/** Environment variable that sets the default of `probation`, in ms (an operator's knob). */
export const PROBATION_ENV = 'GRACE_RESTART_PROBATION';

/** Environment variable that sets the default of `slowStart`, in ms (an operator's knob). */
export const SLOW_START_ENV = 'GRACE_RESTART_SLOW_START';

/** A duration's default from `env[name]` when it gives one, else `fallback`. */
function durationFromEnv(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const value = env[name];
  if (value === undefined || value === '') return fallback;
  const ms = /^(0|[1-9][0-9]{0,9})$/.test(value) ? Number(value) : Number.NaN;
  if (!(ms <= 2 ** 31 - 1)) {
    return failEnv(name, 'a whole number of milliseconds (0 to 2147483647)', value);
  }
  return ms;
}

/** A duration option given explicitly, else its environment variable's value, else its default. */
function durationOrEnv(option: unknown, name: 'probation' | 'slowStart', envName: string, env: NodeJS.ProcessEnv): number {
  const fallback = OPTION_DEFAULTS[name];
  return option === undefined ? durationFromEnv(env, envName, fallback) : duration(option, name, fallback);
}

/** `canary`: off, or on with its limit (percentage points, default 1); it reads the successor's answers on its control socket. */
function canary(option: unknown, controlDir: unknown): ResolvedOptions['canary'] {
  if (option === undefined || option === false) return undefined;
  const given = option === true ? {} : option;
  if (typeof given !== 'object' || given === null || Array.isArray(given) || Object.keys(given).some((k) => k !== 'maxErrorPoints'))
    fail(`option "canary" must be true, false or { maxErrorPoints }, got ${JSON.stringify(option)}`);
  const points = (given as { maxErrorPoints?: unknown }).maxErrorPoints ?? 1;
  if (typeof points !== 'number' || !(points >= 0 && points <= 100))
    fail(`option "canary.maxErrorPoints" must be a number of percentage points from 0 to 100, got ${JSON.stringify(points)}`);
  if (controlDir === false) fail('option "canary" reads the successor\'s answers on its control socket: it needs "controlDir"');
  return { maxErrorPoints: points as number };
}

/** Environment variable that sets the default of `bootNice` (an operator's knob). */
export const BOOT_NICE_ENV = 'GRACE_RESTART_BOOT_NICE';

/** `bootNice`: 0 to 19 nice steps, from the option, else the environment, else OPTION_DEFAULTS'. */
export function bootNice(option: unknown, env: NodeJS.ProcessEnv): number {
  if (option !== undefined) {
    if (typeof option !== 'number' || !Number.isInteger(option) || option < 0 || option > 19)
      fail(`option "bootNice" must be a whole number from 0 to 19, got ${JSON.stringify(option)}`);
    return option as number;
  }
  const value = env[BOOT_NICE_ENV];
  if (value === undefined || value === '') return OPTION_DEFAULTS.bootNice;
  if (!/^(0|1?[0-9])$/.test(value)) failEnv(BOOT_NICE_ENV, 'a whole number from 0 to 19', value);
  return Number(value);
}

/**
 * Validates user options and applies defaults (one of which `env` may set); throws a
 * GraceError naming the bad option or variable.
 */
export function resolveOptions(input: unknown = {}, env: NodeJS.ProcessEnv = process.env): ResolvedOptions {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) fail('options must be an object');
  const o = input as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!Object.hasOwn(KNOWN, key)) fail(`unknown option "${key}"`);
  }
  if (o['logger'] !== undefined && !isLogger(o['logger']))
    fail('option "logger" must have error, warn, info and debug methods (a pino logger fits)');
  let stopSignals: readonly NodeJS.Signals[] = OPTION_DEFAULTS.stopSignals;
  if (o['stopSignals'] === false) stopSignals = [];
  else if (o['stopSignals'] !== undefined) {
    if (!Array.isArray(o['stopSignals'])) fail('option "stopSignals" must be an array of signal names, or false');
    stopSignals = (o['stopSignals'] as unknown[]).map(
      (s) => signal(s, 'stopSignals', false) || fail('option "stopSignals" must not contain false'),
    );
  }
  if (o['pidFile'] !== undefined && (typeof o['pidFile'] !== 'string' || o['pidFile'] === '')) {
    fail(`option "pidFile" must be a non-empty path, got ${JSON.stringify(o['pidFile'])}`);
  }
  const controlDir = o['controlDir'];
  if (controlDir !== undefined && controlDir !== false && (typeof controlDir !== 'string' || controlDir === '')) {
    fail(`option "controlDir" must be a directory path or false, got ${JSON.stringify(controlDir)}`);
  }
  for (const flag of ['autoReady', 'exit', 'moveConnections']) {
    if (o[flag] !== undefined && typeof o[flag] !== 'boolean')
      fail(`option "${flag}" must be true or false, got ${JSON.stringify(o[flag])}`);
  }
  return {
    logger: (o['logger'] as Logger | undefined) ?? defaultLogger(),
    upgradeSignal: signal(o['upgradeSignal'], 'upgradeSignal', OPTION_DEFAULTS.upgradeSignal),
    stopSignals,
    reloadSignal: signal(o['reloadSignal'], 'reloadSignal', OPTION_DEFAULTS.reloadSignal),
    readyTimeout: duration(o['readyTimeout'], 'readyTimeout', OPTION_DEFAULTS.readyTimeout),
    drainTimeout: duration(o['drainTimeout'], 'drainTimeout', OPTION_DEFAULTS.drainTimeout),
    idleGrace: duration(o['idleGrace'], 'idleGrace', OPTION_DEFAULTS.idleGrace),
    killTimeout: duration(o['killTimeout'], 'killTimeout', OPTION_DEFAULTS.killTimeout),
    healthCheck: healthCheck(o['healthCheck']),
    healthCheckTimeout: duration(o['healthCheckTimeout'], 'healthCheckTimeout', OPTION_DEFAULTS.healthCheckTimeout),
    probation: durationOrEnv(o['probation'], 'probation', PROBATION_ENV, env),
    bootNice: bootNice(o['bootNice'], env),
    slowStart: durationOrEnv(o['slowStart'], 'slowStart', SLOW_START_ENV, env),
    canary: canary(o['canary'], controlDir),
    hookTimeout: duration(o['hookTimeout'], 'hookTimeout', OPTION_DEFAULTS.hookTimeout),
    controlDir: (controlDir as string | false | undefined) ?? defaultControlDirectory(),
    shutdownDelay: duration(o['shutdownDelay'], 'shutdownDelay', OPTION_DEFAULTS.shutdownDelay),
    autoReady: (o['autoReady'] as boolean | undefined) ?? OPTION_DEFAULTS.autoReady,
    pidFile: o['pidFile'] as string | undefined,
    exit: (o['exit'] as boolean | undefined) ?? OPTION_DEFAULTS.exit,
    moveConnections: (o['moveConnections'] as boolean | undefined) ?? moveConnectionsDefault(env),
    onDrain: hook(o['onDrain'], 'onDrain'),
    onShutdown: hook(o['onShutdown'], 'onShutdown'),
    onReload: hook(o['onReload'], 'onReload'),
  };
}
