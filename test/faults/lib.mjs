// Shared machinery of the fault suite: tagged processes (every process a scenario starts,
// and every descendant, carries GRACE_FAULTS_TAG in its environment, so cleanup finds
// successors that outlived their parent), measurements taken from outside (/proc), and
// the result row each scenario returns.
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { followJsonEvents, isAlive, isZombie, waitFor } from '../helpers/process.mjs';

export { isAlive, isZombie, waitFor };
export { request, startLoad } from '../helpers/load.mjs';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const APP = fileURLToPath(new URL('./fixtures/app.mjs', import.meta.url));
export const BIN = join(ROOT, 'packages/cli/dist/bin.js');
export const CORE_FIXTURES = join(ROOT, 'packages/core/test/fixtures');
const TAG_KEY = 'GRACE_FAULTS_TAG';

/** Every pid whose initial environment carries `tag` (our uid: root reads all). */
export function taggedPids(tag) {
  const needle = Buffer.from(`${TAG_KEY}=${tag}\0`);
  const pids = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/environ`).includes(needle)) pids.push(Number(entry));
    } catch {
      // gone meanwhile, or not readable
    }
  }
  return pids;
}

/** Tagged pids that are alive (not zombies). */
export const liveTagged = (tag) => taggedPids(tag).filter(isAlive);

export function vmRssKb(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** inode -> TCP state (hex, '0A' = LISTEN) for every TCP socket in the pid's namespace. */
function tcpStates(pid) {
  const states = new Map();
  for (const file of ['tcp', 'tcp6']) {
    let text = '';
    try {
      text = readFileSync(`/proc/${pid}/net/${file}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length > 9) states.set(cols[9], cols[3]);
    }
  }
  return states;
}

/**
 * Open fds of `pid`: `total`, `connections` (TCP sockets not in LISTEN state: client
 * connections, which come and go with the load) and `structural` = total - connections,
 * the figure that must stay flat across upgrades.
 */
export function fdInfo(pid) {
  let links;
  try {
    links = readdirSync(`/proc/${pid}/fd`).map((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        return '';
      }
    });
  } catch {
    return undefined;
  }
  const states = tcpStates(pid);
  let connections = 0;
  for (const link of links) {
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m && states.has(m[1]) && states.get(m[1]) !== '0A') connections += 1;
  }
  return { total: links.length, connections, structural: links.length - connections };
}

/** TCP connections of `pid` in ESTABLISHED state (01). */
export const establishedCount = (pid) => {
  const states = tcpStates(pid);
  let n = 0;
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m && states.get(m[1]) === '01') n += 1;
      } catch {
        // closed meanwhile
      }
    }
  } catch {
    return 0;
  }
  return n;
};

/** Parses JSON log lines (the core logger writes them on stderr). */
export function jsonLines(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line));
    } catch {
      // not JSON
    }
  }
  return out;
}

/** Runs the CLI to completion; resolves { code, signal, stdout, stderr }. */
export function cli(args, { env = {}, tag, timeout = 60_000, ...options } = {}) {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { timeout, env: { ...process.env, ...env, ...(tag ? { [TAG_KEY]: tag } : {}) }, ...options },
      (error, stdout, stderr) => {
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, signal: error?.signal ?? null, stdout, stderr });
      },
    );
  });
}

/**
 * The context a scenario runs in: a tag, a temp dir, spawn helpers, checks. Every check
 * that fails becomes part of the verdict; nothing throws past the scenario except bugs.
 */
export class Scope {
  constructor(name, { long = false, runId = randomBytes(4).toString('hex') } = {}) {
    this.name = name;
    this.long = long;
    this.tag = `${runId}-${name}`;
    this.dir = mkdtempSync(join(tmpdir(), `grace-faults-${name}-`));
    this.problems = [];
    this.notes = [];
    this.row = { scenario: name, requests: 0, failed: 0, fdsBefore: '', fdsAfter: '', timeMs: 0, verdict: '', notes: '' };
    this.procs = [];
    this.cleanups = [];
  }

  env(extra = {}) {
    return { ...process.env, GRACE_RESTART_LOG_LEVEL: 'info', ...extra, [TAG_KEY]: this.tag };
  }

  check(ok, message) {
    if (!ok) this.problems.push(message);
    return Boolean(ok);
  }

  note(message) {
    this.notes.push(message);
  }

  /** Adds a load's final stats to the row. */
  count(stats) {
    this.row.requests += stats.ok + stats.failed;
    this.row.failed += stats.failed;
    if (stats.failed > 0) this.note(`errors ${JSON.stringify(stats.errors)}`);
  }

  onCleanup(fn) {
    this.cleanups.push(fn);
  }

