/**
 * `@grace-restart/core/internal`: the pieces `@grace-restart/cli` builds its supervisor and
 * commands from (the handoff, the control socket, supervision, the connection relay, socket
 * activation, systemd's notify protocol, the lifecycle table, the option defaults).
 *
 * @internal Not public API: these change with the CLI, in any release, without notice. Apps
 * use `@grace-restart/core` (createGrace, Grace, the errors, the logger, the PID file helpers).
 */
export { awaitReady } from './await-ready.js';
export type { AwaitReadyOptions, ReadyChild, ReadyRace } from './await-ready.js';
export { listenFdsEnv, takeInheritedListeners } from './listen-fds.js';
export type { InheritedFd, InheritedListeners } from './listen-fds.js';
export { reportReady, spawnSuccessor, startDirectory, stopChild, successorCommand, takeHandoffEnv } from './handoff.js';
export type { HandoffEnv, HandoffListener, ReadySuccessor } from './handoff.js';
export { ownListeningSockets } from './socket-address.js';
export type { BoundAddress } from './socket-address.js';
export { controlDirectory, controlSocketPath, defaultControlDirectory, sendControl, serveControl } from './control.js';
export type { ControlRequest, ControlServer, UpgradeOutcome } from './control.js';
export { LIFECYCLE, transition } from './lifecycle.js';
export type { LifecycleAction, LifecycleEvent, LifecycleState, Transition } from './lifecycle.js';
export { signalExitCode } from './signals.js';
export { flushLogger } from './logger.js';
export { createServiceNotifier, reloadingFields, takeNotifyEnv } from './service-notify.js';
export type { NotifyEnv, ServiceNotifier } from './service-notify.js';
export { ENV, PROBATION_MS, parsePositiveInteger, WORKER_MESSAGE_KEY } from './protocol.js';
export { readWorkerMessage } from './supervised.js';
export type { SupervisorMessage, WorkerMessage } from './supervised.js';
export { relayConnections } from './connection-relay.js';
export type { ConnectionRelay } from './connection-relay.js';
export type { SelfStatus } from './self-control.js';
export { OPTION_DEFAULTS } from './options.js';
export { type AnswerCounts, addAnswers, NO_ANSWERS } from './answer-counts.js';
export { abortableDelay } from './timing.js';
export { bindWithoutListening } from './server-internals.js';
export type { BoundTcpSocket } from './server-internals.js';
export { addressName } from './address.js';
export {
  type BootPriority,
  bootPriorityEnv,
  describeBootPriority,
  planBootPriority,
  returnFromBootPriority,
  spawnAtBootPriority,
} from './boot-priority.js';
export { BOOT_NICE_ENV, bootNice } from './options.js';
export { processRuns } from './process-runs.js';
export { CANARY_MIN_REQUESTS, errorRate, formatRate, judgeCanary } from './canary-verdict.js';
export type { CanaryReadings, CanaryVerdict, ErrorRate } from './canary-verdict.js';
