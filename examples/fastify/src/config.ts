/** The example's settings, read once from the environment. */

export interface Config {
  port: number;
  host: string;
  pidFile: string | undefined;
  version: string;
  /** When set and the file exists, the app exits at boot: how tests simulate a bad release. */
  bootFailFile: string | undefined;
  drainTimeout: number | undefined;
  readyTimeout: number | undefined;
  idleGrace: number | undefined;
  logLevel: string;
}

function optionalNumber(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) throw new Error(`${name} must be a whole number, got ${JSON.stringify(raw)}`);
  return value;
}

export function readConfig(env: NodeJS.ProcessEnv = process.env): Config {
  return {
    port: optionalNumber(env, 'PORT') ?? 3000,
    host: env['HOST'] || '127.0.0.1',
    pidFile: env['PID_FILE'] || undefined,
    version: env['APP_VERSION'] || 'dev',
    bootFailFile: env['BOOT_FAIL_FILE'] || undefined,
    drainTimeout: optionalNumber(env, 'DRAIN_TIMEOUT'),
    readyTimeout: optionalNumber(env, 'READY_TIMEOUT'),
    idleGrace: optionalNumber(env, 'IDLE_GRACE'),
    logLevel: env['LOG_LEVEL'] || 'info',
  };
}
