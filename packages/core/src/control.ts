/**
 * The control channel of a grace-restart process, the same for a self-upgrading app and for
 * the `grace-restart run` supervisor: `grace-restart upgrade` and `status` talk to it.
 *
 * A unix socket `<pid>.sock` in a private directory (mode 0700, owned by us), the socket
 * itself created with mode 0600 (bound under a restrictive umask, so there is no window in
 * which it has the umask's mode) — never a TCP port. One JSON request line, one JSON
 * response line. The socket file is removed when the process exits.
 */
import { lstatSync, mkdirSync, readdirSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { processRuns } from './process-runs.js';

/**
 * A request on the control socket. `upgrade-supervisor` replaces a `grace-restart run`
 * supervisor process itself (its workers with it); a self-upgrading process refuses it.
 */
export type ControlRequest =
  | { cmd: 'status' }
  | { cmd: 'upgrade' }
  | { cmd: 'upgrade-supervisor' }
  /** From the predecessor of a self-upgrading successor: its canary failed (`reason`), stop. */
  | { cmd: 'canary-failed'; reason: string };

/** The default control directory: `$TMPDIR/grace-restart-<uid>`. */
export function defaultControlDirectory(): string {
  return join(tmpdir(), `grace-restart-${process.getuid?.() ?? 'user'}`);
}

/** The directory holding control sockets, created if needed and checked to be ours and private. */
export function controlDirectory(dir: string = defaultControlDirectory()): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const stat = lstatSync(dir);
  const uid = process.getuid?.();
  if (!stat.isDirectory() || (uid !== undefined && stat.uid !== uid) || (stat.mode & 0o077) !== 0) {
    throw new Error(`control directory ${dir} must be a directory owned by this user with mode 0700 (refusing to use it)`);
  }
  return dir;
}

/** Where the control socket of process `pid` is. */
export function controlSocketPath(pid: number, dir?: string): string {
  return join(controlDirectory(dir), `${pid}.sock`);
}

/** Where the control socket of process `pid` in `dir` would be, without creating or checking the directory. */
export function controlSocketFile(pid: number, dir: string = defaultControlDirectory()): string {
  return join(dir, `${pid}.sock`);
}

/** A control socket being served. */
export interface ControlServer {
  /** Stops serving and removes the socket file. */
  close(): void;
}

/** The answer to an upgrade request, from a supervisor (one row per slot) or a self-upgrading process (one row). */
export interface UpgradeOutcome {
  ok: boolean;
  trigger: string;
  /** The generation serving now: the new one when `ok`, the old one after a rollback. */
  generation: number;
  durationMs: number;
  replaced: { slot: number; oldPid: number | undefined; newPid: number; readyMs: number }[];
  /** Why the upgrade failed, when it did. */
  error?: string;
  /** The upgrade was cut short because the service is stopping: its failure is the stop's, not the release's. */
  aborted?: boolean;
  /** A self-upgrading process: how long it watched its successor after the ready report (ms) before answering. */
  probationMs?: number;
}

/**
 * Serves control requests on `path`; `handle` returns the response object. The server does
 * not keep the process alive. Its file is removed by `close()` and, at the latest, when the
 * process exits.
 */
export async function serveControl(path: string, handle: (request: ControlRequest) => Promise<object>): Promise<ControlServer> {
  try {
    unlinkSync(path); // a stale socket left by a dead process that had our pid
  } catch {
    // none
  }
  removeDeadSockets(dirname(path));
  const server = createServer((socket) => {
    let buffered = '';
    socket.setEncoding('utf8');
    socket.on('error', () => undefined);
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      const end = buffered.indexOf('\n');
      if (end === -1) {
        if (buffered.length > 4096) socket.destroy();
        return;
      }
      const request = parseRequest(buffered.slice(0, end));
      const reply = request === undefined ? Promise.resolve({ ok: false, error: 'unknown request' }) : handle(request);
      reply
        .catch((error: unknown) => ({ ok: false, error: String(error) }))
        .then((response) => socket.end(`${JSON.stringify(response)}\n`));
    });
  });
  await listenPrivately(server, path);
  server.unref();
  let removed = false;
  const remove = (): void => {
    if (removed) return;
    removed = true;
    try {
      unlinkSync(path);
    } catch {
      // already gone
    }
  };
  process.once('exit', remove);
  return {
    close: () => {
      process.removeListener('exit', remove);
      server.close();
      remove();
    },
  };
}

/**
 * Binds `path` with mode 0600 from the first instant: libuv binds synchronously inside
 * `listen()`, so a umask set around that call alone decides the file's mode.
 */
function listenPrivately(server: Server, path: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.once('listening', () => {
      server.removeListener('error', reject);
      resolve();
    });
    const previous = process.umask(0o177);
    try {
      server.listen(path);
    } finally {
      process.umask(previous);
    }
  });
}

function parseRequest(line: string): ControlRequest | undefined {
  try {
    const value = JSON.parse(line) as { cmd?: unknown; reason?: unknown };
    if (value.cmd === 'status' || value.cmd === 'upgrade' || value.cmd === 'upgrade-supervisor') return { cmd: value.cmd };
    if (value.cmd === 'canary-failed') return { cmd: value.cmd, reason: String(value.reason).slice(0, 1_000) };
  } catch {
    // not JSON
  }
  return undefined;
}

/**
 * Removes the sockets of processes that are gone: a SIGKILLed process leaves its `<pid>.sock`
 * behind, and `grace-restart status` would list it until its pid is reused. A socket counts as
 * dead only when its pid does not run here and a connect to it is refused: a directory shared
 * across pid namespaces (a bind-mounted /tmp) may hold the live socket of a pid this process
 * cannot see. Best effort, in the background: the directory is this user's (0700, checked).
 */
function removeDeadSockets(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const pid = /^([1-9][0-9]{0,9})\.sock$/.exec(name)?.[1];
    if (pid === undefined || processRuns(Number(pid))) continue;
    const path = join(dir, name);
    const probe = createConnection(path);
    probe.unref();
    probe.on('connect', () => probe.destroy());
    probe.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'ECONNREFUSED') return;
      try {
        if (lstatSync(path).isSocket()) unlinkSync(path);
      } catch {
        // gone meanwhile
      }
    });
  }
}

/** Sends one request and resolves with the parsed response. */
export function sendControl(path: string, request: ControlRequest, timeoutMs: number): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    let buffered = '';
    const timer = setTimeout(() => socket.destroy(new Error(`no answer on the control socket within ${timeoutMs} ms`)), timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify(request)}\n`));
    socket.on('data', (chunk: string) => (buffered += chunk));
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(buffered) as Record<string, unknown>);
      } catch {
        reject(new Error('invalid answer on the control socket'));
      }
    });
  });
}
