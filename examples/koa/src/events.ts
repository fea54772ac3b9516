/**
 * One JSON line per lifecycle event on stdout: what an operator greps for, and what the
 * end-to-end tests wait on. `pid` is always the process that writes the line.
 */
import type { Grace } from '@grace-restart/koa';

export function logEvent(event: string, fields: object = {}): void {
  process.stdout.write(`${JSON.stringify({ event, pid: process.pid, ...fields })}\n`);
}

/** Logs every lifecycle event of `grace` with this process's generation. */
export function logLifecycle(grace: Grace): void {
  const { generation } = grace;
  grace.on('ready', ({ durationMs }) => logEvent('ready', { generation, durationMs }));
  grace.on('upgrade-start', ({ trigger }) => logEvent('upgrade-start', { generation, trigger }));
  grace.on('upgrade-ready', ({ pid, durationMs }) => logEvent('upgrade-ready', { generation, successorPid: pid, durationMs }));
  grace.on('upgrade-failed', ({ reason, message }) => logEvent('upgrade-failed', { generation, reason, message }));
  grace.on('drain-start', ({ reason }) => logEvent('drain-start', { generation, reason }));
  grace.on('drain-end', (result) => logEvent('drain-end', { generation, ...result }));
}
