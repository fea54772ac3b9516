/**
 * systemd's notify protocol (sd_notify(3)): where systemd set NOTIFY_SOCKET (a `Type=notify`
 * unit, or `NotifyAccess=`), the process that serves tells it READY=1, RELOADING=1 … READY=1
 * around an upgrade, STOPPING=1, STATUS= lines, MAINPID= when another process takes over, and
 * WATCHDOG=1 every half WATCHDOG_USEC.
 *
 * The protocol is one datagram on an AF_UNIX SOCK_DGRAM socket, which Node cannot send. Each
 * message is sent by systemd's own `systemd-notify`, which ships with systemd wherever systemd
 * sets NOTIFY_SOCKET, instead of a compiled addon (built for one Node ABI, and without a
 * compiler in slim images). It sends as its parent, this process (as root; otherwise as
 * itself, so the unit needs `NotifyAccess=all`), and waits until systemd has read the message
 * (its barrier), so a message is never lost to a sender that already exited. Messages are rare
 * (lifecycle events, and a watchdog ping every half WATCHDOG_USEC); they go out one at a time,
 * in order.
 */
import { execFile } from 'node:child_process';
import type { Logger } from './logger.js';
import { parsePositiveInteger } from './protocol.js';

const ENV_KEYS = ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID'] as const;
/** sun_path is 108 bytes on Linux, the terminating NUL included. */
const MAX_SOCKET_PATH = 107;
/** A systemd-notify that has not returned by then is abandoned (its barrier waits 5 s). */
const SEND_TIMEOUT_MS = 10_000;

/** Tells systemd what this process (or the one taking over from it) is doing. */
export interface ServiceNotifier {
  /** Queues one message: `READY=1`, `STATUS=…` and the like, sent together. */
  send(fields: readonly string[]): void;
  /** Sends WATCHDOG=1 every half WATCHDOG_USEC, while this process serves (no-op without one). */
  startWatchdog(): void;
  stopWatchdog(): void;
  /** What a process that takes over needs in its environment to notify in its turn. */
  readonly env: Readonly<Record<string, string>>;
  /** Resolves once every queued message was sent (before the process exits). */
  flush(): Promise<void>;
}

/** `RELOADING=1` with the MONOTONIC_USEC that `Type=notify-reload` (systemd 253+) requires. */
export function reloadingFields(status: string): string[] {
  return ['RELOADING=1', `MONOTONIC_USEC=${process.hrtime.bigint() / 1000n}`, `STATUS=${status}`];
}

/** Where systemd listens for this service's messages, as read from the environment. */
export interface NotifyEnv {
  /** NOTIFY_SOCKET; undefined when systemd is not listening. */
  socket: string | undefined;
  /** Half of WATCHDOG_USEC, in ms, when the watchdog is meant for this process. */
  watchdogIntervalMs: number | undefined;
  problems: string[];
}

/**
 * Reads and removes NOTIFY_SOCKET / WATCHDOG_USEC / WATCHDOG_PID (so the app's children, and
 * a supervisor's workers, do not notify on behalf of the service). A malformed value is
 * reported in `problems` and ignored.
 */
export function takeNotifyEnv(env: NodeJS.ProcessEnv, pid: number): NotifyEnv {
  const socket = env['NOTIFY_SOCKET'];
  const watchdogUsec = env['WATCHDOG_USEC'];
  const watchdogPid = env['WATCHDOG_PID'];
  for (const key of ENV_KEYS) delete env[key];
  const none = (problems: string[] = []): NotifyEnv => ({ socket: undefined, watchdogIntervalMs: undefined, problems });
  if (socket === undefined || socket === '') return none();
  if (!(socket.startsWith('/') || socket.startsWith('@')) || Buffer.byteLength(socket) > MAX_SOCKET_PATH) {
    return none([
      `ignoring NOTIFY_SOCKET=${JSON.stringify(socket)}: expected an absolute path or an @abstract name of at most ${MAX_SOCKET_PATH} bytes`,
    ]);
  }
  if (watchdogUsec === undefined || watchdogUsec === '') return { socket, watchdogIntervalMs: undefined, problems: [] };
  const usec = parsePositiveInteger(watchdogUsec);
  if (usec === undefined) {
    return {
      socket,
      watchdogIntervalMs: undefined,
      problems: [`ignoring WATCHDOG_USEC=${JSON.stringify(watchdogUsec)}: expected a positive whole number of microseconds`],
    };
  }
  // systemd semantics: a WATCHDOG_PID of another process means the watchdog is not ours.
  const forOther = watchdogPid !== undefined && watchdogPid !== '' && parsePositiveInteger(watchdogPid) !== pid;
  return { socket, watchdogIntervalMs: forOther ? undefined : Math.max(1, Math.floor(usec / 2000)), problems: [] };
}

/** The notifier for `env`, or undefined where systemd is not listening. */
export function createServiceNotifier(env: NotifyEnv, logger: Logger): ServiceNotifier | undefined {
  return env.socket === undefined ? undefined : new SystemdNotifier(env.socket, env.watchdogIntervalMs, logger);
}

class SystemdNotifier implements ServiceNotifier {
  readonly env: Readonly<Record<string, string>>;
  readonly #socket: string;
  readonly #intervalMs: number | undefined;
  readonly #logger: Logger;
  #queue: Promise<void> = Promise.resolve();
  #watchdog: NodeJS.Timeout | undefined;
  #missingBinary = false;

  constructor(socket: string, intervalMs: number | undefined, logger: Logger) {
    this.#socket = socket;
    this.#intervalMs = intervalMs;
    this.#logger = logger;
    // A successor keeps the watchdog (the new main process pings); WATCHDOG_PID would name us.
    this.env = intervalMs === undefined ? { NOTIFY_SOCKET: socket } : { NOTIFY_SOCKET: socket, WATCHDOG_USEC: String(intervalMs * 2000) };
  }

  send(fields: readonly string[]): void {
    if (this.#missingBinary) return;
    this.#queue = this.#queue.then(() => this.#run(fields));
  }

  startWatchdog(): void {
    if (this.#intervalMs === undefined || this.#watchdog !== undefined) return;
    this.send(['WATCHDOG=1']);
    this.#watchdog = setInterval(() => this.send(['WATCHDOG=1']), this.#intervalMs);
    // The pings must not keep a process alive that has nothing else left to do.
    this.#watchdog.unref();
  }

  stopWatchdog(): void {
    clearInterval(this.#watchdog);
    this.#watchdog = undefined;
  }

  flush(): Promise<void> {
    return this.#queue;
  }

  #run(fields: readonly string[]): Promise<void> {
    return new Promise((resolve) => {
      // Only what systemd-notify needs: the app's environment is not its business.
      const env = { NOTIFY_SOCKET: this.#socket, PATH: process.env['PATH'] ?? '/usr/bin:/bin' };
      execFile('systemd-notify', [...fields], { env, timeout: SEND_TIMEOUT_MS }, (error, _stdout, stderr) => {
        if (error === null) {
          this.#logger.debug({ fields }, 'told systemd');
        } else if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
          this.#missingBinary = true;
          this.stopWatchdog();
          this.#logger.error(
            { fields },
            'NOTIFY_SOCKET is set, but systemd-notify is not on PATH: systemd hears nothing from this service (a Type=notify unit then never becomes active); install systemd, or use Type=simple',
          );
        } else {
          this.#logger.warn({ fields, err: stderr.trim() || error.message }, 'systemd-notify failed');
        }
        resolve();
      });
    });
  }
}
