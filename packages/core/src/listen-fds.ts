/**
 * systemd's socket-activation protocol (sd_listen_fds_with_names), which grace-restart also
 * uses for its own handoff: inherited listeners sit at fds 3, 4, … and are described by
 * LISTEN_FDS (their count), LISTEN_FDNAMES (colon-separated names) and LISTEN_PID.
 */
import { fstatSync } from 'node:fs';

/** First fd of an inherited listener, as systemd defines it. */
export const LISTEN_FDS_START = 3;
/** Upper bound on LISTEN_FDS: larger values are certainly not a real handoff. */
const MAX_LISTEN_FDS = 1024;
const ENV_KEYS = ['LISTEN_FDS', 'LISTEN_FDNAMES', 'LISTEN_PID'] as const;

/** One inherited listening socket. */
export interface InheritedFd {
  fd: number;
  /**
   * Name from LISTEN_FDNAMES (`unknown` when systemd gave none), made unique: a repeated name
   * gets `#2`, `#3`, … in the order of the fds (see {@link uniqueNames}).
   */
  name: string;
}

/** What was read from the environment, and what was wrong with it. */
export interface InheritedListeners {
  fds: InheritedFd[];
  /** Human-readable reasons some or all variables were ignored. */
  problems: string[];
}

const DECIMAL = /^(0|[1-9][0-9]*)$/;

/**
 * Reads and validates the LISTEN_* variables, then removes them from `env` (as
 * `sd_listen_fds(1)` does) so the app's own children do not inherit them.
 * Never throws: a malformed variable is reported in `problems` and nothing is inherited.
 */
export function takeInheritedListeners(env: NodeJS.ProcessEnv, pid: number): InheritedListeners {
  const count = env['LISTEN_FDS'];
  const names = env['LISTEN_FDNAMES'];
  const listenPid = env['LISTEN_PID'];
  for (const key of ENV_KEYS) delete env[key];

  const none = (problem?: string): InheritedListeners => ({ fds: [], problems: problem === undefined ? [] : [problem] });
  if (count === undefined || count === '') return none();
  if (!DECIMAL.test(count) || Number(count) > MAX_LISTEN_FDS) {
    return none(`ignoring LISTEN_FDS=${JSON.stringify(count)}: expected a whole number from 0 to ${MAX_LISTEN_FDS}`);
  }
  if (listenPid !== undefined && listenPid !== '') {
    if (!DECIMAL.test(listenPid)) return none(`ignoring LISTEN_FDS: LISTEN_PID=${JSON.stringify(listenPid)} is not a pid`);
    // systemd semantics: the variables were meant for another process (e.g. a parent shell).
    if (Number(listenPid) !== pid) return none();
  }
  const n = Number(count);
  const given = names === undefined || names === '' ? Array.from({ length: n }, () => 'unknown') : names.split(':');
  if (given.length !== n) {
    return none(`ignoring LISTEN_FDS=${n}: LISTEN_FDNAMES has ${given.length} names`);
  }
  const nameList = uniqueNames(given);

  const fds: InheritedFd[] = [];
  const problems: string[] = [];
  nameList.forEach((name, i) => {
    const fd = LISTEN_FDS_START + i;
    const kind = describeFd(fd);
    if (kind === 'socket') fds.push({ fd, name });
    else problems.push(`ignoring inherited fd ${fd} (${JSON.stringify(name)}): it is ${kind}, not a socket`);
  });
  return { fds, problems };
}

/**
 * systemd names every socket of a `.socket` unit after the unit (or `unknown`), but a name is
 * how a moved keep-alive connection finds its listener in the successor: with two sockets of
 * one name, a connection of the second would be served by the first's server. So the second
 * `web` is `web#2`, the third `web#3`, by fd order, which is the same in every process that
 * inherits the same sockets (each worker of a supervisor, each successor). A `listen()` that
 * asks for `fdName: 'web'` still takes them (listeners.ts).
 */
export function uniqueNames(names: readonly string[]): string[] {
  const taken = new Set(names);
  const seen = new Set<string>();
  return names.map((name) => {
    if (!seen.has(name)) {
      seen.add(name);
      return name;
    }
    let k = 2;
    while (taken.has(`${name}#${k}`)) k += 1;
    const unique = `${name}#${k}`;
    taken.add(unique);
    return unique;
  });
}

function describeFd(fd: number): string {
  try {
    const stat = fstatSync(fd);
    if (stat.isSocket()) return 'socket';
    if (stat.isFile()) return 'a regular file';
    if (stat.isFIFO()) return 'a pipe';
    if (stat.isCharacterDevice()) return 'a character device';
    return 'another kind of file';
  } catch {
    return 'not open';
  }
}

/**
 * Builds the LISTEN_* variables for a successor that receives `names.length` fds at 3, 4, ….
 * LISTEN_PID is left unset: a spawned child's pid is unknown before exec, and an unset
 * LISTEN_PID is accepted by sd_listen_fds as well as by {@link takeInheritedListeners}.
 */
export function listenFdsEnv(names: readonly string[]): Record<string, string> {
  for (const name of names) {
    if (name.includes(':')) throw new Error(`listener name ${JSON.stringify(name)} must not contain ':'`);
  }
  return { LISTEN_FDS: String(names.length), LISTEN_FDNAMES: names.join(':') };
}
