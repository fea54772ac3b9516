// Steps of the consumer test: pack the workspace packages, install them into a scratch app,
// run commands to completion, and start a command whose stdout carries JSON event lines.
import { execFile, spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { followJsonEvents } from './process.mjs';

/** Runs `file args` to completion; resolves { code, stdout, stderr } (never rejects). */
export function run(file, args, { cwd, env = {}, timeout = 120_000 } = {}) {
  return new Promise((resolve) => {
    execFile(file, args, { cwd, env: { ...userEnv(), ...env }, timeout, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      resolve({
        code: error ? (typeof error.code === 'number' ? error.code : 1) : 0,
        stdout,
        stderr: stderr + (error && typeof error.code !== 'number' ? `\n${error.message}` : ''),
      });
    });
  });
}

/** `npm pack` of packages/<name> for each name into `dest`; resolves { name: tarball path }. */
export async function packAll(root, names, dest) {
  mkdirSync(dest, { recursive: true });
  const workspaces = names.flatMap((name) => ['-w', `packages/${name}`]);
  const result = await run('npm', ['pack', '--json', '--pack-destination', dest, ...workspaces], { cwd: root });
  if (result.code !== 0) throw new Error(`npm pack failed: ${result.stderr}`);
  const packed = JSON.parse(result.stdout);
  return Object.fromEntries(names.map((name) => [name, join(dest, packed.find((p) => p.name === `@grace-restart/${name}`).filename)]));
}

const NPM_FLAGS = ['--no-audit', '--no-fund', '--no-update-notifier', '--loglevel=error'];

/**
 * The environment without what `npm test` (or `npm exec -c`) adds about the monorepo (its local
 * prefix, package, lifecycle, the command being run), so npm and npx in a scratch app act as in
 * a user's shell. The cache stays.
 */
function userEnv() {
  return Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !/^npm_(config_local_prefix$|config_call$|package_|lifecycle_)/.test(key)),
  );
}

/**
 * `npm install specs` in `dir`, from npm's cache only; when a package is not cached (npm ci
 * caches tarballs, not always the registry metadata an install needs), once more with
 * --prefer-offline. Resolves 'offline' or 'prefer-offline'; throws when both fail.
 */
export async function installApp(dir, specs) {
  const offline = await run('npm', ['install', '--offline', ...NPM_FLAGS, ...specs], { cwd: dir });
  if (offline.code === 0) return 'offline';
  const online = await run('npm', ['install', '--prefer-offline', ...NPM_FLAGS, ...specs], { cwd: dir });
  if (online.code === 0) return 'prefer-offline';
  throw new Error(`npm install in ${dir} failed:\n--offline: ${offline.stderr}\n--prefer-offline: ${online.stderr}`);
}

/**
 * Spawns `file args` (an executable: a bin link, npx…) in a process group of its own and
 * follows its stdout as JSON events. `cleanup()` kills the group and every pid seen.
 */
export function spawnJson(file, args, { cwd, env = {} } = {}) {
  const child = spawn(file, args, { cwd, env: { ...userEnv(), ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const pids = new Set([child.pid]);
  const output = followJsonEvents(child, { onEvent: (e) => typeof e.pid === 'number' && pids.add(e.pid) });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return {
    pid: child.pid,
    exited,
    waitForEvent: output.waitForEvent,
    get stderr() {
      return output.stderr;
    },
    cleanup() {
      for (const pid of [-child.pid, ...pids]) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    },
  };
}
