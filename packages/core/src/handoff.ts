/**
 * The handoff protocol between a running process (the parent) and its successor.
 *
 * 1. The parent spawns `process.execPath` with its own execArgv and argv, in the directory
 *    it was started from (re-resolved, so a switched `current` symlink is followed), with
 *    stdio inherited, its listening sockets at fds 3…3+n-1 described by LISTEN_FDS /
 *    LISTEN_FDNAMES, and one more fd: the private readiness channel (a socketpair, never a
 *    network port), whose number is in GRACE_RESTART_READY_FD. With `moveConnections`, a
 *    Node IPC channel follows at the next fd (NODE_CHANNEL_FD, which Node reads and removes
 *    at startup): after the listeners and the readiness fd, so neither numbering moves.
 * 2. The successor listens on the inherited sockets and, once it can serve (its `healthCheck`
 *    passed), writes one JSON line `{"type":"ready","pid":…}` on the channel and closes it; one
 *    that failed its health check writes `{"type":"unhealthy","pid":…,"reason":…}` instead. A successor that has
 *    the IPC channel (and a valid readiness fd, so the channel is its predecessor's) adds
 *    `"adopts":[<listener names>]`: it takes moved connections for those listeners.
 * 3. The parent serves beside it through its probation, then stops accepting, moves its
 *    idle keep-alive connections over the IPC channel when the successor adopts them
 *    (connection-mover.ts) and drains the rest (see drain.ts). If the successor exits, or
 *    is not ready within the timeout, the parent stops it (SIGTERM, then SIGKILL) and keeps
 *    serving: a rollback.
 */
import { type BootPriority, bootPriorityEnv, spawnAtBootPriority } from './boot-priority.js';
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, fstatSync, realpathSync, writeSync } from 'node:fs';
import type { Socket } from 'node:net';
import { relative, resolve, sep } from 'node:path';
import { awaitReady, type ReadyRace } from './await-ready.js';
import { UpgradeError } from './errors.js';
import { LISTEN_FDS_START, listenFdsEnv } from './listen-fds.js';
import { ENV, parsePositiveInteger } from './protocol.js';

const { readyFd: ENV_READY_FD, generation: ENV_GENERATION, parentPid: ENV_PARENT_PID } = ENV;

/** What a successor learns from its parent through the environment. */
export interface HandoffEnv {
  /** 1 for a process started by hand, parent's generation + 1 for a successor. */
  generation: number;
  /** pid of the process that started this one as its successor. */
  parentPid: number | undefined;
  /** fd of the readiness channel, when started as a successor. */
  readyFd: number | undefined;
  problems: string[];
}

/**
 * Reads and removes the handoff variables; malformed ones are reported and ignored. The
 * readiness fd is trusted only if our parent is the process that says it started us, and it
 * is a socket that is not one of the inherited listeners (`listenFds`): a forged value must
 * not make us write into, or close, an fd that is not the channel.
 */
export function takeHandoffEnv(env: NodeJS.ProcessEnv, listenFds: readonly number[] = []): HandoffEnv {
  const read = (key: string): number | undefined | Error => {
    const value = env[key];
    delete env[key];
    if (value === undefined || value === '') return undefined;
    return parsePositiveInteger(value) ?? new Error(`ignoring ${key}=${JSON.stringify(value)}: expected a positive integer`);
  };
  const problems: string[] = [];
  const valid = (v: number | undefined | Error): number | undefined => {
    if (v instanceof Error) {
      problems.push(v.message);
      return undefined;
    }
    return v;
  };
  const generation = valid(read(ENV_GENERATION)) ?? 1;
  const parentPid = valid(read(ENV_PARENT_PID));
  let readyFd = valid(read(ENV_READY_FD));
  if (readyFd !== undefined && readyFd < LISTEN_FDS_START) {
    problems.push(`ignoring ${ENV_READY_FD}=${readyFd}: it would be one of stdin/stdout/stderr`);
    readyFd = undefined;
  } else if (readyFd !== undefined) {
    const refusal = readyFdRefusal(readyFd, parentPid, listenFds);
    if (refusal !== undefined) {
      problems.push(`ignoring ${ENV_READY_FD}=${readyFd}: ${refusal}`);
      readyFd = undefined;
    }
  }
  return { generation, parentPid, readyFd, problems };
}

function readyFdRefusal(fd: number, parentPid: number | undefined, listenFds: readonly number[]): string | undefined {
  if (parentPid !== process.ppid) return `${ENV_PARENT_PID} does not name this process's parent`;
  if (listenFds.includes(fd)) return 'it is one of the inherited listeners';
  try {
    if (!fstatSync(fd).isSocket()) return 'it is not a socket';
  } catch {
    return 'it is not open';
  }
  return undefined;
}

/**
 * Tells the parent this successor is serving, and which listeners' connections it adopts
 * (`adopts`, only when it listens for moved connections). Returns false if the parent is gone.
 */
