#!/usr/bin/env node
/**
 * The grace-restart command line: the operator's surface.
 *   grace-restart run [options] -- node dist/server.js   supervisor with a stable PID
 *   grace-restart upgrade [--pid-file F | --pid N]       trigger an upgrade, print the outcome
 *   grace-restart status  [--pid-file F | --pid N]       generation, workers, uptime
 */
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import {
  controlSocketPath,
  createJsonLogger,
  createServiceNotifier,
  flushLogger,
  reloadingFields,
  removePidFile,
  reportReady,
  serveControl,
  signalExitCode,
  startDirectory,
  takeHandoffEnv,
  takeInheritedListeners,
  takeNotifyEnv,
  type UpgradeOutcome,
} from '@grace-restart/core';
import { reportFailure, usageError } from './cli-errors.js';
import { status } from './commands/status.js';
import { upgrade } from './commands/upgrade.js';
import { integer, parseFlags } from './flags.js';
import { Supervisor } from './supervisor.js';
import { createSupervisorUpgrader } from './supervisor-handover.js';
import { parseWorkerCommand, scriptPath } from './worker-command.js';

const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const USAGE = `Usage:
  grace-restart run [options] -- node [node options] <script> [args]
      --workers N|auto      workers sharing the listeners (default 1; auto = CPU count)
      --pid-file PATH       write the supervisor's pid here once serving
      --ready-timeout MS    a new worker must be ready within this (default 30000)
      --drain-timeout MS    a retired worker is killed after this (default 30000)
      --kill-timeout MS     a worker that does not stop is SIGKILLed this long after its
                            drain deadline, or after SIGTERM when it never got ready (default 5000)
      --shutdown-delay MS   keep serving this long after SIGTERM (default 0)
      --watch PATH          upgrade when PATH (e.g. a "current" symlink) changes target
      --watch-interval MS   how often --watch looks (default 1000)
      --max-crashes N       worker crashes within a minute that stop the supervisor
                            with exit code 1: a crash loop (default 5)
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

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    'run',
    argv,
    {
      workers: { type: 'string' },
      'pid-file': { type: 'string' },
      'ready-timeout': { type: 'string' },
      'drain-timeout': { type: 'string' },
      'kill-timeout': { type: 'string' },
      'shutdown-delay': { type: 'string' },
      watch: { type: 'string' },
      'watch-interval': { type: 'string' },
      'max-crashes': { type: 'string' },
      'control-dir': { type: 'string' },
      'log-level': { type: 'string' },
    },
    true,
  );
  const workers = values.workers === 'auto' ? availableParallelism() : integer(values.workers, '--workers', 1, 256);
  if (workers < 1) throw usageError('--workers must be at least 1');
  const level = values['log-level'] ?? 'info';
  if (!['debug', 'info', 'warn', 'error', 'silent'].includes(level))
    throw usageError(`--log-level must be debug, info, warn, error or silent, got "${level}"`);
  const logger = createJsonLogger(level as 'info');
  let command: ReturnType<typeof parseWorkerCommand>;
  try {
    command = parseWorkerCommand(positionals);
  } catch (error) {
    throw usageError((error as Error).message);
  }
  const maxCrashes = integer(values['max-crashes'], '--max-crashes', 5, 1_000_000);
  if (maxCrashes < 1) throw usageError('--max-crashes must be at least 1');
  const startDir = startDirectory();
  if (!existsSync(scriptPath(command, startDir))) throw usageError(`cannot find the app to run: ${scriptPath(command, startDir)}`);
  // Socket activation: taken out of the environment, so workers get only what the supervisor gives them.
  const activation = takeInheritedListeners(process.env, process.pid);
  for (const problem of activation.problems) logger.warn({}, problem);
  if (activation.fds.length > 0)
    logger.info({ listeners: activation.fds }, 'socket activation: every worker serves on the inherited sockets');
  // systemd's notify socket is the supervisor's: taken out of the environment, workers never see it.
  const notifyEnv = takeNotifyEnv(process.env, process.pid);
  for (const problem of notifyEnv.problems) logger.warn({}, problem);
  const notifier = createServiceNotifier(notifyEnv, logger);
  // Started by the supervisor this one replaces (grace-restart upgrade --supervisor): it waits for our ready report.
  const predecessor = takeHandoffEnv(
    process.env,
    activation.fds.map((l) => l.fd),
  );
  for (const problem of predecessor.problems) logger.warn({}, problem);
  const readyTimeout = integer(values['ready-timeout'], '--ready-timeout', 30_000);
  const killTimeout = integer(values['kill-timeout'], '--kill-timeout', 5_000);
  const supervisor = new Supervisor({
    command,
    startDir,
    workers,
    readyTimeout,
    drainTimeout: integer(values['drain-timeout'], '--drain-timeout', 30_000),
    killTimeout,
    shutdownDelay: integer(values['shutdown-delay'], '--shutdown-delay', 0),
    pidFile: values['pid-file'],
    watch: values.watch,
    watchInterval: integer(values['watch-interval'], '--watch-interval', 1_000),
    maxCrashes,
    listeners: activation.fds,
    generation: predecessor.generation,
    logger,
  });
  const controlSocket = controlSocketPath(process.pid, values['control-dir']);
  let stopping = false;
  /** Set once a new supervisor serves: this one only drains its workers, then exits. */
  let retired = false;
  const upgrader = createSupervisorUpgrader({
    supervisor,
    inherited: activation.fds,
    controlSocket,
    startDir,
    readyTimeout,
    killTimeout,
    pidFile: values['pid-file'],
    logger,
    notifier,
    retire: () => {
      retired = true;
      // The PID file names the new supervisor now: stop() leaves it, and the sockets stay for it.
      void supervisor.stop('supervisor-upgrade').then(() => exit(0));
    },
  });

  // Serve the control socket before the PID file exists: whoever reads the pid finds it.
  const control = await serveControl(controlSocket, async (request) => {
    if (request.cmd === 'status') return { ok: true, status: supervisor.status() };
    if (request.cmd === 'upgrade-supervisor') {
      const handover = await upgrader.upgrade('control');
      return { ok: handover.ok, supervisorUpgrade: handover };
    }
    const outcome = await supervisor.upgrade('control');
    return { ok: outcome.ok, outcome };
  });
  const exit = async (code: number): Promise<never> => {
    control.close();
    await notifier?.flush();
    await flushLogger(logger);
    process.exit(code);
  };

  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ signal }, 'second stop signal: killing workers');
      supervisor.kill();
      // No drain, but no stale PID file either (the control socket goes with the exit).
      if (values['pid-file'] !== undefined) removePidFile(values['pid-file']);
      process.exit(signalExitCode(signal));
    }
    stopping = true;
    if (retired) {
      logger.info({ signal }, `${signal}: this supervisor is already draining its workers after handing over`);
      return;
    }
    upgrader.abort();
    notifier?.send(['STOPPING=1', 'STATUS=stopping: draining the workers']);
    void supervisor.stop(signal).then(() => exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('SIGHUP', () => supervisor.forward('SIGHUP'));
  process.on('SIGUSR2', () => void supervisor.upgrade('SIGUSR2'));
  // A listener of our own also keeps Node from opening its inspector on SIGUSR1.
  process.on('SIGUSR1', () => void upgrader.upgrade('SIGUSR1'));
  const serving = (): string => {
    const { generation, workers: running } = supervisor.status();
    return `serving, generation ${generation}, ${running.filter((w) => w.state === 'ready').length} workers`;
  };
  // RELOADING=1 … READY=1 around each upgrade that really starts (one refused while stopping sends nothing).
  let reloading = false;
  supervisor.on('upgrade-start', ({ generation }: { generation: number }) => {
    reloading = true;
    notifier?.send(reloadingFields(`upgrading to generation ${generation}`));
  });
  supervisor.on('upgrade', (outcome: UpgradeOutcome) => {
    if (!reloading) return;
    reloading = false;
    notifier?.send(['READY=1', outcome.ok ? `STATUS=${serving()}` : `STATUS=upgrade failed, ${serving()}: ${outcome.error ?? ''}`]);
  });
  supervisor.on('fatal', (error: Error) => {
    notifier?.send([`STATUS=stopped: ${error.message}`]);
    logger.error({}, `stopped: ${error.message}`);
    void exit(1);
  });

  try {
    await supervisor.start();
  } catch (error) {
    // A stop signal during start is a stop on request, not a failure.
    if (stopping) return new Promise<number>(() => undefined);
    notifier?.send([`STATUS=could not start: ${(error as Error).message}`]);
    logger.error({}, `could not start: ${(error as Error).message}`);
    await exit(1);
  }
  if (supervisor.state === 'running') {
    // The supervisor that started this one names it systemd's main process once it lets go.
    const handedOver = predecessor.readyFd !== undefined && reportReady(predecessor.readyFd);
    if (predecessor.readyFd !== undefined && !handedOver)
      logger.warn({ parentPid: predecessor.parentPid }, 'the supervisor that started this one is gone: serving alone');
    if (!handedOver) notifier?.send(['READY=1', `MAINPID=${process.pid}`, `STATUS=${serving()}`]);
    notifier?.startWatchdog();
  }
  // Keep running: the workers, timers and signal handlers hold the process; stop/fatal exit.
  return new Promise<number>(() => undefined);
}

const argv = process.argv.slice(2);
main(argv).then(
  (code) => process.exit(code),
  // --json asked for machine-readable output: the failure's code goes there too.
  (error: unknown) => process.exit(reportFailure(error, argv.includes('--json'))),
);
