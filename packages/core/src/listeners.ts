/**
 * The listeners of one process: claiming inherited sockets, binding fresh ones, and
 * stopping them at drain time.
 */
import cluster from 'node:cluster';
import { closeSync, lstatSync, unlinkSync } from 'node:fs';
import { Server as NetServer, type Server } from 'node:net';
import { resolve } from 'node:path';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { addressName, describeAddress, describeBound, matchesBoundAddress, type ListenOptions } from './address.js';
import { ConnectionTracker } from './drain.js';
import { GraceError } from './errors.js';
import type { HandoffListener } from './handoff.js';
import type { InheritedFd } from './listen-fds.js';
import type { Logger } from './logger.js';
import { bindUnixSocket, closeKeepingSocketFile, listenOnInheritedFd, listeningFd } from './server-internals.js';
import { listeningAddresses, type BoundAddress } from './socket-address.js';

interface Listener {
  server: Server;
  name: string;
  options: ListenOptions;
  tracker: ConnectionTracker;
  /** Absolute path of a unix socket listener, removed at the final stop. */
  socketPath: string | undefined;
  /** The TCP port actually bound (differs from options.port when that is 0). */
  port: number | undefined;
  /**
   * A socket systemd created (claimed by address or by an `fdName`): it keeps systemd's
   * name through upgrades, and its socket file is systemd's to remove, never ours.
   */
  external: boolean;
}

/** An inherited fd taken by a listen(), and how it was matched (for logs and errors). */
type Claimed = InheritedFd & { how: string; external: boolean };

export class ListenerSet {
  readonly #inherited: InheritedFd[];
  readonly #listeners: Listener[] = [];
  readonly #logger: Logger;
  /** Where each inherited fd listens, read once when a listen() first matches no name. */
  #addresses: Map<number, BoundAddress> | undefined;
  #pending = 0;

  constructor(inherited: readonly InheritedFd[], logger: Logger) {
    this.#inherited = [...inherited];
    this.#logger = logger;
  }

  /** Listens pending right now. */
  get pending(): number {
    return this.#pending;
  }

  get trackers(): ConnectionTracker[] {
    return this.#listeners.map((l) => l.tracker);
  }

  /** Whether `server` is one of this set's (no array built: asked once per request by the answer counts). */
  serves(server: Server): boolean {
    return this.#listeners.some((l) => l.server === server);
  }

  get servers(): Server[] {
    return this.#listeners.map((l) => l.server);
  }

  /** Names of the listeners that listen now (what a successor adopts moved connections for). */
  get listeningNames(): string[] {
    return this.#listeners.filter((l) => l.server.listening).map((l) => l.name);
  }

  /**
   * The server of the listener called `name`, to adopt a moved connection into; also once it
   * stopped accepting (a stop racing the move): the adopted socket then drains like the rest.
   */
  serverNamed(name: string): Server | undefined {
    return this.#listeners.find((l) => l.name === name)?.server;
  }

  /** Every listener with its name and tracker, for moving its connections. */
  get named(): { name: string; tracker: ConnectionTracker }[] {
    return this.#listeners.map((l) => ({ name: l.name, tracker: l.tracker }));
  }

  /** The inherited fds still waiting for their `listen()`. */
  get inheritedFds(): number[] {
    return this.#inherited.map((l) => l.fd);
  }

  /** Whether any inherited fd is still waiting for its `listen()`. */
  get hasUnclaimed(): boolean {
    return this.#inherited.length > 0;
  }

  /**
   * Listens on the inherited socket named like `options` (or `options.fdName`), else on the
   * inherited socket bound where `options` asks (systemd's, whose names the app never
   * chose), else on a freshly bound one.
   */
  async listen(server: Server, options: ListenOptions): Promise<void> {
    const name = options.fdName ?? addressName(options);
    // Counted from the start: auto-ready must wait while a host name resolves.
    this.#pending += 1;
    try {
      const inherited = await this.#claim(name, options);
      await this.#listenOn(server, options, inherited?.name ?? name, inherited);
    } finally {
      this.#pending -= 1;
    }
  }

