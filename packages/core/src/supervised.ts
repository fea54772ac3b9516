/**
 * The worker side of `grace-restart run`: a process forked by the supervisor (a cluster
 * worker with GRACE_RESTART_SUPERVISOR set) does not upgrade itself and does not own the
 * PID file; it reports its lifecycle to the supervisor over the cluster IPC channel, which
 * the supervisor created and nothing outside can reach.
 */
import cluster from 'node:cluster';
import { ENV, parsePositiveInteger, WORKER_MESSAGE_KEY } from './protocol.js';

const ENV_SUPERVISOR = ENV.supervisor;

/** Messages a supervised worker sends, wrapped as `{ [WORKER_MESSAGE_KEY]: message }`. */
export type WorkerMessage =
  | { type: 'ready'; generation: number }
  | { type: 'drain-start'; reason: 'upgrade' | 'stop'; connections: number }
  | { type: 'drain-end'; reason: 'upgrade' | 'stop'; durationMs: number; forced: number };

export interface Supervision {
  supervisorPid: number;
  notify(message: WorkerMessage): void;
}

/** Reads and removes GRACE_RESTART_SUPERVISOR; a value that cannot be right is reported. */
export function takeSupervision(env: NodeJS.ProcessEnv): { supervision: Supervision | undefined; problems: string[] } {
  const value = env[ENV_SUPERVISOR];
  delete env[ENV_SUPERVISOR];
  if (value === undefined || value === '') return { supervision: undefined, problems: [] };
  const send = process.send?.bind(process);
  const supervisorPid = parsePositiveInteger(value);
  if (supervisorPid === undefined || !cluster.isWorker || send === undefined) {
    return { supervision: undefined, problems: [`ignoring ${ENV_SUPERVISOR}=${JSON.stringify(value)}: this process was not started by grace-restart run`] };
  }
  return {
    supervision: {
      supervisorPid,
      notify: (message) => {
        if (process.connected) send({ [WORKER_MESSAGE_KEY]: message });
      },
    },
    problems: [],
  };
}
