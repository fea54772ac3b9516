#!/usr/bin/env node
/**
 * The grace-restart command line: the operator's surface.
 *   grace-restart run [options] -- node dist/server.js   supervisor with a stable PID
 *   grace-restart upgrade [--pid-file F | --pid N]       trigger an upgrade, print the outcome
 *   grace-restart status  [--pid-file F | --pid N]       generation, workers, uptime
 */
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism, constants } from 'node:os';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import {
  controlSocketPath,
  defaultControlDirectory,
  createJsonLogger,
  createServiceNotifier,
  flushLogger,
  readPidFile,
  reloadingFields,
  reportReady,
  removePidFile,
  sendControl,
  serveControl,
  signalExitCode,
  startDirectory,
  takeHandoffEnv,
  takeInheritedListeners,
  takeNotifyEnv,
  type ControlRequest,
  type SelfStatus,
  type UpgradeOutcome,
} from '@grace-restart/core';
import { Supervisor, type SupervisorStatus } from './supervisor.js';
import { createSupervisorUpgrader, type SupervisorHandoverOutcome } from './supervisor-handover.js';
import { parseWorkerCommand, scriptPath } from './worker-command.js';
import { findRunning, pickRunning } from './discover.js';

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

class UsageError extends Error {}

/** setTimeout's limit: a larger duration would fire at once. */
const MAX_DURATION = 2 ** 31 - 1;

function integer(value: string | undefined, flag: string, fallback: number, max = MAX_DURATION): number {
  if (value === undefined) return fallback;
  if (!/^[0-9]+$/.test(value) || Number(value) > max)
    throw new UsageError(`${flag} must be a whole number from 0 to ${max}, got "${value}"`);
  return Number(value);
}

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
  throw new UsageError(`unknown command "${command}"`);
}

/**
 * util.parseArgs with messages for people: an unknown or misspelled flag is named with the
 * command's own flags, instead of parseArgs' raw text.
 */
function parseFlags<O extends NonNullable<ParseArgsConfig['options']>>(
  command: string,
  args: string[],
  options: O,
  allowPositionals = false,
) {
  try {
    return parseArgs({ args, options, allowPositionals, strict: true });
  } catch (error) {
    const message = (error as Error).message;
    const flag = /'([^']+)'/.exec(message)?.[1];
    const known = Object.keys(options)
      .map((name) => `--${name}`)
      .join(', ');
    if ((error as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      throw new UsageError(
        `unknown option ${flag ?? ''} for "${command}"; its options are ${known}${command === 'run' ? ', then -- and the command' : ''}`,
      );
    }
    if ((error as { code?: string }).code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      throw new UsageError(`option ${flag ?? ''} of "${command}" needs a value`);
    }
    if ((error as { code?: string }).code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
      throw new UsageError(`unexpected argument ${flag ?? ''} for "${command}"`);
    }
    throw new UsageError(message);
  }
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
  if (workers < 1) throw new UsageError('--workers must be at least 1');
  const level = values['log-level'] ?? 'info';
  if (!['debug', 'info', 'warn', 'error', 'silent'].includes(level))
    throw new UsageError(`--log-level must be debug, info, warn, error or silent, got "${level}"`);
  const logger = createJsonLogger(level as 'info');
  let command: ReturnType<typeof parseWorkerCommand>;
  try {
    command = parseWorkerCommand(positionals);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const maxCrashes = integer(values['max-crashes'], '--max-crashes', 5, 1_000_000);
  if (maxCrashes < 1) throw new UsageError('--max-crashes must be at least 1');
  const startDir = startDirectory();
  if (!existsSync(scriptPath(command, startDir))) throw new UsageError(`cannot find the app to run: ${scriptPath(command, startDir)}`);
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

async function targetPid(values: {
  'pid-file'?: string | undefined;
  pid?: string | undefined;
  'control-dir'?: string | undefined;
}): Promise<number> {
  if (values.pid !== undefined && values['pid-file'] !== undefined) throw new UsageError('give --pid or --pid-file, not both');
  if (values.pid === undefined && values['pid-file'] === undefined) {
    const dir = values['control-dir'] ?? defaultControlDirectory();
    const picked = pickRunning(await findRunning(dir, (socket) => askControl(socket, { cmd: 'status' }, 2_000)), dir);
    if ('problem' in picked) throw new UsageError(picked.problem);
    return picked.pid;
  }
  let pid: number | undefined;
  if (values.pid !== undefined) {
    pid = integer(values.pid, '--pid', 0, 2 ** 22);
    // 0 would signal our own process group, and we are not the target.
    if (pid < 1 || pid === process.pid) throw new UsageError(`--pid ${pid} cannot name a grace-restart process`);
    // PID 1 is the supervisor in a container (docs/operations.md), but the machine's init
    // elsewhere: never signalled, only asked on its control socket.
    const initSocket = pid === 1 ? controlSocketPath(1, values['control-dir']) : undefined;
    if (initSocket !== undefined && !existsSync(initSocket)) {
      throw new UsageError(
        `--pid 1 has no grace-restart control socket (${initSocket}): it is this machine's or container's init, not a grace-restart process`,
      );
    }
  } else {
    pid = readPidFile(values['pid-file'] as string);
    if (pid === undefined) throw new Error(`cannot read a pid from ${values['pid-file']}: missing, unreadable or not a pid`);
  }
  try {
    process.kill(pid, 0);
  } catch {
    throw new Error(`no process ${pid} is running (stale PID file?)`);
  }
  return pid;
}

/**
 * SIGUSR2 kills a process that does not handle it. A stale PID file may name a stranger that
 * reused the pid: refuse unless the target catches SIGUSR2 (SigCgt in /proc, where there is one).
 */
function assertCatchesSigusr2(pid: number): void {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return; // no /proc on this platform: nothing to check with
  }
  const caught = /^SigCgt:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  const bit = 1n << BigInt(constants.signals.SIGUSR2 - 1);
  if (caught !== undefined && (BigInt(`0x${caught}`) & bit) === 0n) {
    throw new Error(
      `process ${pid} does not handle SIGUSR2, so it is not a grace-restart process (stale PID file?); refusing to signal it`,
    );
  }
}

