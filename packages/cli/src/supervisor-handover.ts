/**
 * Replacing the supervisor process itself (`grace-restart upgrade --supervisor`, SIGUSR1), as
 * nginx's USR2 replaces its master: the old supervisor starts a new one from the code and the
 * Node binary now on disk, with the same command line, and hands it every listening socket it
 * holds, at fds 3, 4, … with LISTEN_FDS/LISTEN_FDNAMES, exactly as systemd would (the new one
 * is socket-activated by the old). The new supervisor starts its own workers on them, writes
 * the PID file (atomically) and reports ready over a private pipe (core's handoff); the old
 * one waits one probation second, names the new one as systemd's main process (MAINPID=),
 * drains its own workers and exits. A new supervisor that fails, or dies within the probation,
 * is stopped, and the old one serves on.
 *
 * The sockets are found in /proc/self/fd: those systemd passed (kept in their order, with
 * their names) and those cluster bound for the workers' listen() (named by their address).
 * A unix socket cluster bound is refused: cluster unlinks its file when the old workers stop,
 * while the new supervisor still serves on it. Socket activation (a `.socket` unit) owns such
 * files, and the supervisor then only holds the fd.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  ownListeningSockets,
  PROBATION_MS,
  reloadingFields,
  spawnSuccessor,
  successorCommand,
  writePidFile,
  type BoundAddress,
  type HandoffListener,
  type InheritedFd,
  type Logger,
  type ServiceNotifier,
} from '@grace-restart/core';
import type { Supervisor } from './supervisor.js';

/** The outcome `grace-restart upgrade --supervisor` prints. */
export interface SupervisorHandoverOutcome {
  ok: boolean;
  oldPid: number;
  /** The new supervisor, when one got ready. */
  newPid?: number;
  /** Generation of the new supervisor's workers (or of the old ones, still serving). */
  generation: number;
  durationMs: number;
  error?: string;
}

/**
 * What the old supervisor hands over: the sockets systemd passed, then those cluster bound;
 * or why it cannot (a unix socket cluster bound).
 */
export function socketsToHandOver(
  inherited: readonly InheritedFd[],
  controlSocket: string,
): { listeners: HandoffListener[] } | { refusal: string } {
  const held = ownListeningSockets();
  const fromSystemd = new Set(inherited.map((l) => l.fd));
  const listeners: HandoffListener[] = inherited.filter((l) => held.has(l.fd)).map((l) => ({ fd: l.fd, name: l.name }));
  for (const [fd, address] of [...held].sort(([a], [b]) => a - b)) {
    if (fromSystemd.has(fd) || (address.kind === 'unix' && address.path === controlSocket)) continue;
    if (address.kind === 'unix') {
      return {
        refusal: `the workers listen on the unix socket ${boundPath(address.path)}, which cluster bound and unlinks when the old workers stop: give it to the supervisor by socket activation (a .socket unit) to upgrade the supervisor`,
      };
    }
    listeners.push({ fd, name: boundName(address) });
  }
  return { listeners };
}

/**
 * The absolute path of a unix socket this process bound. cluster's primary binds a worker's
 * unix socket by the shorter of its absolute path and the path relative to the primary's
 * directory (sun_path holds ~100 bytes), and /proc/net/unix shows what bind() was given; this
 * process's directory is the one cluster used. Abstract sockets (`@name`) are left as they are.
 */
function boundPath(path: string): string {
  return path.startsWith('@') ? path : resolve(path);
}

/** `tcp/127.0.0.1/3000`: core's address name, from where the socket is bound (the new workers still match it by address). */
function boundName(address: Extract<BoundAddress, { kind: 'tcp' }>): string {
  return `tcp/${encodeURIComponent(address.address)}/${address.port}`;
}

export interface HandOverOptions {
  listeners: readonly HandoffListener[];
  startDir: string;
  /** Generation of the workers serving now; the new supervisor's are the next. */
  generation: number;
  readyTimeout: number;
  killTimeout: number;
  /** Environment the new supervisor needs besides the handoff's (systemd's NOTIFY_SOCKET). */
  env: Readonly<Record<string, string>> | undefined;
  signal: AbortSignal;
}

/**
 * Starts the new supervisor and resolves with its pid once it has served through its
 * probation; rejects (the new one stopped) if it fails to start, is not ready in time, dies
 * within the probation, or `signal` aborts.
 */
export async function startNewSupervisor(options: HandOverOptions): Promise<number> {
  const successor = await spawnSuccessor({
    command: successorCommand(options.startDir),
    listeners: options.listeners,
    generation: options.generation,
    readyTimeout: options.readyTimeout,
    killTimeout: options.killTimeout,
    startedAt: Date.now(),
    signal: options.signal,
    env: options.env,
  });
  const { child, pid } = successor;
  await new Promise<void>((resolve, reject) => {
    const onExit = (code: number | null, sig: NodeJS.Signals | null): void => {
      clearTimeout(timer);
      options.signal.removeEventListener('abort', onAbort);
      reject(new Error(`the new supervisor ${pid} exited (${sig ?? `exit code ${code}`}) within ${PROBATION_MS} ms of its ready report`));
    };
    const onAbort = (): void => {
      clearTimeout(timer);
      child.removeListener('exit', onExit);
      child.kill('SIGTERM');
      reject(new Error('the supervisor upgrade was aborted: this supervisor is stopping'));
    };
    const timer = setTimeout(() => {
      child.removeListener('exit', onExit);
      options.signal.removeEventListener('abort', onAbort);
      resolve();
    }, PROBATION_MS);
    child.once('exit', onExit);
    options.signal.addEventListener('abort', onAbort, { once: true });
  });
  return pid;
}

