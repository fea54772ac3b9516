/**
 * The address an inherited listening socket is bound to, asked from the kernel.
 *
 * systemd hands sockets over by fd with names the app never chose (`app.socket`, or none),
 * so a listen() that matches no name is matched by where the socket actually listens.
 * Node has no public call that reads a socket's address without owning the fd: a
 * `net.Server` or `net.Socket` opened on it closes it when dropped, and unix sockets have
 * no getsockname at all in Node. So we ask Linux: the socket's inode (fstat) is listed with
 * its local address in /proc/self/net/{tcp,tcp6,unix}, for this network namespace. Socket
 * activation is a Linux (systemd) protocol; elsewhere, or when the socket is not listed,
 * the address is unknown and only names match, as before.
 */
import { fstatSync, readdirSync, readFileSync } from 'node:fs';
import { endianness } from 'node:os';

/** Where a listening socket is bound. */
export type BoundAddress = { kind: 'tcp'; family: 'IPv4' | 'IPv6'; address: string; port: number } | { kind: 'unix'; path: string };

/** TCP_LISTEN in /proc/net/tcp's `st` column. */
const TCP_LISTEN = '0A';
/** __SO_ACCEPTCON in /proc/net/unix's `Flags` column: the socket listens. */
const UNIX_ACCEPTCON = 0x10000;

/**
 * The bound address of each fd of `fds` that is a listening TCP or unix stream socket
 * listed in this process's network namespace. Never throws: unknown fds are left out.
 */
export function listeningAddresses(fds: readonly number[], procNet = '/proc/self/net'): Map<number, BoundAddress> {
  const inodes = new Map<number, number>();
  for (const fd of fds) {
    try {
      inodes.set(fstatSync(fd).ino, fd);
    } catch {
      // closed meanwhile: unknown
    }
  }
  const found = new Map<number, BoundAddress>();
  if (inodes.size === 0) return found;
  const tables: [string, (line: string) => [number, BoundAddress] | undefined][] = [
    ['tcp', (line) => parseTcpLine(line, 'IPv4')],
    ['tcp6', (line) => parseTcpLine(line, 'IPv6')],
    ['unix', parseUnixLine],
  ];
  for (const [file, parse] of tables) {
    for (const line of readTable(`${procNet}/${file}`)) {
      const entry = parse(line);
      const fd = entry && inodes.get(entry[0]);
      if (entry && fd !== undefined && !found.has(fd)) found.set(fd, entry[1]);
    }
  }
  return found;
}

/**
 * Every listening socket this process holds, by fd (from /proc/self/fd): what a
 * `grace-restart run` supervisor hands to the supervisor that replaces it, whether systemd
 * passed the socket or cluster bound it. Empty where there is no /proc.
 */
export function ownListeningSockets(): Map<number, BoundAddress> {
  let fds: number[];
  try {
    fds = readdirSync('/proc/self/fd')
      .map(Number)
      .filter((fd) => Number.isInteger(fd) && fd > 2);
  } catch {
    return new Map();
  }
  return listeningAddresses(fds);
}

function readTable(path: string): string[] {
  try {
    // The first line is the header.
    return readFileSync(path, 'latin1').split('\n').slice(1);
  } catch {
    return [];
  }
}

/** `sl local rem st tx:rx tr:when retr uid timeout inode …`, local as `HEXADDR:HEXPORT`. */
export function parseTcpLine(line: string, family: 'IPv4' | 'IPv6'): [number, BoundAddress] | undefined {
  const cols = line.trim().split(/\s+/);
  const [local, state, inode] = [cols[1], cols[3], cols[9]];
  if (local === undefined || state !== TCP_LISTEN || inode === undefined) return undefined;
  const [hex, portHex] = local.split(':');
  if (hex === undefined || portHex === undefined) return undefined;
  const address = family === 'IPv4' ? formatIPv4(kernelBytes(hex)) : formatIPv6(kernelBytes(hex));
  return [Number(inode), { kind: 'tcp', family, address, port: Number.parseInt(portHex, 16) }];
}

/** `Num RefCount Protocol Flags Type St Inode [Path]`; abstract names start with `@`. */
export function parseUnixLine(line: string): [number, BoundAddress] | undefined {
  const match = /^\s*[0-9a-f]+:\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)\s+([0-9a-f]+)\s+[0-9a-f]+\s+(\d+)(?: (.*))?$/i.exec(line);
  if (match === null) return undefined;
  const [, flags, type, inode, path] = match;
  // SOCK_STREAM (1) only, listening, and bound to a name.
  if ((Number.parseInt(flags ?? '0', 16) & UNIX_ACCEPTCON) === 0 || Number.parseInt(type ?? '0', 16) !== 1) return undefined;
  if (path === undefined || path === '') return undefined;
  return [Number(inode), { kind: 'unix', path }];
}

/** The kernel prints addresses as 32-bit words in host byte order. */
function kernelBytes(hex: string): number[] {
  const bytes: number[] = [];
  for (let word = 0; word < hex.length; word += 8) {
    const wordBytes = [0, 2, 4, 6].map((i) => Number.parseInt(hex.slice(word + i, word + i + 2), 16));
    bytes.push(...(endianness() === 'LE' ? wordBytes.reverse() : wordBytes));
  }
  return bytes;
}

function formatIPv4(bytes: number[]): string {
  return bytes.join('.');
}

function formatIPv6(bytes: number[]): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
  return groups.join(':');
}
