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
import type { Logger } from '@grace-restart/core';
import {
  awaitReady,
  type BootPriority,
  ownListeningSockets,
  PROBATION_MS,
  spawnSuccessor,
  successorCommand,
  type BoundAddress,
  type HandoffListener,
  type InheritedFd,
} from '@grace-restart/core/internal';
import type { SupervisorService } from './supervisor-service.js';

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
  bootPriority?: BootPriority | undefined;
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
    bootPriority: options.bootPriority,
  });
  const { child, pid } = successor;
  // The probation: surviving PROBATION_MS is passing it; there is no ready report to wait for.
  const race = await awaitReady(child, { timeout: PROBATION_MS, signal: options.signal });
  switch (race.kind) {
    case 'timeout':
      break;
    case 'exited':
      throw new Error(
        `the new supervisor ${pid} exited (${race.signal ?? `exit code ${race.code}`}) within ${PROBATION_MS} ms of its ready report`,
      );
    case 'error':
      child.kill('SIGTERM');
      throw new Error(`the new supervisor ${pid} failed within ${PROBATION_MS} ms of its ready report: ${race.error.message}`);
    case 'aborted':
      child.kill('SIGTERM');
      throw new Error('the supervisor upgrade was aborted: this supervisor is stopping');
    case 'ready':
      throw new Error('a probation has no ready report');
    default: {
      const unknown: never = race;
      throw new Error(`no answer for ${String(unknown)}`);
    }
  }
  return pid;
}

/** What replacing this supervisor needs from the process around it. */
export interface SupervisorHandoverDeps {
  inherited: readonly InheritedFd[];
  controlSocket: string;
  startDir: string;
  readyTimeout: number;
  killTimeout: number;
  /** The new supervisor boots niced while this one's workers serve (issue #29); it returns before it starts its own. */
  bootPriority?: BootPriority;
  logger: Logger;
  service: SupervisorService;
}

/** How one supervisor upgrade ended, and whether a new supervisor was started at all. */
export interface HandoverResult {
  outcome: SupervisorHandoverOutcome;
  /** False when it was refused before anything started (nothing to undo, nothing to report). */
  started: boolean;
}

/**
 * Replaces this supervisor: `run` starts a new one and resolves once it serves, or with why
 * not. Whether a handover may start at all, and what follows its outcome, is the supervisor's
 * lifecycle table's (supervisor-lifecycle.ts); this checks only what the process around it
 * forbids (a container's init, a systemd unit without NOTIFY_SOCKET, a cluster-bound unix socket).
 */
export interface SupervisorHandover {
  run(trigger: string, generation: number, signal: AbortSignal): Promise<HandoverResult>;
}

export function createSupervisorHandover(deps: SupervisorHandoverDeps): SupervisorHandover {
  const { logger: log, service } = deps;
  return {
    async run(trigger, generation, signal) {
      const startedAt = Date.now();
      const outcome = (fields: Partial<SupervisorHandoverOutcome>): SupervisorHandoverOutcome => ({
        ok: false,
        oldPid: process.pid,
        generation,
        durationMs: Date.now() - startedAt,
        ...fields,
      });
      const refusal = refuseHandover(service);
      const sockets = refusal === undefined ? socketsToHandOver(deps.inherited, deps.controlSocket) : { refusal };
      if ('refusal' in sockets) {
        log.warn({ trigger }, `not upgrading the supervisor: ${sockets.refusal}`);
        return { outcome: outcome({ error: sockets.refusal }), started: false };
      }
      log.info({ trigger, generation }, 'supervisor upgrade started: starting a new supervisor with the listening sockets');
      service.supervisorUpgradeStarted();
      try {
        const newPid = await startNewSupervisor({ ...deps, listeners: sockets.listeners, generation, env: service.env, signal });
        return { outcome: outcome({ ok: true, newPid, generation: generation + 1 }), started: true };
      } catch (error) {
        const failed = outcome({ error: (error as Error).message });
        log.error({ ...failed }, `supervisor upgrade failed, this supervisor serves on: ${failed.error}`);
        return { outcome: failed, started: true };
      }
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

/** Why the process around this supervisor forbids replacing it, if it does. */
function refuseHandover(service: SupervisorService): string | undefined {
  if (process.pid === 1)
    return "this supervisor is PID 1 (a container's init): its exit would end the container; replace the container instead";
  const parent = parentName();
  if (parent !== undefined && CONTAINER_INITS.has(parent))
    return `this supervisor's parent is ${parent}, a container's init, which ends the container when the supervisor exits; replace the container instead`;
  // Started by systemd itself: without NOTIFY_SOCKET, systemd cannot be told the new main pid.
  if (process.env['INVOCATION_ID'] !== undefined && (process.ppid === 1 || parent === 'systemd') && !service.listening) {
    return 'under systemd the supervisor can be upgraded only in a Type=notify unit with NotifyAccess=all: in this unit systemd would stop the service when the old supervisor exits';
  }
  return undefined;
}