async function upgrade(argv: string[]): Promise<number> {
  const { values } = parseFlags('upgrade', argv, {
    'pid-file': { type: 'string' },
    pid: { type: 'string' },
    timeout: { type: 'string' },
    json: { type: 'boolean' },
    'control-dir': { type: 'string' },
    supervisor: { type: 'boolean' },
  });
  const pid = await targetPid(values);
  const timeout = integer(values.timeout, '--timeout', 60_000);
  const socket = controlSocketPath(pid, values['control-dir']);
  stopWaitingOnSignals(pid);
  if (values.supervisor === true) return upgradeSupervisor(pid, socket, timeout, values.json === true);
  const response = await askControl(socket, { cmd: 'upgrade' }, timeout);
  if (response !== undefined) {
    const outcome = response['outcome'] as UpgradeOutcome | undefined;
    if (values.json) process.stdout.write(`${JSON.stringify(response)}\n`);
    else if (outcome) process.stdout.write(`${describeOutcome(outcome)}\n`);
    else process.stdout.write(`upgrade failed: ${String(response['error'])}\n`);
    return response['ok'] === true ? 0 : 1;
  }
  return upgradeSelf(pid, values['pid-file'], timeout, values.json === true);
}

/** Errors of a connect to a socket file nobody accepts on. */
const NO_LISTENER = new Set(['ECONNREFUSED', 'ENOENT']);

/**
 * `request` on the control socket at `path`, or undefined where there is none to ask: no file,
 * or a stale one nobody accepts on, left by a process that had this pid and was SIGKILLed (pids
 * are reused, soonest in a container). A refused connect delivered nothing, so the caller may
 * take the other way without doing anything twice. The file is left alone: the process that
 * has the pid now removes it if it ever serves one.
 */
async function askControl(path: string, request: ControlRequest, timeout: number): Promise<Record<string, unknown> | undefined> {
  if (!existsSync(path)) return undefined;
  try {
    return await sendControl(path, request, timeout);
  } catch (error) {
    if (NO_LISTENER.has((error as NodeJS.ErrnoException).code ?? '')) return undefined;
    throw error;
  }
}

/**
 * A process without a control socket (created with `controlDir: false`, or by an older
 * version): SIGUSR2, then watch the PID file and the old pid.
 */
async function upgradeSelf(pid: number, pidFile: string | undefined, timeout: number, json: boolean): Promise<number> {
  const started = Date.now();
  assertCatchesSigusr2(pid);
  process.kill(pid, 'SIGUSR2');
  const alive = (p: number): boolean => {
    try {
      process.kill(p, 0);
      return true;
    } catch {
      return false;
    }
  };
  while (Date.now() - started < timeout) {
    const current = pidFile === undefined ? undefined : readPidFile(pidFile);
    if (current !== undefined && current !== pid && alive(current)) {
      const result = { ok: true, oldPid: pid, newPid: current, readyMs: Date.now() - started };
      process.stdout.write(json ? `${JSON.stringify(result)}\n` : `upgraded: ${pid} -> ${current}, ready in ~${result.readyMs} ms\n`);
      return 0;
    }
    if (pidFile === undefined && !alive(pid)) {
      process.stdout.write(json ? `${JSON.stringify({ ok: true, oldPid: pid })}\n` : `upgraded: ${pid} handed over and exited\n`);
      return 0;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const message = `upgrade failed: ${pid} still serves after ${timeout} ms (the successor failed and was rolled back, or is still starting); see the process logs`;
  process.stdout.write(json ? `${JSON.stringify({ ok: false, oldPid: pid, error: message })}\n` : `${message}\n`);
  return 1;
}

/**
 * A stop signal while `upgrade` waits ends the wait, never the upgrade: that is the service's
 * to finish or abort. Run by systemd (`ExecReload=`, INVOCATION_ID set), SIGTERM means systemd
 * is stopping the unit (or gave up on the reload, which it reports itself): exit 0 then, or
 * the killed reload would leave the stopped unit `failed` (Result=signal). Otherwise the
 * usual 128 + signal number.
 */
function stopWaitingOnSignals(pid: number): void {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      const systemdStopping = signal === 'SIGTERM' && process.env['INVOCATION_ID'] !== undefined;
      process.stdout.write(
        `grace-restart upgrade: stopped waiting (${signal}); the upgrade of ${pid} is the service's to finish or abort${systemdStopping ? ' (systemd is stopping the unit or gave up on this reload)' : ''}: see grace-restart status\n`,
      );
      process.exit(systemdStopping ? 0 : signalExitCode(signal));
    });
  }
}

