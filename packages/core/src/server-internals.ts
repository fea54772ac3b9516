/**
 * The only two places grace-restart depends on Node's internals or libuv's behaviour.
 * Both are covered by test/server-internals.test.mjs so a Node release that changes them
 * fails loudly here instead of silently breaking upgrades.
 */
import { mkdtempSync, rmdirSync } from 'node:fs';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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
 * Stops `server` accepting without removing its unix socket file.
 *
 * libuv unlinks the path a pipe was bound to when its handle closes (uv__pipe_close), even
 * though a successor still listens on the same socket, which would make the address vanish
 * after every upgrade. We bind unix sockets with a path relative to the working directory
 * (see `bindPath`) and close from inside an empty directory, so that unlink misses.
 * `process.chdir` is synchronous and the close is too, so no other code runs in between.
 */
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
