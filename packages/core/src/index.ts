export { createGrace, Grace } from './grace.js';
export type { GraceEvents, GraceState, UpgradeResult } from './grace.js';
export type { DrainInfo, GraceOptions } from './options.js';
export type { ListenOptions } from './address.js';
export type { DrainResult } from './drain.js';
export { GraceError, UpgradeError } from './errors.js';
export type { GraceErrorCode, UpgradeFailureReason } from './errors.js';
export { createJsonLogger } from './logger.js';
export type { Logger } from './logger.js';
export { readPidFile, removePidFile, writePidFile } from './pid-file.js';
export { addressName } from './address.js';
// What only @grace-restart/cli uses is exported from ./internal.ts (`@grace-restart/core/internal`).