export function reportReady(readyFd: number, adopts?: readonly string[]): boolean {
  try {
    const message = adopts === undefined ? { type: 'ready', pid: process.pid } : { type: 'ready', pid: process.pid, adopts };
    writeSync(readyFd, `${JSON.stringify(message)}\n`);
    return true;
  } catch {
    return false;
  } finally {
    try {
      closeSync(readyFd);
    } catch {
      // already closed: nothing to release
    }
  }
}

/** Tells the parent this successor failed its health check (`reason`), so the upgrade fails with it. */
export function reportUnhealthy(readyFd: number, reason: string): void {
  try {
    writeSync(readyFd, `${JSON.stringify({ type: 'unhealthy', pid: process.pid, reason })}\n`);
  } catch {
    // The parent is gone: nobody to tell.
  } finally {
    try {
      closeSync(readyFd);
    } catch {
      // already closed
    }
  }
}

/** How the successor is started: the same program, arguments and start directory. */
export interface SuccessorCommand {
  file: string;
  args: string[];
  cwd: string;
}

/**
 * Where this process was started, as the user saw it. `process.cwd()` is the physical
 * directory (symlinks resolved); $PWD, when it names the same directory, keeps the symlink
 * (`/srv/app/current`) that a deploy switches to a new release.
 */
export function startDirectory(env: NodeJS.ProcessEnv = process.env): string {
  const physical = process.cwd();
  const logical = env['PWD'];
  if (logical === undefined || !logical.startsWith(sep)) return physical;
  try {
    return realpathSync(logical) === physical ? logical : physical;
  } catch {
    return physical;
  }
}

/**
 * The command that starts a successor. A script path under the physical start directory is
 * rewritten relative to the logical one, so `node dist/server.js` run from
 * `/srv/app/current` re-runs the script of whatever release `current` points to then.
 */
export function successorCommand(startDir: string): SuccessorCommand {
  const physical = process.cwd();
  const args = [...process.execArgv, ...process.argv.slice(1)];
  const script = process.argv[1];
  if (script !== undefined && startDir !== physical && script.startsWith(physical + sep)) {
    args[process.execArgv.length] = resolve(startDir, relative(physical, script));
  }
  return { file: process.execPath, args, cwd: startDir };
}

/** A listening socket handed to the successor. */
export interface HandoffListener {
  fd: number;
  name: string;
}

/** Settings of one upgrade attempt. */
export interface SpawnSuccessorOptions {
  command: SuccessorCommand;
  listeners: readonly HandoffListener[];
  generation: number;
  readyTimeout: number;
  killTimeout: number;
  startedAt: number;
  /** Rejects the attempt early (e.g. the parent got SIGTERM meanwhile). */
  signal?: AbortSignal;
  /** Open a Node IPC channel to the successor, after the readiness fd, to move connections over. */
  ipc?: boolean;
  /** More environment for the successor (systemd's NOTIFY_SOCKET, which this process took out of its own). */
  env?: Readonly<Record<string, string>> | undefined;
  /** Start it niced until its ready report (boot-priority.ts); default: as this process. */
  bootPriority?: BootPriority;
}

/** A successor that reported ready. */
export interface ReadySuccessor {
  pid: number;
  /** The successor process; unref'd, so the parent may exit before it. */
  child: ChildProcess;
  /** Listener names whose connections the successor adopts over the IPC channel (none without one). */
  adopts: readonly string[];
}

const NOT_NICED: BootPriority = { mode: 'off', why: 'not asked for' };

/**
 * Starts a successor and waits for its ready report. Rejects with an {@link UpgradeError}
 * after stopping the successor and releasing the channel if it exits, times out, or the
 * attempt is aborted.
 */
export function spawnSuccessor(options: SpawnSuccessorOptions): Promise<ReadySuccessor> {
  const { command, listeners, startedAt, bootPriority = NOT_NICED } = options;
  const readyIndex = LISTEN_FDS_START + listeners.length;
  const env = {
    ...process.env,
    ...options.env,
    ...listenFdsEnv(listeners.map((l) => l.name)),
    [ENV_READY_FD]: String(readyIndex),
    [ENV_GENERATION]: String(options.generation + 1),
    [ENV_PARENT_PID]: String(process.pid),
    ...bootPriorityEnv(bootPriority),
  };
  const stdio: ('inherit' | 'pipe' | 'ipc' | number)[] = ['inherit', 'inherit', 'inherit', ...listeners.map((l) => l.fd), 'pipe'];
  if (options.ipc === true) stdio.push('ipc');

  const elapsed = (): number => Date.now() - startedAt;
  let child: ChildProcess;
  try {
    child = spawnAtBootPriority(bootPriority, () => spawn(command.file, command.args, { cwd: command.cwd, env, stdio }));
  } catch (cause) {
    return Promise.reject(new UpgradeError('spawn', `could not start the successor: ${String(cause)}`, { durationMs: elapsed(), cause }));
  }
  // 'pipe' entries beyond stdio 0–2 are duplex unix sockets.
  const channel = child.stdio[readyIndex] as Socket | null | undefined;
  channel?.setEncoding('utf8');
  channel?.on('error', () => {
    // The successor closing its end early shows up as its exit; nothing to add here.
  });
  return awaitReady(child, {
    timeout: options.readyTimeout,
    signal: options.signal,
    onReady: (ready: (message: ReadyLine | undefined) => void) => onReadyLine(channel, ready),
  }).then((race) => {
    channel?.destroy();
    const report = race.kind === 'ready' ? race.report : undefined;
    if (report !== undefined && report.pid === child.pid && report.unhealthy === undefined) return readySuccessor(child, report);
    const error = notReadyError(race, child.pid, options.readyTimeout, elapsed());
    return stopChild(child, options.killTimeout).then(() => Promise.reject(error));
  });
}

