/**
 * Names that identify a listening address, used as LISTEN_FDNAMES entries so a successor's
 * `listen()` call finds the socket its predecessor bound for the same options.
 *
 * The name is built from the options the app passes, not from the bound address, so that
 * `port: 0` matches in the successor (which then serves the same ephemeral port). systemd
 * separates names with ':', so ':' never appears in a name: hosts and paths are
 * percent-encoded, and the parts are joined with '/': `tcp/127.0.0.1/3000`,
 * `tcp/%3A%3A1/0`, `tcp/*\/8080` (any address), `unix/%2Frun%2Fapp.sock`.
 */
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { GraceError } from './errors.js';
import type { BoundAddress } from './socket-address.js';

/** The `server.listen()` options grace-restart understands. */
export interface ListenOptions {
  /** TCP port; `0` picks a free port once and keeps it across upgrades. */
  port?: number;
  /** Host or IP; omitted means every address, as in `server.listen()`. */
  host?: string;
  /** Path of a unix domain socket (instead of port/host). */
  path?: string;
  backlog?: number;
  ipv6Only?: boolean;
  exclusive?: boolean;
  readableAll?: boolean;
  writableAll?: boolean;
  /**
   * Claim the inherited fd with this LISTEN_FDNAMES name, for systemd socket units whose
   * `FileDescriptorName=` is not an address name.
   */
  fdName?: string;
}

/** Validates listen options and returns the address name used for handoff. */
export function addressName(options: ListenOptions): string {
  if (options.path !== undefined) {
    if (typeof options.path !== 'string' || options.path === '') {
      throw new GraceError('GRACE_ERR_OPTIONS', `listen: "path" must be a non-empty string, got ${JSON.stringify(options.path)}`);
    }
    if (options.port !== undefined || options.host !== undefined) {
      throw new GraceError('GRACE_ERR_OPTIONS', 'listen: give either "path" or "port"/"host", not both');
    }
    return `unix/${encodeURIComponent(options.path)}`;
  }
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new GraceError('GRACE_ERR_OPTIONS', `listen: "port" must be an integer from 0 to 65535, got ${JSON.stringify(options.port)}`);
  }
  if (options.host !== undefined && (typeof options.host !== 'string' || options.host === '')) {
    throw new GraceError('GRACE_ERR_OPTIONS', `listen: "host" must be a non-empty string, got ${JSON.stringify(options.host)}`);
  }
  const host = options.host === undefined ? '*' : encodeURIComponent(options.host.toLowerCase());
  return `tcp/${host}/${port}`;
}

/** A readable description of listen options, for logs and error messages. */
export function describeAddress(options: ListenOptions): string {
  if (options.path !== undefined) return `unix socket ${options.path}`;
  return `${options.host ?? '*'}:${options.port ?? 0}`;
}

/** {@link ipKey} of `::`; `0.0.0.0` keeps its own key, as IPv4-only sockets bind it. */
const WILDCARD = 'any';
const ANY_IPV4 = '0.0.0.0';

/**
 * Whether a socket bound at `bound` is the one `listen(options)` asks for. `host` is
 * `options.host` as an IP (a host name resolved by the caller). No host, `0.0.0.0` and `::`
 * all mean "every address of this port" to an app, so they match a socket bound to either
 * wildcard: systemd's `ListenStream=3000` binds `[::]:3000`. Port 0 matches nothing: it
 * asks for a fresh port, not for one systemd chose.
 */
export function matchesBoundAddress(options: ListenOptions, bound: BoundAddress, host: string | undefined): boolean {
  if (options.path !== undefined) {
    if (bound.kind !== 'unix') return false;
    // Node spells an abstract socket with a leading NUL; /proc/net/unix with '@'.
    if (options.path.startsWith('\0')) return bound.path === `@${options.path.slice(1)}`;
    return bound.path === options.path || bound.path === resolve(options.path);
  }
  if (bound.kind !== 'tcp' || options.port === undefined || options.port === 0 || options.port !== bound.port) return false;
  const wanted = host === undefined ? WILDCARD : ipKey(host);
  const actual = ipKey(bound.address);
  if (wanted === WILDCARD || wanted === ANY_IPV4) return actual === WILDCARD || actual === ANY_IPV4;
  return wanted !== undefined && wanted === actual;
}

/**
 * One spelling per IP address, so `::1` equals `0:0:0:0:0:0:0:1` and an IPv4-mapped
 * `::ffff:127.0.0.1` equals `127.0.0.1`. `::` maps to {@link WILDCARD}. Undefined if `ip`
 * is not an IP literal.
 */
export function ipKey(ip: string): string | undefined {
  const bare = ip
    .replace(/^\[|\]$/g, '')
    .replace(/%.*$/, '')
    .toLowerCase();
  if (isIP(bare) === 4) return bare;
  if (isIP(bare) !== 6) return undefined;
  const groups = expandIPv6(bare);
  if (groups.every((g) => g === 0)) return WILDCARD;
  const mapped = groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
  if (mapped) return [groups[6] ?? 0, groups[7] ?? 0].flatMap((g) => [g >> 8, g & 0xff]).join('.');
  return groups.map((g) => g.toString(16)).join(':');
}

/** The eight 16-bit groups of a valid IPv6 literal (with `::` and a dotted IPv4 tail). */
function expandIPv6(ip: string): number[] {
  let text = ip;
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted?.[1] !== undefined) {
    const [a = 0, b = 0, c = 0, d = 0] = dotted[1].split('.').map(Number);
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((g) => Number.parseInt(g, 16)));
  const left = parse(head);
  const right = tail === undefined ? [] : parse(tail);
  return [...left, ...Array.from({ length: 8 - left.length - right.length }, () => 0), ...right];
}

/** A readable form of a bound address, for logs. */
export function describeBound(bound: BoundAddress): string {
  if (bound.kind === 'unix') return `unix socket ${bound.path}`;
  return bound.family === 'IPv6' ? `[${bound.address}]:${bound.port}` : `${bound.address}:${bound.port}`;
}
