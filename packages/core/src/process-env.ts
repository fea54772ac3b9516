/**
 * What a process learns once from its environment: inherited listeners (LISTEN_FDS), the
 * handoff variables of a successor, the start directory, supervision and systemd's notify socket. Each variable is
 * removed from process.env when read (so the app's own children do not inherit it), hence
 * read once per process and cached here.
 */
import { startDirectory, takeHandoffEnv, type HandoffEnv } from './handoff.js';
import { takeInheritedListeners, type InheritedListeners } from './listen-fds.js';
import { takeNotifyEnv, type NotifyEnv } from './service-notify.js';
import { takeSupervision } from './supervised.js';

export interface ProcessEnv {
  listeners: InheritedListeners;
  handoff: HandoffEnv;
  startDir: string;
  supervision: ReturnType<typeof takeSupervision>;
  /** systemd's NOTIFY_SOCKET and watchdog. */
  notify: NotifyEnv;
}

let processEnv: ProcessEnv | undefined;

/** The environment of this process, read at the first call. */
export function takeProcessEnv(): ProcessEnv {
  if (processEnv !== undefined) return processEnv;
  const listeners = takeInheritedListeners(process.env, process.pid);
  processEnv = {
    listeners,
    handoff: takeHandoffEnv(
      process.env,
      listeners.fds.map((l) => l.fd),
    ),
    startDir: startDirectory(),
    supervision: takeSupervision(process.env),
    notify: takeNotifyEnv(process.env, process.pid),
  };
  return processEnv;
}
