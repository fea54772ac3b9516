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
import { GraceError } from './errors.js';

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