  /** Takes the inherited fd for `options` out of the unclaimed list: by name, then by address. */
  async #claim(name: string, options: ListenOptions): Promise<Claimed | undefined> {
    const exact = this.#inherited.findIndex((fd) => fd.name === name);
    // A repeated systemd name was made unique (`web#2`, listen-fds.ts): it still answers to `web`.
    const byName =
      exact !== -1
        ? exact
        : this.#inherited.findIndex((fd) => fd.name.startsWith(`${name}#`) && /^[0-9]+$/.test(fd.name.slice(name.length + 1)));
    if (byName !== -1) return { ...this.#take(byName), how: `(${name})`, external: options.fdName !== undefined };
    if (this.#inherited.length === 0 || options.fdName !== undefined) return undefined;
    const host = await resolveHost(options);
    this.#addresses ??= listeningAddresses(this.#inherited.map((fd) => fd.fd));
    const addresses = this.#addresses;
    const byAddress = this.#inherited.findIndex((fd) => {
      const bound = addresses.get(fd.fd);
      return bound !== undefined && matchesBoundAddress(options, bound, host);
    });
    if (byAddress === -1) {
      const unmatched = this.#inherited.map((fd) => ({ fd: fd.fd, name: fd.name, boundTo: describeBoundFd(addresses, fd.fd) }));
      this.#logger.debug(
        { address: describeAddress(options), inherited: unmatched },
        'no inherited socket matches this listen(): binding a fresh one',
      );
      return undefined;
    }
    const fd = this.#take(byAddress);
    return { ...fd, how: `(${fd.name}, bound to ${describeBoundFd(addresses, fd.fd)})`, external: true };
  }

  #take(index: number): InheritedFd {
    return this.#inherited.splice(index, 1)[0] as InheritedFd;
  }

  async #listenOn(server: Server, options: ListenOptions, name: string, inherited: Claimed | undefined): Promise<void> {
    const { fdName: _fdName, ...listenOptions } = options;
    const socketPath = options.path === undefined ? undefined : resolve(options.path);
    let start: () => void;
    let description = describeAddress(options);
    if (inherited !== undefined) {
      const { fd } = inherited;
      description = `inherited fd ${fd} ${inherited.how}`;
      // The prototype's listen (the instance's may be Grace.adopt's, which calls back here), and
      // in this process even in a supervisor's worker, whose fd this is (server-internals.ts).
      start = () => listenOnInheritedFd(server, fd, options.backlog, cluster.isWorker);
    } else if (options.path !== undefined) {
      const path = options.path;
      start = () => bindUnixSocket(server, { ...listenOptions, path });
    } else {
      start = () => NetServer.prototype.listen.call(server, listenOptions);
    }

    // Registered before listening, so the app's 'listening' callbacks already see it.
    const tracker = new ConnectionTracker(server);
    const listener: Listener = { server, name, options, tracker, socketPath, port: undefined, external: inherited?.external ?? false };
    this.#listeners.push(listener);
    try {
      await listenOnce(server, start, description);
    } catch (error) {
      this.#listeners.splice(this.#listeners.indexOf(listener), 1);
      listener.tracker.dispose();
      throw error;
    }
    const address = server.address();
    if (address !== null && typeof address === 'object') listener.port = address.port;
    this.#logger.debug(
      { address: describeAddress(options), name, inherited: inherited && `fd ${inherited.fd} ${inherited.how}` },
      'listening',
    );
  }

  /** Closes inherited fds that no `listen()` claimed, so none leaks. */
  closeUnclaimed(): void {
    for (const { fd, name } of this.#inherited.splice(0)) {
      this.#logger.warn({ fd, name }, 'closing an inherited listener that this version does not listen on');
      try {
        closeSync(fd);
      } catch (error) {
        this.#logger.warn({ fd, err: String(error) }, 'could not close an inherited fd');
      }
    }
  }

  /** The listening sockets to pass to a successor, in a stable order. */
  handoffList(): HandoffListener[] {
    return this.#listeners.filter((l) => l.server.listening).map((l) => ({ fd: listeningFd(l.server), name: l.name }));
  }

  /**
   * Stops accepting on every server. Uses net.Server's close rather than http.Server's,
   * which would also close idle keep-alive sockets at once (see drain.ts). With
   * `handoff`, unix socket files are kept for the successor.
   */
  stopAccepting(_handoff: boolean): void {
    for (const listener of this.#listeners) {
      const { server } = listener;
      if (!server.listening) continue;
      const close = (): void => {
        NetServer.prototype.close.call(server);
      };
      // libuv unlinks a socket file on close: only we decide when it goes (release()).
      if (listener.socketPath !== undefined) closeKeepingSocketFile(close);
      else close();
    }
  }

  /**
   * Binds every listener again, on the same address (and the same port when it was 0),
   * after the successor that held the sockets died. Rejects if an address cannot be bound.
   */
  async relisten(): Promise<void> {
    for (const listener of this.#listeners) {
      const { server, options, socketPath, port } = listener;
      if (server.listening) continue;
      const { fdName: _fdName, ...listenOptions } = options;
      if (socketPath !== undefined) {
        removeSocketFile(socketPath);
        await listenOnce(server, () => bindUnixSocket(server, { ...listenOptions, path: socketPath }), describeAddress(options));
      } else {
        const target = { ...listenOptions, port: port ?? options.port };
        await listenOnce(server, () => NetServer.prototype.listen.call(server, target), describeAddress(target));
      }
      listener.tracker.stopDraining();
    }
  }

  /**
   * After a final stop: lets http servers release their timers, and removes the socket
   * files of unix listeners this process inherited (libuv removes only those it bound),
   * except systemd's: its socket unit still listens there and will activate the next start.
   */
  release(stopped: boolean): void {
    for (const { server, socketPath, external } of this.#listeners) {
      server.close(() => undefined);
      if (stopped && socketPath !== undefined && !external) removeSocketFile(socketPath);
    }
  }
}

