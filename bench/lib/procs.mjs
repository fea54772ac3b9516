// Process plumbing for the bench and the demo: start apps, learn every pid they become, and kill
// all of them on the way out — also on Ctrl-C or a crash of the runner.
//
// A grace-restart app replaces itself: its successors are children of the old process (then
// orphans), never ours, so `child.kill()` is not enough. Every pid we learn of (spawned, printed
// in an app's JSON lines, read from a PID file, seen answering a request) goes into one registry
// that the exit handlers sweep with SIGKILL. pm2's daemon is stopped with `pm2 kill`.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import http from 'node:http';
import { createInterface } from 'node:readline';

const tracked = new Set();
const cleanups = new Set(); // synchronous functions run at exit (e.g. pm2 kill)

export function track(pid) {
  if (Number.isInteger(pid) && pid > 0 && pid !== process.pid) tracked.add(pid);
}

/** Registers a synchronous cleanup run at exit; returns a function that unregisters it. */
export function onCleanup(fn) {
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

export function isAlive(pid) {
  try {
    process.kill(pid, 0);
    // A zombie still answers kill(0); /proc tells the truth.
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

export function killQuietly(pid, signal = 'SIGKILL') {
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Kills every tracked pid and runs the registered cleanups. Idempotent, synchronous. */
export function cleanupAll() {
  for (const fn of [...cleanups]) {
    cleanups.delete(fn);
    try {
      fn();
    } catch {
      // best effort: keep cleaning
    }
  }
  for (const pid of tracked) if (isAlive(pid)) killQuietly(pid);
  tracked.clear();
}

let installed = false;
/** Kills everything we started on exit, SIGINT, SIGTERM and uncaught errors. */
export function installExitHandlers() {
  if (installed) return;
  installed = true;
  process.on('exit', cleanupAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(signal, () => {
      process.stderr.write(`\n${signal}: stopping every process started by this run…\n`);
      cleanupAll();
      process.exit(130);
    });
  }
  process.on('uncaughtException', (error) => {
    process.stderr.write(`${error.stack ?? error}\n`);
    cleanupAll();
    process.exit(1);
  });
}

/**
 * Spawns a long-running process. stdout is parsed as JSON lines (successors of a grace-restart
 * app inherit the pipe, so it carries every generation); every `pid` seen there is tracked.
 * `onEvent(event)` gets each parsed line; stderr is kept (last 8 kB) for error messages.
 */
export function startProcess(file, args = [], { env = {}, cwd, onEvent, onStderrLine } = {}) {
  const child = spawn(file, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  track(child.pid);
  const events = [];
  let stderr = '';
  createInterface({ input: child.stdout }).on('line', (line) => {
    let event;
    try {
      event = JSON.parse(line);
    } catch {
      return;
    }
    if (typeof event !== 'object' || event === null) return;
    event.receivedAt = Date.now();
    track(event.pid);
    events.push(event);
    onEvent?.(event);
  });
  createInterface({ input: child.stderr }).on('line', (line) => {
    stderr = `${stderr}${line}\n`.slice(-8192);
    onStderrLine?.(line);
  });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return {
    child,
    pid: child.pid,
    events,
    exited,
    get stderr() {
      return stderr;
    },
  };
}

/** Runs a command to completion (for pm2's CLI); resolves { code, stdout, stderr, ms }. */
export function runCommand(file, args, { env = {}, timeout = 60_000 } = {}) {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(file, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], timeout });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (code) => resolve({ code, stdout, stderr, ms: Date.now() - started }));
    child.on('error', (error) => resolve({ code: -1, stdout, stderr: String(error), ms: Date.now() - started }));
  });
}

export function runCommandSync(file, args, { env = {}, timeout = 30_000 } = {}) {
  return spawnSync(file, args, { env: { ...process.env, ...env }, stdio: 'ignore', timeout });
}

/** A port that was free a moment ago (the kernel's pick for an ephemeral bind). */
export function freePort(host = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** One GET on a fresh connection; resolves { status, body } or rejects. */
export function get({ host = '127.0.0.1', port, path = '/', timeout = 2000 }) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port, path, agent: false, timeout }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** Polls until GET `path` answers 200; resolves the parsed body. `proc` lets us fail fast on exit. */
export async function waitForHttp({ port, path = '/', timeout = 20_000, proc, what = 'the app' }) {
  const deadline = Date.now() + timeout;
  let exited;
  proc?.exited.then((e) => (exited = e));
  for (;;) {
    try {
      const res = await get({ port, path });
      if (res.status === 200) {
        try {
          return JSON.parse(res.body);
        } catch {
          return {};
        }
      }
    } catch {
      // not listening yet
    }
    if (exited) throw new Error(`${what} exited (${JSON.stringify(exited)}) before serving: ${proc.stderr.trim().slice(-600)}`);
    if (Date.now() > deadline)
      throw new Error(`${what} did not answer ${path} with 200 within ${timeout} ms${proc ? `: ${proc.stderr.trim().slice(-600)}` : ''}`);
    await sleep(25);
  }
}

/** Resolves true once `pid` is gone, false at the timeout. */
export async function waitGone(pid, timeout = 30_000, interval = 10) {
  const deadline = Date.now() + timeout;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(interval);
  }
  return true;
}

/** Reads a pid from a PID file; undefined when missing or malformed. */
export function readPid(file) {
  try {
    const text = readFileSync(file, 'utf8').trim();
    return /^[1-9][0-9]*$/.test(text) ? Number(text) : undefined;
  } catch {
    return undefined;
  }
}
