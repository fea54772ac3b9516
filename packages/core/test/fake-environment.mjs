// What a fake GraceEnvironment (grace-environment.ts) inherits: nothing, as a process started
// by hand. Shared by the in-process lifecycle tests.

/** The environment of a first process: no listeners, no predecessor, no supervisor, no systemd. */
export function inheritedNothing() {
  return {
    listeners: { fds: [], problems: [] },
    handoff: { generation: 1, parentPid: undefined, readyFd: undefined, problems: [] },
    startDir: process.cwd(),
    supervision: { supervision: undefined, problems: [] },
    notify: { socket: undefined, watchdogIntervalMs: undefined, problems: [] },
  };
}
