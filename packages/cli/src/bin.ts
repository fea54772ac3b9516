#!/usr/bin/env node
/**
 * The grace-restart command line: the operator's surface.
 *   grace-restart run [options] -- node dist/server.js   supervisor with a stable PID
 *   grace-restart upgrade [--pid-file F | --pid N]       trigger an upgrade, print the outcome
 *   grace-restart status  [--pid-file F | --pid N]       generation, workers, uptime
 */
import type { CanarySettings } from './canary.js';
import { canReadRss, parseSize } from './memory-limit.js';
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { createJsonLogger, type Logger } from '@grace-restart/core';
import {
  type ControlServer,
  controlSocketPath,
  createServiceNotifier,
  flushLogger,
  serveControl,
  startDirectory,
  takeHandoffEnv,
  takeInheritedListeners,
  takeNotifyEnv,
} from '@grace-restart/core/internal';
import { reportFailure, usageError } from './cli-errors.js';
import { status } from './commands/status.js';
import { upgrade } from './commands/upgrade.js';
import { FLAG_DEFAULTS, integer, parseFlags } from './flags.js';
import { holdListeners, type ListenSpec, parseListenFlag } from './held-listeners.js';
import { Supervisor, type SupervisorOptions } from './supervisor.js';
import { createSupervisorHandover } from './supervisor-handover.js';
import { SupervisorService } from './supervisor-service.js';
import { bootNiceFromEnv, planWorkerBootPriority, predecessorServes } from './worker-boot-priority.js';
import { parseWorkerCommand, scriptPath, type WorkerCommand } from './worker-command.js';

const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const USAGE = `Usage:
  grace-restart run [options] -- node [node options] <script> [args]
      --workers N|auto      workers sharing the listeners (default ${FLAG_DEFAULTS.workers}; auto = CPU count)
      --listen [HOST:]PORT  the supervisor binds the address the app listens on and holds it
                            (repeatable; HOST an IP): a connect made while no worker runs
                            waits instead of being refused, as under socket activation
      --pid-file PATH       write the supervisor's pid here once serving
      --ready-timeout MS    a new worker must be ready within this (default ${FLAG_DEFAULTS.readyTimeout})
      --drain-timeout MS    a retired worker is killed after this (default ${FLAG_DEFAULTS.drainTimeout})
      --kill-timeout MS     a worker that does not stop is SIGKILLed this long after its
                            drain deadline, or after SIGTERM when it never got ready (default ${FLAG_DEFAULTS.killTimeout})
      --shutdown-delay MS   keep serving this long after SIGTERM (default ${FLAG_DEFAULTS.shutdownDelay})
      --watch PATH          upgrade when PATH (e.g. a "current" symlink) changes target
      --watch-interval MS   how often --watch looks (default ${FLAG_DEFAULTS.watchInterval})
      --max-crashes N       worker crashes within a minute that stop the supervisor
                            with exit code 1: a crash loop (default ${FLAG_DEFAULTS.maxCrashes})
      --rollback-window MS  workers of a new release that crash twice within this of its
                            promotion are replaced by the previous release's (0: never;
                            default ${FLAG_DEFAULTS.rollbackWindow})
      --max-memory SIZE     replace a worker whose RSS stays above SIZE (512M, 1G)
      --canary-window MS    the first new worker of an upgrade serves its slot this long;
                            the others are replaced only if its error rate (5xx, unanswered)
                            is at most --canary-max-errors points worse than the old
                            workers', else it is rolled back (default 0: no canary)
      --canary-max-errors N percentage points (default ${FLAG_DEFAULTS.canaryMaxErrors})
      --control-dir DIR     private directory of the control socket
      --log-level LEVEL     debug, info (default), warn, error, silent
  grace-restart upgrade [--pid-file PATH | --pid N] [--timeout MS] [--json] [--control-dir DIR] [--supervisor]
      upgrade a supervisor or a self-upgrading app; exit 0 only if the new version serves
      --supervisor: replace the supervisor process itself (new code, new Node binary) and
      its workers; the old supervisor serves on if the new one fails
  grace-restart status  [--pid-file PATH | --pid N] [--json] [--control-dir DIR]
      without --pid-file or --pid, upgrade and status act on the one grace-restart process of
      this user that answers on a control socket (several: they are listed, exit 2)
  grace-restart --version | --help

Signals to the supervisor: SIGUSR2 upgrades, SIGUSR1 upgrades the supervisor itself (as
upgrade --supervisor), SIGHUP is forwarded to the ready workers
(their onReload hook; ignored without one), SIGTERM/SIGINT drain and stop (a second one
kills at once, exit code 128 + signal number). Exit codes: 0 stopped on request, 1 failed
(crash loop, could not start), 2 bad command line.`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    (command === undefined ? process.stderr : process.stdout).write(`${USAGE}\n`);
    return command === undefined ? 2 : 0;
  }
  if (command === '--version' || command === '-v' || command === 'version') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  if (command === 'run') return run(rest);
  if (command === 'upgrade') return upgrade(rest);
  if (command === 'status') return status(rest);
  throw usageError(`unknown command "${command}"`);
}

