/** @grace-restart/koa: zero-downtime restarts and hot upgrades for Koa apps. */
export { graceRestart } from './grace-restart.js';
export { Grace, GraceError, UpgradeError } from '@grace-restart/core';
export type { GraceOptions, UpgradeResult, DrainInfo, ListenOptions, Logger } from '@grace-restart/core';
