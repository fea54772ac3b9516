// What the adapters' test fixtures share: options from the environment and one JSON line
// per lifecycle event on stdout, in the shape app-process.mjs waits for.

export const emit = (event, fields = {}) => process.stdout.write(`${JSON.stringify({ event, pid: process.pid, ...fields })}\n`);

const num = (name) => (process.env[name] === undefined ? undefined : Number(process.env[name]));

/** grace-restart options a test may shorten through the environment. */
export function fixtureOptions() {
  return {
    shutdownDelay: num('SHUTDOWN_DELAY'),
    idleGrace: num('IDLE_GRACE'),
    drainTimeout: num('DRAIN_TIMEOUT'),
    readyTimeout: num('READY_TIMEOUT'),
  };
}

export const listenArgs = () => [num('PORT') ?? 0, process.env.HOST ?? '127.0.0.1'];

export function logLifecycle(grace) {
  const { generation } = grace;
  grace.on('ready', () => emit('ready', { generation }));
  grace.on('upgrade-ready', ({ pid }) => emit('upgrade-ready', { generation, successorPid: pid }));
  grace.on('upgrade-failed', ({ reason, message }) => emit('upgrade-failed', { generation, reason, message }));
  grace.on('drain-start', ({ reason }) => emit('drain-start', { generation, reason }));
}
