export { Supervisor } from './supervisor.js';
export type { SupervisorOptions, SupervisorStatus, UpgradeOutcome } from './supervisor.js';
export { parseWorkerCommand } from './worker-command.js';
export type { WorkerCommand } from './worker-command.js';
