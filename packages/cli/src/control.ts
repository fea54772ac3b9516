/**
 * The supervisor's control channel: a unix socket in a private directory (mode 0700, owned
 * by us), the socket itself mode 0600 — never a TCP port. One JSON request line, one JSON
 * response line.
 */
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type ControlRequest = { cmd: 'status' } | { cmd: 'upgrade' };

/** The directory holding control sockets, checked to be ours and private. */
export function controlDirectory(dir: string = join(tmpdir(), `grace-restart-${process.getuid?.() ?? 'user'}`)): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const stat = lstatSync(dir);
  const uid = process.getuid?.();
  if (!stat.isDirectory() || (uid !== undefined && stat.uid !== uid) || (stat.mode & 0o077) !== 0) {
    throw new Error(`control directory ${dir} must be a directory owned by this user with mode 0700 (refusing to use it)`);
  }
  return dir;
}

export function controlSocketPath(pid: number, dir?: string): string {
  return join(controlDirectory(dir), `${pid}.sock`);
}

/** Serves control requests; `handle` returns the response object. */
export async function serveControl(path: string, handle: (request: ControlRequest) => Promise<object>): Promise<Server> {
  try {
    unlinkSync(path); // a stale socket of a dead supervisor with our pid
  } catch {
    // none
  }
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
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  chmodSync(path, 0o600);
  server.unref();
  return server;
}

function parseRequest(line: string): ControlRequest | undefined {
  try {
    const value = JSON.parse(line) as { cmd?: unknown };
    if (value.cmd === 'status' || value.cmd === 'upgrade') return { cmd: value.cmd };
  } catch {
    // not JSON
  }
  return undefined;
}

/** Sends one request and resolves with the parsed response. */
export function sendControl(path: string, request: ControlRequest, timeoutMs: number): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    let buffered = '';
    const timer = setTimeout(() => socket.destroy(new Error(`no answer from the supervisor within ${timeoutMs} ms`)), timeoutMs);
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
        reject(new Error('the supervisor sent an invalid answer'));
      }
    });
  });
}
