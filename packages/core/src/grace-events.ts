/** The public types of a Grace instance's life: its state as the API names it, and its events. */
import type { DrainResult } from './drain.js';
import type { UpgradeError } from './errors.js';
import type { DrainInfo } from './options.js';

/** Where a Grace instance is in its life, as the public API names it. */
export type GraceState = 'starting' | 'ready' | 'upgrading' | 'draining' | 'closed';

/** A successful upgrade. */
export interface UpgradeResult {
  /** pid of the successor, now serving. */
  pid: number;
  /** The successor's generation. */
  generation: number;
  /** From the trigger to the successor's ready report (ms). */
  durationMs: number;
}

/** Payloads of the events a Grace instance emits. */
export interface GraceEvents {
  ready: [{ pid: number; generation: number; durationMs: number }];
  'upgrade-start': [{ generation: number; trigger: string }];
  'upgrade-ready': [UpgradeResult];
  'upgrade-failed': [UpgradeError];
  'drain-start': [{ reason: DrainInfo['reason'] }];
  'drain-end': [DrainResult & { reason: DrainInfo['reason'] }];
  error: [Error];
}
