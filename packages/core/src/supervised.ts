/**
 * The worker side of `grace-restart run`: a process forked by the supervisor (a cluster
 * worker with GRACE_RESTART_SUPERVISOR set) does not upgrade itself and does not own the
 * PID file; it reports its lifecycle to the supervisor over the cluster IPC channel, which
 * the supervisor created and nothing outside can reach.
 *
 * With `moveConnections`, a worker's ready report names the listeners it adopts moved
 * connections on; a worker the supervisor replaces by one that adopts is sent `retire`
 * instead of SIGTERM, and moves its idle keep-alive connections to the supervisor, which
 * relays them to the replacement (connection-relay.ts).
 */
import type { AnswerCounts } from './answer-counts.js';
import cluster from 'node:cluster';
import type { Socket } from 'node:net';
import type { ConnectionChannel } from './connection-handoff.js';
import type { MoveChannel } from './connection-mover.js';
import { ENV, parsePositiveInteger, WORKER_MESSAGE_KEY } from './protocol.js';

const ENV_SUPERVISOR = ENV.supervisor;

/** Messages a supervised worker sends, wrapped as `{ [WORKER_MESSAGE_KEY]: message }`. */
export type WorkerMessage =
  /**
   * `adopts`: the listener names this worker adopts moved connections on. Present only when
   * it runs with `moveConnections`, which also tells the supervisor that it understands
   * `retire` (an older core ignores that message: such a worker gets SIGTERM).
   */
  | { type: 'ready'; generation: number; adopts?: string[] }
  | { type: 'drain-start'; reason: 'upgrade' | 'stop'; connections: number }
  | { type: 'drain-end'; reason: 'upgrade' | 'stop'; durationMs: number; forced: number }
  /** How this worker answered so far (answer-counts.ts), every second while it changes. */
  | ({ type: 'answers' } & AnswerCounts);

/** Messages the supervisor sends a worker, wrapped the same way. */
export type SupervisorMessage =
  /** A replacement adopting on `adopts` is ready: stop accepting, move connections to it, drain the rest, exit. */
  | { type: 'retire'; adopts: string[] }
  /** Nothing is relayed any more (the replacement exited, or the supervisor stops): drain the rest. */
  | { type: 'relay-end' };

/** What a retiring worker is told: where its connections go, and when they can no longer go there. */
export interface Retirement {
  adopts: readonly string[];
  /** Aborted on `relay-end`. */
  relayEnded: AbortSignal;
}

export interface Supervision {
  supervisorPid: number;
  notify(message: WorkerMessage): void;
  /** The IPC channel to the supervisor, which a retiring worker's connections leave by. */
  channel: MoveChannel;
  /** Calls `retire` when the supervisor replaces this worker (`retire`, see {@link Retirement}). */
  onRetire(retire: (retirement: Retirement) => void): void;
  /**
   * `process` as the adopting side sees it, without `process.channel`: a cluster worker's
   * channel must stay referenced (cluster keeps its workers alive by it, and a listen() waits
   * on it), where a self-upgrade successor unrefs its own.
   */
  adoptChannel: ConnectionChannel;
}

/** Reads and removes GRACE_RESTART_SUPERVISOR; a value that cannot be right is reported. */
export function takeSupervision(env: NodeJS.ProcessEnv): { supervision: Supervision | undefined; problems: string[] } {
  const value = env[ENV_SUPERVISOR];
  delete env[ENV_SUPERVISOR];
  if (value === undefined || value === '') return { supervision: undefined, problems: [] };
  const send = process.send?.bind(process);
  const supervisorPid = parsePositiveInteger(value);
  if (supervisorPid === undefined || !cluster.isWorker || send === undefined) {
    return {
      supervision: undefined,
      problems: [`ignoring ${ENV_SUPERVISOR}=${JSON.stringify(value)}: this process was not started by grace-restart run`],
    };
  }
  const channel: MoveChannel = {
    get connected() {
      return process.connected;
    },
    endpoint: process,
    send: (message: unknown, handle: Socket, options: { keepOpen?: boolean }, callback: (error: Error | null) => void) =>
      send(message, handle, options, callback),
    on: (event, listener) => process.on(event, listener),
    removeListener: (event, listener) => process.removeListener(event, listener),
  };
  return {
    supervision: {
      supervisorPid,
      notify: (message) => {
        if (process.connected) send({ [WORKER_MESSAGE_KEY]: message });
      },
      channel,
      onRetire: (retire) => {
        let relay: AbortController | undefined;
        process.on('message', (message: unknown) => {
          const body = readWorkerMessage<SupervisorMessage>(message);
          if (body?.type === 'retire' && Array.isArray(body.adopts) && relay === undefined) {
            relay = new AbortController();
            retire({ adopts: body.adopts.filter((name): name is string => typeof name === 'string'), relayEnded: relay.signal });
          } else if (body?.type === 'relay-end') relay?.abort();
        });
      },
      adoptChannel: {
        on: (event, listener) => process.on(event, listener),
        removeListener: (event, listener) => process.removeListener(event, listener),
        send: (message, callback) => send(message, undefined, undefined, callback),
      },
    },
    problems: [],
  };
}

/** The body of a `{ [WORKER_MESSAGE_KEY]: … }` message (either direction), or undefined. */
export function readWorkerMessage<T extends WorkerMessage | SupervisorMessage>(message: unknown): T | undefined {
  if (typeof message !== 'object' || message === null) return undefined;
  const body = (message as Record<string, unknown>)[WORKER_MESSAGE_KEY];
  if (typeof body !== 'object' || body === null || typeof (body as { type?: unknown }).type !== 'string') return undefined;
  return body as T;
}
