/**
 * Which process `grace-restart upgrade` and `status` act on (--pid, --pid-file, or the one
 * that answers in the control directory), and how they ask it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { readPidFile } from '@grace-restart/core';
import { type ControlRequest, controlSocketPath, defaultControlDirectory, sendControl } from '@grace-restart/core/internal';
import { CliError, usageError } from '../cli-errors.js';
import { findRunning, pickRunning } from '../discover.js';
import { integer } from '../flags.js';

/** The flags every command that targets a process takes. */
export interface TargetFlags {
  'pid-file'?: string | undefined;
  pid?: string | undefined;
  'control-dir'?: string | undefined;
}

/** The pid the flags name, checked to be a running process. */
export async function targetPid(values: TargetFlags): Promise<number> {
  if (values.pid !== undefined && values['pid-file'] !== undefined) throw usageError('give --pid or --pid-file, not both');
  if (values.pid === undefined && values['pid-file'] === undefined) {
    const dir = values['control-dir'] ?? defaultControlDirectory();
    const picked = pickRunning(await findRunning(dir, (socket) => askControl(socket, { cmd: 'status' }, 2_000)), dir);
    if ('problem' in picked) throw new CliError('GRACE_ERR_NO_TARGET', picked.problem);
    return picked.pid;
  }
  const pid = values.pid !== undefined ? pidFromFlag(values.pid, values['control-dir']) : pidFromFile(values['pid-file'] as string);
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: it runs, as another user; signalling it needs that user (or root).
    if ((error as NodeJS.ErrnoException).code === 'EPERM')
      throw new CliError('GRACE_ERR_PERMISSION', `process ${pid} runs as another user: run this command as its user (or root)`);
    throw new CliError('GRACE_ERR_NO_PROCESS', `no process ${pid} is running (stale PID file?)`);
  }
  return pid;
}

function pidFromFlag(value: string, controlDir: string | undefined): number {
  const pid = integer(value, '--pid', 0, 2 ** 22);
  // 0 would signal our own process group, and we are not the target.
  if (pid < 1 || pid === process.pid) throw usageError(`--pid ${pid} cannot name a grace-restart process`);
  // PID 1 is the supervisor in a container (docs/operations.md), but the machine's init
  // elsewhere: never signalled, only asked on its control socket.
  const initSocket = pid === 1 ? controlSocketPath(1, controlDir) : undefined;
  if (initSocket !== undefined && !existsSync(initSocket)) {
    throw usageError(
      `--pid 1 has no grace-restart control socket (${initSocket}): it is this machine's or container's init, not a grace-restart process`,
    );
  }
  return pid;
}

function pidFromFile(path: string): number {
  const pid = readPidFile(path);
  if (pid === undefined) throw new CliError('GRACE_ERR_PID_FILE', `cannot read a pid from ${path}: missing, unreadable or not a pid`);
  return pid;
}

/**
 * SIGUSR2 kills a process that does not handle it. A stale PID file may name a stranger that
 * reused the pid: refuse unless the target catches SIGUSR2 (SigCgt in /proc, where there is one).
 */
export function assertCatchesSigusr2(pid: number): void {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return; // no /proc on this platform: nothing to check with
  }
  const caught = /^SigCgt:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  const bit = 1n << BigInt(constants.signals.SIGUSR2 - 1);
  if (caught !== undefined && (BigInt(`0x${caught}`) & bit) === 0n) {
    throw new CliError(
      'GRACE_ERR_NOT_GRACE',
      `process ${pid} does not handle SIGUSR2, so it is not a grace-restart process (stale PID file?); refusing to signal it`,
    );
  }
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
export async function askControl(path: string, request: ControlRequest, timeout: number): Promise<Record<string, unknown> | undefined> {
  if (!existsSync(path)) return undefined;
  try {
    return await sendControl(path, request, timeout);
  } catch (error) {
    if (NO_LISTENER.has((error as NodeJS.ErrnoException).code ?? '')) return undefined;
    throw error;
  }
}