/** `options.host` as an IP: a host name resolves as `server.listen()` would resolve it. */
async function resolveHost(options: ListenOptions): Promise<string | undefined> {
  const { host } = options;
  if (host === undefined || options.path !== undefined || isIP(host.replace(/^\[|\]$/g, '')) !== 0) return host;
  try {
    return (await lookup(host)).address;
  } catch {
    // Unresolvable: matches no socket, and the fresh bind below reports it as Node would.
    return host;
  }
}

function describeBoundFd(addresses: Map<number, BoundAddress>, fd: number): string {
  const bound = addresses.get(fd);
  return bound === undefined ? 'an unknown address' : describeBound(bound);
}

function removeSocketFile(path: string): void {
  try {
    if (lstatSync(path).isSocket()) unlinkSync(path);
  } catch {
    // already gone
  }
}

/** Listen errors that an 'error' listener of the app received from Node itself. */
export const appHeardListenError = new WeakSet<Error>();

function listenOnce(server: Server, start: () => void, description: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException): void => {
      server.removeListener('listening', onListening);
      const failure = new GraceError('GRACE_ERR_LISTEN', `cannot listen on ${description}: ${explain(error)}`, { cause: error });
      // Ours runs first and once: any 'error' listener still attached is the app's, and hears this very event.
      if (server.listenerCount('error') > 0) appHeardListenError.add(failure);
      reject(failure);
    };
    const onListening = (): void => {
      server.removeListener('error', onError);
      resolve();
    };
    server.prependOnceListener('error', onError);
    server.once('listening', onListening);
    try {
      start();
    } catch (error) {
      server.removeListener('error', onError);
      server.removeListener('listening', onListening);
      reject(
        new GraceError('GRACE_ERR_LISTEN', `cannot listen on ${description}: ${explain(error as NodeJS.ErrnoException)}`, { cause: error }),
      );
    }
  });
}

function explain(error: NodeJS.ErrnoException): string {
  switch (error.code) {
    case 'EADDRINUSE':
      return 'the address is already in use (EADDRINUSE): another process listens there';
    case 'EACCES':
      return 'permission denied (EACCES): ports below 1024 need privileges';
    case 'EADDRNOTAVAIL':
      return 'this host has no such address (EADDRNOTAVAIL)';
    default:
      return error.message;
  }
}