/** `upgrade --supervisor`: replaces the supervisor process itself, through its control socket. */
async function upgradeSupervisor(pid: number, socket: string, timeout: number, json: boolean): Promise<number> {
  const response = await askControl(socket, { cmd: 'upgrade-supervisor' }, timeout);
  if (response === undefined)
    throw new Error(
      `process ${pid} has no control socket at ${socket} that answers: it is not a grace-restart run supervisor (or give its --control-dir)`,
    );
  const outcome = response['supervisorUpgrade'] as SupervisorHandoverOutcome | undefined;
  if (json) process.stdout.write(`${JSON.stringify(response)}\n`);
  else if (outcome?.ok === true) {
    process.stdout.write(
      `supervisor upgraded: ${outcome.oldPid} -> ${outcome.newPid} in ${outcome.durationMs} ms, serving generation ${outcome.generation}; the old supervisor drains its workers and exits\n`,
    );
  } else process.stdout.write(`supervisor upgrade failed, ${pid} serves on: ${String(outcome?.error ?? response['error'])}\n`);
  return response['ok'] === true ? 0 : 1;
}

function describeOutcome(outcome: UpgradeOutcome): string {
  const lines = outcome.replaced.map((r) => `  slot ${r.slot}: ${r.oldPid ?? '-'} -> ${r.newPid} (ready in ${r.readyMs} ms)`);
  const head = outcome.ok
    ? `upgraded to generation ${outcome.generation} in ${outcome.durationMs} ms`
    : `upgrade failed after ${outcome.durationMs} ms, still serving generation ${outcome.generation}: ${outcome.error}`;
  return [head, ...lines].join('\n');
}

async function status(argv: string[]): Promise<number> {
  const { values } = parseFlags('status', argv, {
    'pid-file': { type: 'string' },
    pid: { type: 'string' },
    json: { type: 'boolean' },
    'control-dir': { type: 'string' },
  });
  const pid = await targetPid(values);
  const socket = controlSocketPath(pid, values['control-dir']);
  const response = await askControl(socket, { cmd: 'status' }, 5_000);
  if (response === undefined) {
    const line = { mode: 'unknown', pid, running: true };
    process.stdout.write(
      values.json
        ? `${JSON.stringify(line)}\n`
        : `pid ${pid} is running, without a control socket (controlDir: false, or not a grace-restart process)\n`,
    );
    return 0;
  }
  const s = response['status'] as SupervisorStatus | SelfStatus;
  if (values.json) {
    process.stdout.write(`${JSON.stringify(s)}\n`);
    return 0;
  }
  if (s.mode === 'self') {
    const parent = s.parentPid === undefined ? '' : `, took over from ${s.parentPid}`;
    process.stdout.write(
      `process ${s.pid}: ${s.state}, generation ${s.generation}, up ${Math.round(s.uptimeMs / 1000)}s${parent} (self-upgrading)\n`,
    );
    return 0;
  }
  const rows = s.workers.map(
    (w) =>
      `  ${String(w.pid).padEnd(8)} ${String(w.slot).padEnd(5)} ${String(w.generation).padEnd(11)} ${w.state.padEnd(9)} ${Math.round(w.uptimeMs / 1000)}s`,
  );
  process.stdout.write(
    `${[
      `supervisor ${s.pid}: ${s.state}, generation ${s.generation}, up ${Math.round(s.uptimeMs / 1000)}s`,
      `  ${'PID'.padEnd(8)} ${'SLOT'.padEnd(5)} ${'GENERATION'.padEnd(11)} ${'STATE'.padEnd(9)} UPTIME`,
      ...rows,
    ].join('\n')}\n`,
  );
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    const usage = error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
    process.stderr.write(`grace-restart: ${(error as Error).message}${usage ? '\nSee grace-restart --help' : ''}\n`);
    process.exit(usage ? 2 : 1);
  },
);
