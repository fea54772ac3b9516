/**
 * `grace-restart run --listen [HOST:]PORT` (issue #28): the supervisor binds the app's sockets
 * itself and passes them to every worker as systemd's socket activation does (LISTEN_FDS), so
 * they outlive any worker. Without it cluster binds a socket at the first worker's listen()
 * and closes it with the last worker: a release whose every worker crashes refuses connects
 * until a new worker binds it again (1 574 refused in the bad-release matrix). Held by the
 * supervisor, the socket stays in LISTEN and those connects wait in its backlog.
 */
import { isIP } from 'node:net';
import { getSystemErrorName } from 'node:util';
import type { Logger } from '@grace-restart/core';
import {
  addressName,
  type BoundTcpSocket,
  bindWithoutListening,
  type InheritedFd,
  ownListeningSockets,
} from '@grace-restart/core/internal';
import { usageError } from './cli-errors.js';

/** One `--listen` value: where the app listens, as its `listen(port, host)` says it. */
export interface ListenSpec {
  /** An IP address; undefined: every address, as `listen(port)`. */
  host: string | undefined;
  port: number;
}

/** `3000`, `127.0.0.1:3000`, `[::1]:3000`. Host names are refused: a bind needs an address, and the app's `listen()` must name the same. */
export function parseListenFlag(value: string): ListenSpec {
  const match = /^(?:\[([^\]]+)\]:|([^:[\]]+):)?([0-9]{1,5})$/.exec(value);
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (match === null || port < 1 || port > 65535 || (host !== undefined && isIP(host) === 0)) {
    throw usageError(
      `--listen must be PORT, IPV4:PORT or [IPV6]:PORT with a port from 1 to 65535 (the address the app listens on), got "${value}"`,
    );
  }
  return { host, port };
}

/** What `--listen` gave: the sockets for the workers (as inherited fds), and a check that the workers listen on them. */
export interface HeldListeners {
  fds: InheritedFd[];
  /** After the first workers are ready: why a held socket is not listened on (the app listens elsewhere), or undefined. */
  unserved(): string | undefined;
}

/**
 * Binds each spec. Named as the app's `listen()` names its address (core's `addressName`), so
 * a worker claims the socket by name; a later worker also finds it by address. Undefined when
 * this Node cannot bind without listening: cluster binds, as without `--listen` (logged).
 */
export function holdListeners(specs: readonly ListenSpec[], logger: Logger): HeldListeners | undefined {
  const held: { spec: ListenSpec; socket: BoundTcpSocket }[] = [];
  for (const spec of specs) {
    const socket = bindWithoutListening(spec.host, spec.port);
    if (socket === undefined) {
      for (const h of held) h.socket.close();
      logger.warn({}, '--listen: this Node cannot bind a socket without accepting on it; cluster binds the workers’ sockets instead');
      return undefined;
    }
    if (typeof socket === 'number') {
      for (const h of held) h.socket.close();
      throw usageError(`--listen ${describe(spec)}: cannot bind: ${getSystemErrorName(socket)}`);
    }
    held.push({ spec, socket });
  }
  const fds = held.map(({ spec, socket }) => ({ fd: socket.fd, name: addressName(spec) }));
  logger.info({ listeners: fds }, '--listen: the supervisor holds the sockets; every worker serves on them');
  return {
    fds,
    unserved: () => {
      const listening = ownListeningSockets();
      const idle = held.filter(({ socket }) => !listening.has(socket.fd)).map(({ spec }) => describe(spec));
      if (idle.length === 0) return undefined;
      return `--listen ${idle.join(', ')}: no worker listens there, so connects to it would wait unanswered; the app must listen on the same address (listen(${idle.length === 1 ? 'port, host' : '…'}) as given to --listen)`;
    },
  };
}

function describe({ host, port }: ListenSpec): string {
  if (host === undefined) return String(port);
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}
