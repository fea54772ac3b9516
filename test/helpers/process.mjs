// Helpers to run fixtures as real processes and watch them from outside.
import { execFile, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** The built `grace-restart` command. */
export const CLI_BIN = fileURLToPath(new URL('../../packages/cli/dist/bin.js', import.meta.url));

/** Runs `grace-restart args` to completion (60 s at most unless `options.timeout`); resolves { code, stdout, stderr }. */
export function runCli(args, options = {}) {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI_BIN, ...args], { timeout: 60_000, ...options }, (error, stdout, stderr) => {
      resolve({ code: error ? (error.code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** Polls `check` until it returns a truthy value or the deadline passes. */
export async function waitFor(check, { timeout = 20_000, interval = 20, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

export function isAlive(pid) {
  try {
    process.kill(pid, 0);
    // A zombie still answers kill(0); /proc tells the truth.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z /.test(stat);
  } catch {
    return false;
  }
}

export function isZombie(pid) {
  try {
    return /^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Open fds of a process, as /proc/<pid>/fd lists them. */
export function fdCount(pid) {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/**
 * Follows a child's stdout as JSON event lines (each stamped with `at`, the time it arrived)
 * and keeps the tail of its stderr. `waitForEvent(match, { after })` resolves with the first
 * event from index `after` on that matches an object of fields or a predicate.
 */
export function followJsonEvents(child, { onEvent } = {}) {
  const events = [];
  const waiters = new Set();
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    stderr += d;
    if (stderr.length > 4_000_000) stderr = stderr.slice(-2_000_000);
  });
  createInterface({ input: child.stdout }).on('line', (line) => {
    let event;
    try {
      event = JSON.parse(line);
    } catch {
      return;
    }
    if (typeof event !== 'object' || event === null) return;
    event.at = Date.now();
    events.push(event);
    onEvent?.(event);
    for (const w of waiters) w();
  });

  function waitForEvent(match, { timeout = 20_000, after = 0 } = {}) {
    const test = typeof match === 'function' ? match : (e) => Object.entries(match).every(([k, v]) => e[k] === v);
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = events.slice(after).find(test);
        if (found) {
          waiters.delete(check);
          clearTimeout(timer);
          resolve(found);
        }
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        const what = typeof match === 'function' ? match.toString().slice(0, 120) : JSON.stringify(match);
        reject(
          new Error(
            `timed out after ${timeout} ms waiting for ${what}; last events: ${JSON.stringify(events.slice(-6))}; stderr tail: ${stderr.slice(-800)}`,
          ),
        );
      }, timeout);
      waiters.add(check);
      check();
    });
  }

  return {
    events,
    waitForEvent,
    get stderr() {
      return stderr;
    },
  };
}

/**
 * Spawns `node [nodeArgs] script [args]` with stdout parsed as JSON lines (successors share the
 * pipe, so the stream carries every generation's events). `cleanup()` kills every pid ever seen.
 */
export function startFixture(script, { env = {}, args = [], nodeArgs = [], cwd } = {}) {
  const child = spawn(process.execPath, [...nodeArgs, script, ...args], {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pids = new Set([child.pid]);
  const output = followJsonEvents(child, {
    onEvent: (event) => {
      if (typeof event.pid === 'number') pids.add(event.pid);
    },
  });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));

  return {
    child,
    pid: child.pid,
    events: output.events,
    exited,
    get stderr() {
      return output.stderr;
    },
    waitForEvent: output.waitForEvent,
    cleanup() {
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    },
  };
}

/** A TCP port on 127.0.0.1 that was free a moment ago (for apps that need a fixed port). */
export async function freePort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}
