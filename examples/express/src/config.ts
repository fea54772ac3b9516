/** The example's settings, all read from the environment so operators and tests can set them. */

/** What the example needs to start. */
export interface Config {
  port: number;
  host: string;
  version: string;
  /** When this file exists at boot the app exits(1): a broken release, to watch a rollback. */
  bootFailFile: string | undefined;
  /** Passed to grace-restart; unset values keep its defaults. */
  grace: { pidFile?: string; drainTimeout?: number; readyTimeout?: number; idleGrace?: number };
}

export function readConfig(env: NodeJS.ProcessEnv = process.env): Config {
  return {
    port: integer(env, 'PORT') ?? 3000,
    host: env['HOST'] || '127.0.0.1',
    version: env['APP_VERSION'] || 'dev',
    bootFailFile: env['BOOT_FAIL_FILE'] || undefined,
    grace: {
      pidFile: env['PID_FILE'] || undefined,
      drainTimeout: integer(env, 'DRAIN_TIMEOUT'),
      readyTimeout: integer(env, 'READY_TIMEOUT'),
      idleGrace: integer(env, 'IDLE_GRACE'),
    },
  };
}

function integer(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const text = env[name];
  if (text === undefined || text === '') return undefined;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0) throw new Error(`${name} must be a whole number, got ${JSON.stringify(text)}`);
  return value;
}
