/**
 * The only places grace-restart depends on Node's internals or libuv's behaviour.
 * Both are covered by test/server-internals.test.mjs so a Node release that changes them
 * fails loudly here instead of silently breaking upgrades.
 */
import { mkdtempSync, rmdirSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { Server as NetServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';

/**
 * Returns the fd of a listening server's socket, to pass it to a successor.
 *
 * Node has no public API for this: `server._handle` is the libuv TCP/Pipe wrap and its `fd`
 * getter is the only way to reach the descriptor (the same one `cluster` relies on).
 */
export function listeningFd(server: Server): number {
  const handle = (server as unknown as { _handle?: { fd?: unknown } | null })._handle;
  const fd = handle?.fd;
  if (typeof fd !== 'number' || fd < 0) {
    throw new Error('cannot read the fd of this server: it is not listening, or this platform does not expose fds');
  }
  return fd;
}

/**
 * Binds `server` to the unix socket `path` so that libuv will never unlink the file itself.
 *
 * libuv unlinks the path a pipe was bound to when its handle closes (uv__pipe_close), even
 * when a successor still listens on the same socket: the address would vanish after every
 * upgrade. So we bind by basename from inside the socket's directory; every later close
 * runs from an empty directory (see {@link closeKeepingSocketFile}), where that unlink
 * misses, and the final stop removes the file by its real path. `process.chdir` and the
 * bind are synchronous, so no other code runs while the directory is changed.
 */
export function bindUnixSocket(server: Server, options: object & { path: string }): void {
  const previous = process.cwd();
  try {
    process.chdir(dirname(resolve(options.path)));
    NetServer.prototype.listen.call(server, { ...options, path: basename(options.path) });
  } finally {
    process.chdir(previous);
  }
}

/** Runs `close` (which closes a server bound by {@link bindUnixSocket}) from an empty directory. */
export function closeKeepingSocketFile(close: () => void): void {
  const previous = process.cwd();
  const empty = mkdtempSync(join(tmpdir(), 'grace-restart-'));
  try {
    process.chdir(empty);
    close();
  } finally {
    process.chdir(previous);
    rmdirSync(empty);
  }
}

/**
 * The HTTP/1 response a socket is writing right now, if any.
 *
 * Node attaches it as `socket._httpMessage` (ServerResponse.assignSocket) and detaches it
 * once the response is finished. Reading it at drain time spares every request of a
 * listener of ours in steady state: the adapter's overhead would otherwise be measurable.
 */
export function pendingResponse(socket: Socket): ServerResponse | undefined {
  const res = (socket as unknown as { _httpMessage?: ServerResponse | null })._httpMessage;
  return res ?? undefined;
}
