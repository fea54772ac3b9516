/**
 * A server grace-restart never saw (issue #26). A framework that creates and listens on its
 * own server (NestJS's `app.listen()`, Hono's `serve()`) goes around the adapters: the process
 * serves, but SIGUSR2 cannot hand that socket over (a stop drains it only as far as
 * seen-servers.ts can: the servers seen answering requests). Nothing fails, so nothing would
 * be logged. While this instance owns no server, it looks at the
 * process's listening sockets (/proc, Linux) a few times a second; a TCP or unix socket that
 * is none of its own, seen on two looks in a row (a listen through grace-restart in between
 * would have made it ours), is reported once, with the fix.
 */
import { url as inspectorUrl } from 'node:inspector';
import { resolve } from 'node:path';
import { describeBound } from './address.js';
import { ownListeningSockets, type BoundAddress } from './socket-address.js';

/** A listening socket of this process that is not grace-restart's. */
export interface ForeignListener {
  fd: number;
  /** Where it listens: `127.0.0.1:3000`, or a unix socket's path. */
  address: string;
}

/** What grace-restart holds right now. */
export interface OwnedSockets {
  /** Whether it owns or is binding a server: then nothing is foreign to look for. */
  serving: boolean;
  /** Its listening fds: inherited ones waiting for their listen(), its control socket's path. */
  fds: ReadonlySet<number>;
  controlSocket: string | undefined;
}

/** How often the listening sockets are looked at while grace-restart owns no server (ms)... */
const LOOK_EVERY_MS = 250;
/** ...for this many looks (10 s); a process still serving nothing after that is looked at seldom. */
const FAST_LOOKS = 40;
const SLOW_LOOK_MS = 5_000;

/**
 * Calls `onFound` once with the foreign listeners, when there are any on two looks in a row
 * while `owned()` says grace-restart serves nothing. Returns a function that stops looking.
 */
export function watchForeignListeners(
  owned: () => OwnedSockets,
  onFound: (listeners: ForeignListener[]) => void,
  lookEveryMs = LOOK_EVERY_MS,
): () => void {
  let previous = new Set<number>();
  let looks = 0;
  let timer: NodeJS.Timeout | undefined;
  const look = (): void => {
    looks += 1;
    const now = owned();
    if (now.serving) {
      previous = new Set();
      return next();
    }
    const foreign = foreignListeners(ownListeningSockets(), now);
    const seenTwice = foreign.filter((l) => previous.has(l.fd));
    previous = new Set(foreign.map((l) => l.fd));
    if (seenTwice.length === 0) return next();
    onFound(seenTwice);
  };
  const next = (): void => {
    timer = setTimeout(look, looks < FAST_LOOKS ? lookEveryMs : Math.max(lookEveryMs, SLOW_LOOK_MS));
    // Looking must never keep the process alive.
    timer.unref();
  };
  next();
  return () => clearTimeout(timer);
}

/** The sockets of `listening` that `owned` does not account for. */
export function foreignListeners(listening: ReadonlyMap<number, BoundAddress>, owned: OwnedSockets): ForeignListener[] {
  const control = owned.controlSocket === undefined ? undefined : resolve(owned.controlSocket);
  const inspector = inspectorPort();
  const foreign: ForeignListener[] = [];
  for (const [fd, bound] of listening) {
    if (owned.fds.has(fd)) continue;
    // `node --inspect` listens too (127.0.0.1:9229): the debugger's, not the app's.
    if (bound.kind === 'tcp' && bound.port === inspector) continue;
    if (bound.kind === 'unix' && (bound.path === control || (!bound.path.startsWith('@') && resolve(bound.path) === control))) continue;
    foreign.push({ fd, address: describeBound(bound) });
  }
  return foreign;
}

/** The port Node's inspector listens on, when it is open. */
function inspectorPort(): number | undefined {
  const open = inspectorUrl();
  if (open === undefined) return undefined;
  try {
    return Number(new URL(open).port);
  } catch {
    return undefined;
  }
}

/** What an operator reads: where the process listens without grace-restart, and how to wire it. */
export function foreignListenerMessage(listeners: readonly ForeignListener[]): string {
  const where = listeners.map((l) => l.address).join(', ');
  return (
    `grace-restart: this process listens on ${where} through a server grace-restart never saw: an upgrade cannot hand it over, and its connections do not move. ` +
    'Give the server to grace-restart before it listens: grace.adopt(server) then server.listen(…), or grace.listen(server, port) ' +
    '(NestJS: grace.adopt(app.getHttpServer()) before app.listen(); Hono: createAdaptorServer() then grace.listen()). ' +
    "An adapter's listen (app.listen() after app.use(graceRestart()), fastify.register(graceRestart), graceRestart(koaApp)) does this for you"
  );
}