/** What replacing this supervisor needs from the process around it. */
export interface SupervisorUpgraderDeps {
  supervisor: Supervisor;
  inherited: readonly InheritedFd[];
  controlSocket: string;
  startDir: string;
  readyTimeout: number;
  killTimeout: number;
  pidFile: string | undefined;
  logger: Logger;
  notifier: ServiceNotifier | undefined;
  /** The new supervisor serves: this one must drain its workers and exit, never to serve again. */
  retire: (newPid: number) => void;
}

/** Starts, joins or aborts the replacement of this supervisor. */
export interface SupervisorUpgrader {
  upgrade(trigger: string): Promise<SupervisorHandoverOutcome>;
  /** A stop arrived: a new supervisor still starting is stopped, this one stops as usual. */
  abort(): void;
}

export function createSupervisorUpgrader(deps: SupervisorUpgraderDeps): SupervisorUpgrader {
  let running: Promise<SupervisorHandoverOutcome> | undefined;
  let abort: AbortController | undefined;

  const handOver = async (trigger: string): Promise<SupervisorHandoverOutcome> => {
    const { supervisor, logger: log, notifier } = deps;
    const startedAt = Date.now();
    const outcome = (fields: Partial<SupervisorHandoverOutcome>): SupervisorHandoverOutcome => ({
      ok: false,
      oldPid: process.pid,
      generation: supervisor.generation,
      durationMs: Date.now() - startedAt,
      ...fields,
    });
    // A supervisor that has handed over is stopping: refuseHandover says so.
    const refusal = refuseHandover(supervisor, notifier);
    const sockets = refusal === undefined ? socketsToHandOver(deps.inherited, deps.controlSocket) : { refusal };
    if ('refusal' in sockets) {
      log.warn({ trigger }, `not upgrading the supervisor: ${sockets.refusal}`);
      return outcome({ error: sockets.refusal });
    }
    supervisor.holdUpgrades('the supervisor itself is being upgraded');
    abort = new AbortController();
    log.info(
      { trigger, generation: supervisor.generation },
      'supervisor upgrade started: starting a new supervisor with the listening sockets',
    );
    notifier?.send(reloadingFields('upgrading the supervisor'));
    try {
      const newPid = await startNewSupervisor({
        ...deps,
        listeners: sockets.listeners,
        generation: supervisor.generation,
        env: notifier?.env,
        signal: abort.signal,
      });
      // systemd follows the new supervisor before this one's exit can end the unit.
      notifier?.stopWatchdog();
      notifier?.send([`MAINPID=${newPid}`, 'READY=1', `STATUS=supervisor ${newPid} serving generation ${supervisor.generation + 1}`]);
      const done = outcome({ ok: true, newPid, generation: supervisor.generation + 1 });
      log.info({ ...done }, 'supervisor upgrade done: the new supervisor serves, this one drains its workers and exits');
      deps.retire(newPid);
      return done;
    } catch (error) {
      supervisor.releaseUpgrades();
      // The new supervisor may have written the PID file before it failed: it names this one again.
      if (deps.pidFile !== undefined && supervisor.state === 'running') writePidFile(deps.pidFile);
      const failed = outcome({ error: (error as Error).message });
      log.error({ ...failed }, `supervisor upgrade failed, this supervisor serves on: ${failed.error}`);
      notifier?.send(['READY=1', `STATUS=supervisor upgrade failed, still serving generation ${supervisor.generation}: ${failed.error}`]);
      return failed;
    } finally {
      abort = undefined;
    }
  };

  return {
    upgrade(trigger) {
      running ??= handOver(trigger).finally(() => (running = undefined));
      return running;
    },
    abort() {
      abort?.abort();
    },
  };
}

/** The parent's command name (`/proc/<ppid>/comm`), where there is a /proc. */
function parentName(): string | undefined {
  try {
    return readFileSync(`/proc/${process.ppid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** Container inits that exit, ending the container, when their one child exits. */
const CONTAINER_INITS = new Set(['tini', 'docker-init', 'dumb-init', 'catatonit']);

/** Why this supervisor cannot be replaced now, if it cannot. */
function refuseHandover(supervisor: Supervisor, notifier: ServiceNotifier | undefined): string | undefined {
  if (supervisor.state !== 'running') return `the supervisor is ${supervisor.state}`;
  if (supervisor.upgrading) return 'a rolling upgrade of the workers is running: upgrade the supervisor once it is done';
  if (process.pid === 1)
    return "this supervisor is PID 1 (a container's init): its exit would end the container; replace the container instead";
  const parent = parentName();
  if (parent !== undefined && CONTAINER_INITS.has(parent))
    return `this supervisor's parent is ${parent}, a container's init, which ends the container when the supervisor exits; replace the container instead`;
  // Started by systemd itself: without NOTIFY_SOCKET, systemd cannot be told the new main pid.
  if (process.env['INVOCATION_ID'] !== undefined && (process.ppid === 1 || parent === 'systemd') && notifier === undefined) {
    return 'under systemd the supervisor can be upgraded only in a Type=notify unit with NotifyAccess=all: in this unit systemd would stop the service when the old supervisor exits';
  }
  return undefined;
}
