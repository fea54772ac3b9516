/**
 * Koa example: `node dist/server.js`, then `kill -USR2 <pid>` to upgrade it in place.
 * Env: PORT (3000), HOST (127.0.0.1), PID_FILE, APP_VERSION (dev), DRAIN_TIMEOUT,
 * READY_TIMEOUT, IDLE_GRACE (ms), BOOT_FAIL_FILE.
 */
import { existsSync } from 'node:fs';
import { graceRestart } from '@grace-restart/koa';
import { createApp } from './app.js';
import { readConfig } from './config.js';
import { logEvent, logLifecycle } from './events.js';

const config = readConfig();
if (config.bootFailFile !== undefined && existsSync(config.bootFailFile)) {
  logEvent('boot-failed', { bootFailFile: config.bootFailFile });
  process.exit(1);
}

const app = createApp(config.version);
const grace = graceRestart(app, {
  ...config.grace,
  // Close database pools and the like here: the drain is over, the process exits next.
  onShutdown: ({ reason }) => logEvent('shutdown', { reason }),
});
logLifecycle(grace);

const server = app.listen(config.port, config.host, () => {
  logEvent('listening', { generation: grace.generation, address: server.address() });
});
server.once('error', (error) => {
  logEvent('listen-failed', { message: error.message });
  process.exit(1);
});