/** `grace-restart run`'s flags, checked, with their defaults applied. */
interface RunFlags {
  logger: Logger;
  command: WorkerCommand;
  startDir: string;
  pidFile: string | undefined;
  controlDir: string | undefined;
  listen: ListenSpec[];
  /** GRACE_RESTART_BOOT_NICE or its default (issue #29). */
  bootNice: number;
  settings: Pick<
    SupervisorOptions,
    | 'workers'
    | 'readyTimeout'
    | 'drainTimeout'
    | 'killTimeout'
    | 'shutdownDelay'
    | 'watch'
    | 'watchInterval'
    | 'maxCrashes'
    | 'rollbackWindow'
    | 'maxMemory'
    | 'canary'
  >;
}

/** `--max-memory SIZE` in bytes; refused where the workers' RSS cannot be read. */
function maxMemoryFlag(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const bytes = parseSize(value);
  if (bytes === undefined) throw usageError(`--max-memory must be a size such as 512M or 1G, got "${value}"`);
  if (bytes < 16 * 1024 ** 2) throw usageError(`--max-memory ${value} is below 16M: no Node worker fits in it`);
  if (!canReadRss()) throw usageError('--max-memory needs /proc/<pid>/status to read worker memory (Linux)');
  return bytes;
}

/** `--canary-window MS` and `--canary-max-errors POINTS`: no canary without a window. */
function canaryFlags(window: string | undefined, maxErrors: string | undefined): CanarySettings | undefined {
  const windowMs = integer(window, '--canary-window', 0);
  const points = maxErrors === undefined ? FLAG_DEFAULTS.canaryMaxErrors : Number(maxErrors);
  if (maxErrors !== undefined && (!/^[0-9]+(\.[0-9]+)?$/.test(maxErrors) || points > 100)) {
    throw usageError(`--canary-max-errors must be a number of percentage points from 0 to 100, got "${maxErrors}"`);
  }
  if (maxErrors !== undefined && windowMs === 0)
    throw usageError('--canary-max-errors needs --canary-window: without a window there is no canary');
  return windowMs === 0 ? undefined : { windowMs, maxErrorPoints: points };
}

/** `grace-restart run`'s flags, as `node:util` parseArgs takes them. */
const RUN_FLAG_SPEC = {
  workers: { type: 'string' },
  'pid-file': { type: 'string' },
  'ready-timeout': { type: 'string' },
  'drain-timeout': { type: 'string' },
  'kill-timeout': { type: 'string' },
  'shutdown-delay': { type: 'string' },
  watch: { type: 'string' },
  'watch-interval': { type: 'string' },
  'max-crashes': { type: 'string' },
  'rollback-window': { type: 'string' },
  'max-memory': { type: 'string' },
  'canary-window': { type: 'string' },
  'canary-max-errors': { type: 'string' },
  listen: { type: 'string', multiple: true },
  'control-dir': { type: 'string' },
  'log-level': { type: 'string' },
} as const;

function readRunFlags(argv: string[]): RunFlags {
  const { values, positionals } = parseFlags('run', argv, RUN_FLAG_SPEC, true);
  const workers = values.workers === 'auto' ? availableParallelism() : integer(values.workers, '--workers', FLAG_DEFAULTS.workers, 256);
  if (workers < 1) throw usageError('--workers must be at least 1');
  const logger = loggerAtLevel(values['log-level'] ?? 'info');
  const startDir = startDirectory();
  const command = appCommand(positionals, startDir);
  const maxCrashes = integer(values['max-crashes'], '--max-crashes', FLAG_DEFAULTS.maxCrashes, 1_000_000);
  if (maxCrashes < 1) throw usageError('--max-crashes must be at least 1');
  const settings = {
    workers,
    readyTimeout: integer(values['ready-timeout'], '--ready-timeout', FLAG_DEFAULTS.readyTimeout),
    drainTimeout: integer(values['drain-timeout'], '--drain-timeout', FLAG_DEFAULTS.drainTimeout),
    killTimeout: integer(values['kill-timeout'], '--kill-timeout', FLAG_DEFAULTS.killTimeout),
    shutdownDelay: integer(values['shutdown-delay'], '--shutdown-delay', FLAG_DEFAULTS.shutdownDelay),
    watch: values.watch,
    watchInterval: integer(values['watch-interval'], '--watch-interval', FLAG_DEFAULTS.watchInterval),
    maxCrashes,
    rollbackWindow: integer(values['rollback-window'], '--rollback-window', FLAG_DEFAULTS.rollbackWindow),
    maxMemory: maxMemoryFlag(values['max-memory']),
    canary: canaryFlags(values['canary-window'], values['canary-max-errors']),
  };
  const listen = (values.listen ?? []).map(parseListenFlag);
  const bootNice = bootNiceFromEnv(process.env);
  return { logger, command, startDir, pidFile: values['pid-file'], controlDir: values['control-dir'], listen, bootNice, settings };
}

