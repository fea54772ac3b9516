// What every bare bench app shares: env, the response body, and the shutdown a careful app
// would write without grace-restart. The bare apps serve the same routes and the same JSON as
// examples/<framework>, so the overhead comparison measures the adapter and nothing else.
import process from 'node:process';

export const port = Number(process.env.PORT ?? 3000);
export const host = process.env.HOST ?? '127.0.0.1';
export const version = process.env.APP_VERSION ?? 'bare';

export const body = (framework) => ({ framework, pid: process.pid, version, generation: 1 });

export const emit = (event, extra = {}) => process.stdout.write(`${JSON.stringify({ event, pid: process.pid, ...extra })}\n`);

/**
 * Called once the server listens. With GRACEFUL=1 a stop signal (SIGTERM from a supervisor,
 * SIGINT from pm2) stops accepting, closes idle keep-alive sockets and exits once every
 * connection is gone — the usual "graceful shutdown" recipe. Without it the default signal
 * action kills the process at once, like an app with no shutdown code. `process.send('ready')`
 * is for pm2's wait_ready, so pm2 reload waits until this worker really listens.
 */
export function started(framework, server) {
  emit('listening', { framework, address: server.address() });
  process.send?.('ready');
  if (process.env.GRACEFUL !== '1') return;
  let stopping = false;
  const stop = (signal) => {
    if (stopping) return;
    stopping = true;
    emit('drain-start', { signal });
    const t0 = Date.now();
    server.close(() => {
      emit('drain-end', { durationMs: Date.now() - t0 });
      process.exit(0);
    });
    server.closeIdleConnections();
    // A hard deadline like every supervisor has (pm2's kill_timeout, systemd's TimeoutStopSec).
    setTimeout(() => process.exit(0), 10_000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

export const slowMs = (query) => Math.min(Number(query ?? 1000) || 0, 60_000);
