/** @grace-restart/fastify: zero-downtime restarts and hot upgrades for Fastify 5. */
import './listen-options.js';
export { graceRestart, graceRestart as default } from './plugin.js';
export type { GraceRestartOptions } from './plugin.js';
export type { GraceRestartHandle } from './handle.js';
export { GraceError, UpgradeError } from '@grace-restart/core';
export type { DrainInfo, GraceState, Logger, UpgradeResult } from '@grace-restart/core';