/** The JSON logger `--log-level` asks for. */
function loggerAtLevel(level: string): Logger {
  if (!['debug', 'info', 'warn', 'error', 'silent'].includes(level))
    throw usageError(`--log-level must be debug, info, warn, error or silent, got "${level}"`);
  return createJsonLogger(level as 'info');
}

/** The app to run (after `--`, or a script), which must exist in the start directory. */
function appCommand(positionals: string[], startDir: string): WorkerCommand {
  let command: WorkerCommand;
  try {
    command = parseWorkerCommand(positionals);
  } catch (error) {
    throw usageError((error as Error).message);
  }
  if (!existsSync(scriptPath(command, startDir))) throw usageError(`cannot find the app to run: ${scriptPath(command, startDir)}`);
  return command;
}

/**
 * What systemd and a predecessor left in the environment, taken out of it so that workers get
 * only what the supervisor gives them: the inherited sockets (socket activation), systemd's
 * notify socket (the supervisor's alone), and the handoff of the supervisor this one replaces.
 */
function takeServiceEnv(logger: Logger) {
  const activation = takeInheritedListeners(process.env, process.pid);
  for (const problem of activation.problems) logger.warn({}, problem);
  if (activation.fds.length > 0)
    logger.info({ listeners: activation.fds }, 'socket activation: every worker serves on the inherited sockets');
  const notifyEnv = takeNotifyEnv(process.env, process.pid);
  for (const problem of notifyEnv.problems) logger.warn({}, problem);
  const notifier = createServiceNotifier(notifyEnv, logger);
  // Started by the supervisor this one replaces (grace-restart upgrade --supervisor): it waits for our ready report.
  const predecessor = takeHandoffEnv(
    process.env,
    activation.fds.map((l) => l.fd),
  );
  for (const problem of predecessor.problems) logger.warn({}, problem);
  return { listeners: activation.fds, notifier, predecessor };
}

async function run(argv: string[]): Promise<number> {
  const { logger, command, startDir, pidFile, controlDir, listen, bootNice, settings } = readRunFlags(argv);
  const { listeners: inherited, notifier, predecessor } = takeServiceEnv(logger);
  const bootPriority = planWorkerBootPriority(bootNice, logger);
  const held = listen.length > 0 && inherited.length === 0 ? holdListeners(listen, logger) : undefined;
  if (listen.length > 0 && inherited.length > 0)
    logger.info({}, '--listen: the sockets are inherited (socket activation, or the supervisor this one replaces): serving on those');
  const listeners = held?.fds ?? inherited;
  const service = new SupervisorService(notifier, logger, predecessor);
  const controlSocket = controlSocketPath(process.pid, controlDir);
  let control: ControlServer | undefined;
  const exit = async (code: number): Promise<void> => {
    control?.close();
    await service.flush();
    await flushLogger(logger);
    process.exit(code);
  };
  const handover = createSupervisorHandover({ inherited: listeners, controlSocket, startDir, ...settings, bootPriority, logger, service });
  const supervisor = new Supervisor({
    ...settings,
    bootPriority,
    othersServe: predecessorServes(predecessor.parentPid),
    command,
    startDir,
    pidFile,
    listeners,
    unservedListeners: held?.unserved,
    generation: predecessor.generation,
    logger,
    service,
    handover,
    exit: (code) => void exit(code),
    exitNow: (code) => process.exit(code),
  });
  // Serve the control socket before the PID file exists: whoever reads the pid finds it.
  control = await serveControl(controlSocket, async (request) => {
    if (request.cmd === 'status') return { ok: true, status: supervisor.status() };
    if (request.cmd === 'canary-failed') return { ok: false, error: "a supervisor is nobody's successor" };
    if (request.cmd === 'upgrade-supervisor') {
      const outcome = await supervisor.upgradeSupervisor('control');
      return { ok: outcome.ok, supervisorUpgrade: outcome };
    }
    const outcome = await supervisor.upgrade('control');
    return { ok: outcome.ok, outcome };
  });
  wireSignals(supervisor);
  void supervisor.start();
  // Keep running: the workers, timers and signal handlers hold the process; the lifecycle exits.
  return new Promise<number>(() => undefined);
}

/** The supervisor's signals. A stop signal is a stop the first time, and kills after that. */
function wireSignals(supervisor: Supervisor): void {
  let stopSignals = 0;
  const stop = (signal: NodeJS.Signals): void => supervisor.stop(signal, stopSignals++ > 0);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('SIGHUP', () => supervisor.reload());
  process.on('SIGUSR2', () => void supervisor.upgrade('SIGUSR2'));
  // A listener of our own also keeps Node from opening its inspector on SIGUSR1.
  process.on('SIGUSR1', () => void supervisor.upgradeSupervisor('SIGUSR1'));
}

const argv = process.argv.slice(2);
main(argv).then(
  (code) => process.exit(code),
  // --json asked for machine-readable output: the failure's code goes there too.
  (error: unknown) => process.exit(reportFailure(error, argv.includes('--json'))),
);