/** Calls `ready` with the first line the successor writes on `channel`; returns the unsubscribe. */
function onReadyLine(channel: Socket | null | undefined, ready: (message: ReadyLine | undefined) => void): () => void {
  let buffered = '';
  const onData = (chunk: string): void => {
    buffered += chunk;
    if (buffered.includes('\n')) ready(parseReadyLine(buffered.slice(0, buffered.indexOf('\n'))));
  };
  channel?.on('data', onData);
  return () => channel?.removeListener('data', onData);
}

/** A successor that reported ready: from now on it lives on its own. */
function readySuccessor(child: ChildProcess, report: ReadyLine): ReadySuccessor {
  // As before the race was shared: an error of the successor from now on (a kill refused) is
  // not this process's crash.
  child.on('error', ignoreError);
  child.unref();
  // Adoption needs the channel on both ends: the successor could claim it without one.
  const adopts = child.connected ? report.adopts : [];
  if (!child.connected || adopts.length === 0) closeChannel(child);
  return { pid: report.pid, child, adopts };
}

/** The UpgradeError for a successor that did not report ready (or reported nonsense). */
function notReadyError(
  race: ReadyRace<ReadyLine | undefined>,
  pid: number | undefined,
  readyTimeout: number,
  durationMs: number,
): UpgradeError {
  switch (race.kind) {
    case 'ready':
      if (race.report?.unhealthy !== undefined && race.report.pid === pid) {
        return new UpgradeError('unhealthy', `successor ${pid} failed its health check: ${race.report.unhealthy}`, { pid, durationMs });
      }
      return new UpgradeError('exited', `successor ${pid} sent an invalid ready message`, { pid, durationMs });
    case 'exited': {
      const how = race.signal === null ? `exit code ${race.code}` : `signal ${race.signal}`;
      return new UpgradeError('exited', `successor ${pid} exited (${how}) before it was ready`, {
        pid,
        exitCode: race.code,
        // A ChildProcess names its signal with a NodeJS.Signals.
        signal: race.signal as NodeJS.Signals | null,
        durationMs,
      });
    }
    case 'error':
      return new UpgradeError('spawn', `could not start the successor: ${race.error.message}`, { pid, durationMs, cause: race.error });
    case 'timeout':
      return new UpgradeError('timeout', `successor ${pid} was not ready within ${readyTimeout} ms`, { pid, durationMs });
    case 'aborted':
      return new UpgradeError('aborted', 'upgrade aborted: the process is shutting down', { pid, durationMs });
    default: {
      const unknown: never = race;
      throw new Error(`no error for ${String(unknown)}`);
    }
  }
}

/** Ends the IPC channel to `child`, so that it keeps neither process alive. */
export function closeChannel(child: ChildProcess): void {
  // A message still on its way (a late ack) must find a listener: with none, Node queues it on
  // the channel, which disconnect() has just set to null, and throws from its own internals.
  if (child.listenerCount('message') === 0) child.on('message', ignoreMessage);
  if (child.connected) child.disconnect();
}

function ignoreError(): void {
  // Nothing to do: the successor serves on its own.
}

function ignoreMessage(): void {
  // Nothing more is expected once the channel is closing.
}

/** A successor's ready line, read: ready, or (`unhealthy` set) failed its health check. */
interface ReadyLine {
  pid: number;
  adopts: string[];
  unhealthy?: string;
}

function parseReadyLine(line: string): ReadyLine | undefined {
  try {
    const value: unknown = JSON.parse(line);
    if (typeof value !== 'object' || value === null) return undefined;
    const { type, pid, adopts, reason } = value as { type?: unknown; pid?: unknown; adopts?: unknown; reason?: unknown };
    if (typeof pid !== 'number') return undefined;
    if (type === 'ready') {
      const names = Array.isArray(adopts) ? adopts.filter((name): name is string => typeof name === 'string') : [];
      return { pid, adopts: names };
    }
    if (type === 'unhealthy') return { pid, adopts: [], unhealthy: String(reason).slice(0, 1_000) };
  } catch {
    // fall through: not a ready message
  }
  return undefined;
}

/**
 * Stops a child process: SIGTERM, then SIGKILL if it is still there after `killTimeout` ms.
 * Resolves once it has exited (at once if it already has). Shared with the supervisor of
 * `@grace-restart/cli`, which stops its workers the same way.
 */
export function stopChild(child: ChildProcess, killTimeout: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return Promise.resolve();
  return new Promise((resolveStop) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), killTimeout);
    child.once('exit', () => {
      clearTimeout(timer);
      resolveStop();
    });
    child.kill('SIGTERM');
  });
}