  /**
   * Spawns `node script` (tagged), stdout parsed as JSON event lines, stderr kept and parsed
   * as JSON log lines. `extraStdio` entries go at fd 3, 4, ….
   */
  launch(script, { env = {}, args = [], cwd, extraStdio = [], detached = false, execArgv = [] } = {}) {
    const child = spawn(process.execPath, [...execArgv, script, ...args], {
      cwd,
      env: this.env(env),
      stdio: ['ignore', 'pipe', 'pipe', ...extraStdio],
      detached,
    });
    const output = followJsonEvents(child);
    const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })));
    const proc = {
      child,
      pid: child.pid,
      events: output.events,
      exited,
      waitForEvent: output.waitForEvent,
      get stderr() {
        return output.stderr;
      },
      logs: () => jsonLines(output.stderr),
    };
    this.procs.push(proc);
    return proc;
  }

  /** Starts the fault fixture and waits for its ready event; returns { app, port }. */
  async startApp(env = {}, options = {}) {
    const app = this.launch(options.script ?? APP, { env: { HOST: '127.0.0.1', PORT: '0', ...env }, ...options });
    const listening = await app.waitForEvent({ event: 'listening' });
    await app.waitForEvent({ event: 'ready', pid: app.pid });
    return { app, port: listening.address.port };
  }

  /** Kills every tagged process and waits (bounded) until none is alive. */
  async killAll() {
    for (const fn of this.cleanups.splice(0).reverse()) {
      try {
        await fn();
      } catch {
        // best effort
      }
    }
    for (let round = 0; round < 3; round++) {
      const pids = liveTagged(this.tag);
      for (const p of this.procs) if (isAlive(p.pid)) pids.push(p.pid);
      if (pids.length === 0) break;
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
      await waitFor(() => liveTagged(this.tag).length === 0, { timeout: 5000, what: 'tagged processes to die' }).catch(() => undefined);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Sends SIGUSR2 to `pid`, waits for its upgrade-ready and its exit; returns the successor pid. */
export async function upgradeOnce(app, pid, { timeout = 20_000 } = {}) {
  const after = app.events.length;
  process.kill(pid, 'SIGUSR2');
  const ready = await app.waitForEvent((e) => e.event === 'upgrade-ready' && e.pid === pid, { after, timeout });
  await waitFor(() => !isAlive(pid), { timeout, what: `old process ${pid} to exit` });
  return ready.data.pid;
}

/** Waits until the load has answered `n` more requests (proves the service answers). */
export async function flows(load, n = 100, what = 'load to flow') {
  const start = load.stats.ok;
  await waitFor(() => load.stats.ok >= start + n, { timeout: 20_000, what });
}

/**
 * Runs one scenario function in a fresh Scope and returns its result row. The verdict is
 * `pass` or `FAIL: …`; every tagged process is killed afterwards.
 */
export async function runScenario(name, fn, options = {}) {
  const scope = new Scope(name, options);
  const started = Date.now();
  try {
    await fn(scope);
  } catch (error) {
    scope.problems.push(`error: ${error?.message ?? error}`);
  }
  scope.row.timeMs = Date.now() - started;
  await scope.killAll();
  scope.row.verdict =
    scope.problems.length === 0 ? 'pass' : `FAIL: ${scope.problems.map((p) => (p.length > 300 ? `${p.slice(0, 300)}…` : p)).join('; ')}`;
  scope.row.notes = scope.notes.join('; ');
  return scope.row;
}

/**
 * Checks after a scenario that exactly `expected` tagged pids are alive and no tagged
 * process is a zombie (waits a little for exits that are already under way).
 */
export async function checkLeftovers(scope, expected = []) {
  const want = new Set(expected);
  const extra = () => liveTagged(scope.tag).filter((p) => !want.has(p));
  await waitFor(() => extra().length === 0, { timeout: 8000, what: 'leftover processes to exit' }).catch(() => undefined);
  const left = extra();
  scope.check(left.length === 0, `processes left behind: ${left.map(describePid).join(', ')}`);
  await waitFor(() => taggedPids(scope.tag).filter(isZombie).length === 0, { timeout: 5000, what: 'zombies to be reaped' }).catch(
    () => undefined,
  );
  const zombies = taggedPids(scope.tag).filter(isZombie);
  scope.check(zombies.length === 0, `zombie processes: ${zombies.join(', ')}`);
  for (const p of expected) scope.check(isAlive(p), `expected ${p} to be alive`);
}

function describePid(pid) {
  try {
    return `${pid} (${readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim().slice(0, 80)})`;
  } catch {
    return String(pid);
  }
}

/** Deterministic byte pattern of chunk `i` (shared with the fixture). */
export const patternChunk = (i, size) => Buffer.alloc(size, (i * 31 + 7) % 251);

/** Structural fds of `pid`, polled (bounded) until they are back to `baseline`: closing sockets settle first. */
export async function settledFds(pid, baseline) {
  let fds = fdInfo(pid)?.structural;
  if (typeof baseline === 'number') {
    await waitFor(() => (fds = fdInfo(pid)?.structural) <= baseline, { timeout: 3000, what: 'fds to settle' }).catch(() => undefined);
  }
  return fds ?? '-';
}
