#!/usr/bin/env node
// The randomized lifecycle driver (issue #10): a real service under keep-alive load gets a
// random sequence of operations — upgrades, SIGHUP, bad releases, SIGKILL of a successor, of
// an old process or of a worker, and stops by SIGTERM, SIGINT, a second SIGTERM, a stop in
// the middle of an upgrade or of a drain — in both modes (self-upgrading, and under
// `grace-restart run`). After every step it checks from outside:
//   - the service answers, or it was told to stop and has stopped: exit code 0 (143 after a
//     second SIGTERM), no tagged process left, PID file and control socket gone;
//   - PID file and control socket name the live process;
//   - no zombie, and the serving process's fds do not grow over the run;
//   - a failed request only in a step that SIGKILLed or crashed a process holding
//     connections (counted as excused, and reported).
// Reproducible by its seed:
//   node test/faults/lifecycle-driver.mjs [--seeds 1,2,3] [--steps 40] [--mode self|supervisor|both] [--write]
import '../helpers/short-probation.mjs';
import '../helpers/short-slow-start.mjs';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { APP, BIN, cli, fdInfo, isAlive, isZombie, liveTagged, ROOT, Scope, startLoad, taggedPids, waitFor } from './lib.mjs';
import { request } from '../helpers/load.mjs';
import { freePort } from '../helpers/process.mjs';
import { randomSource } from '../helpers/seeded-random.mjs';

const CONTROL_DIR = join(tmpdir(), `grace-restart-${process.getuid()}`);
const READY_TIMEOUT = 2_000;
const IDLE_GRACE = 300;

/** A seeded PRNG, so a failing sequence replays from its seed. */
const prng = (seed) => randomSource(seed).next;

/** Operations and their weights, per mode. `excused`: may fail requests held by a killed or crashed process. */
const OPERATIONS = {
  self: {
    upgrade: 6,
    'upgrade-storm': 1,
    hup: 2,
    'bad-crash-at-boot': 2,
    'bad-never-ready': 1,
    'bad-crash-after-ready': 2,
    'kill-successor': 2,
    'kill-old-in-drain': 1,
    term: 1,
    int: 1,
    'term-twice': 1,
    'term-in-upgrade': 1,
    'term-in-drain': 1,
  },
  supervisor: {
    upgrade: 5,
    'upgrade-usr2': 2,
    hup: 2,
    'bad-crash-at-boot': 2,
    'bad-never-ready': 1,
    'bad-crash-after-ready': 1,
    'kill-worker': 2,
    'kill-new-worker': 2,
    term: 1,
    int: 1,
    'term-twice': 1,
    'term-in-upgrade': 1,
    // The supervisor process itself replaced (upgrade --supervisor, SIGUSR1), failing, interrupted.
    'supervisor-upgrade': 3,
    'supervisor-upgrade-usr1': 1,
    'bad-supervisor-upgrade': 1,
    'kill-new-supervisor': 1,
    'kill-old-supervisor-in-drain': 1,
    'term-in-supervisor-upgrade': 1,
    'term-old-supervisor-in-drain': 1,
  },
};

function pick(rnd, weights) {
  const total = Object.values(weights).reduce((a, b) => a + b, 0);
  let r = rnd() * total;
  for (const [name, w] of Object.entries(weights)) {
    r -= w;
    if (r < 0) return name;
  }
  return Object.keys(weights)[0];
}

/** One life of the service: started, driven, stopped (by a step or at the end). */
class Service {
  constructor(scope, mode, port, behaviourFile) {
    Object.assign(this, { scope, mode, port, behaviourFile, pidFile: join(scope.dir, `${mode}.pid`) });
  }

  async start() {
    writeFileSync(this.behaviourFile, 'ok');
    const env = {
      PORT: String(this.port),
      PID_FILE: this.pidFile,
      BEHAVIOUR_FILE: this.behaviourFile,
      IDLE_GRACE: String(IDLE_GRACE),
      READY_TIMEOUT: String(READY_TIMEOUT),
      GRACE_RESTART_LOG_LEVEL: 'warn',
    };
    if (this.mode === 'self') {
      this.proc = this.scope.launch(APP, { env });
    } else {
      delete env.PID_FILE;
      const args = [
        'run',
        '--workers',
        '2',
        '--pid-file',
        this.pidFile,
        '--ready-timeout',
        String(READY_TIMEOUT),
        '--drain-timeout',
        '5000',
        '--max-crashes',
        '1000',
        '--log-level',
        'warn',
        '--',
        'node',
        APP,
      ];
      this.proc = this.scope.launch(BIN, { args, env });
    }
    await waitFor(() => existsSync(this.pidFile), { timeout: 20_000, what: 'the PID file' });
    await this.settled();
    this.load = startLoad({ port: this.port, connections: 4, timeout: 5_000 });
    this.fdBaseline = this.fds();
  }

  /** The pid the PID file names. */
  pid() {
    const text = existsSync(this.pidFile) ? readFileSync(this.pidFile, 'utf8').trim() : '';
    return /^[1-9][0-9]*$/.test(text) ? Number(text) : undefined;
  }

  async status() {
    const result = await cli(['status', '--pid-file', this.pidFile, '--json'], { tag: this.scope.tag, timeout: 10_000 });
    try {
      return JSON.parse(result.stdout);
    } catch {
      return undefined;
    }
  }

  async workers() {
    return (await this.status())?.workers ?? [];
  }

  /** Waits until the service is back to its steady shape: one process (self) or the supervisor + 2 ready workers. */
  async settled() {
    await waitFor(
      async () => {
        const pid = this.pid();
        if (pid === undefined || !isAlive(pid)) return false;
        const live = liveTagged(this.scope.tag);
        if (this.mode === 'self') return live.length === 1 && live[0] === pid;
        const workers = await this.workers();
        return workers.length === 2 && workers.every((w) => w.state === 'ready') && live.length === 3;
      },
      { timeout: 30_000, interval: 50, what: `${this.mode} service to settle` },
    );
  }

  /** Structural fds of the serving process (self) or of the supervisor. */
  fds() {
    return fdInfo(this.pid())?.structural;
  }

  /** Events (stdout lines of every process of this life) from index `after` on. */
  events(after = 0) {
    return this.proc.events.slice(after);
  }
}

/** Runs one seed in one mode; returns a result row. */
export async function drive({ seed, steps, mode }) {
  const scope = new Scope(`lifecycle-${mode}-${seed}`);
  const rnd = prng(seed);
  const row = {
    seed,
    mode,
    steps: 0,
    lives: 0,
    requests: 0,
    failed: 0,
    excused: 0,
    ops: {},
    problems: scope.problems,
    fds: [],
    trace: [],
    errors: {},
  };
  const port = await freePort();
  const behaviourFile = join(scope.dir, 'behaviour');
  let service;
  const endLife = (outcome) => {
    row.requests += outcome.requests;
    row.failed += outcome.failed;
    for (const [kind, n] of Object.entries(outcome.errors ?? {})) row.errors[kind] = (row.errors[kind] ?? 0) + n;
  };
  const begin = async () => {
    service = new Service(scope, mode, port, behaviourFile);
    await service.start();
    row.lives += 1;
  };
  try {
    await begin();
    for (let i = 0; i < steps; i++) {
      const op = pick(rnd, OPERATIONS[mode]);
      row.ops[op] = (row.ops[op] ?? 0) + 1;
      row.steps += 1;
      const before = service.load.stats.failed;
      const outcome = await perform(op, service, rnd, scope);
      if (!outcome.stopped) {
        // Requests that fail while the service settles belong to this step too.
        await service.settled().catch((error) => scope.check(false, `step ${i} (${op}): ${error.message}`));
        if (scope.problems.length === 0) await checkServing(service, scope, `step ${i} (${op})`);
        // The step ends once the load flows again on every connection: a killed process's
        // connections fail a few ms after it is gone, and belong to this step.
        const ok = service.load.stats.ok;
        await waitFor(() => service.load.stats.ok >= ok + 200, { timeout: 20_000, what: 'the load to flow again' }).catch((error) =>
          scope.check(false, `step ${i} (${op}): ${error.message}`),
        );
      }
      const failed = (outcome.stopped ? outcome.failed : service.load.stats.failed) - before;
      row.trace.push(`${i}:${op}${failed > 0 ? `(${failed} failed)` : ''}`);
      if (failed > 0 && !outcome.excused)
        scope.check(false, `step ${i} (${op}): ${failed} failed requests ${JSON.stringify(service.load.stats.errors)}`);
      if (outcome.excused) row.excused += failed;
      if (outcome.problem) scope.check(false, `step ${i} (${op}): ${outcome.problem}`);
      if (scope.problems.length > 0) break;
      if (outcome.stopped) {
        endLife(outcome);
        await begin();
      }
    }
    if (scope.problems.length === 0) {
      row.fds.push(`${service.fdBaseline}→${service.fds()}`);
      const end = await stop(service, 'SIGTERM', scope);
      if (end.problem) scope.check(false, `final stop: ${end.problem}`);
      endLife(end);
    }
  } catch (error) {
    scope.check(false, `error: ${error?.stack ?? error}`);
  } finally {
    await service?.load?.stop().catch(() => undefined);
    await scope.killAll();
  }
  return row;
}

/** The invariants of a serving service. */
async function checkServing(service, scope, where) {
  const pid = service.pid();
  const res = await request({ port: service.port, timeout: 5_000 }).catch((error) => ({ status: error.message }));
  scope.check(res.status === 200, `${where}: the service does not answer (${res.status})`);
  if (service.mode === 'self') scope.check(res.json?.pid === pid, `${where}: ${res.json?.pid} answers, the PID file names ${pid}`);
  scope.check(existsSync(join(CONTROL_DIR, `${pid}.sock`)), `${where}: no control socket for ${pid}`);
  const zombies = taggedPids(scope.tag).filter(isZombie);
  scope.check(zombies.length === 0, `${where}: zombies ${zombies.join(',')}`);
  // fds of the serving process stay flat (sockets being closed settle within a poll).
  const baseline = service.fdBaseline;
  let fds = service.fds();
  await waitFor(() => (fds = service.fds()) <= baseline + 1, { timeout: 3_000, what: 'fds' }).catch(() => undefined);
  scope.check(fds <= baseline + 1, `${where}: fds grew ${baseline} → ${fds}`);
}

/** Stops the service with `signal` (twice with `twice`); checks the end of the life. */
async function stop(service, signal, scope, { twice = false, expectCodes = [0] } = {}) {
  const stats = await service.load.stop();
  const pid = service.pid();
  const after = service.proc.events.length;
  process.kill(pid, signal);
  if (twice) process.kill(pid, signal);
  return endOfLife(service, scope, pid, after, stats, expectCodes);
}

/**
 * How the supervisor `pid` ended: its exit code when it is the one this driver started (the first
 * of a life); a supervisor started by the one it replaced is not our child, and its clean end
 * shows only as what `endOfLife` checks besides (no process left, PID file and control socket
 * removed, which only a clean stop does): reported as code 0 then.
 */
async function supervisorExit(service, pid) {
  if (pid === service.proc.pid) return service.proc.exited;
  await waitFor(() => !isAlive(pid), { timeout: 20_000, what: `supervisor ${pid} to exit` }).catch(() => undefined);
  return isAlive(pid) ? undefined : { code: 0 };
}

/**
 * The 'exit' line `pid` wrote as it exited. Its process can be gone before this process has
 * read the line from the pipe: wait for it (undefined if it never comes: killed by a signal).
 */
function exitEvent(service, pid, after) {
  return service.proc.waitForEvent((e) => e.event === 'exit' && e.pid === pid, { after, timeout: 5_000 }).catch(() => undefined);
}

/** After a stop: the exit code, no tagged process, PID file and control socket gone. */
async function endOfLife(service, scope, pid, after, stats, expectCodes) {
  let problem;
  await waitFor(() => liveTagged(scope.tag).length === 0, { timeout: 20_000, what: 'every process to exit' }).catch(
    () => (problem = `processes left: ${liveTagged(scope.tag).join(',')}`),
  );
  const exit = service.mode === 'self' ? await exitEvent(service, pid, after) : await supervisorExit(service, pid);
  const code = exit?.code;
  if (!expectCodes.includes(code)) problem ??= `exit code ${code}, expected ${expectCodes.join(' or ')}`;
  if (existsSync(service.pidFile)) problem ??= 'the PID file is left behind';
  if (existsSync(join(CONTROL_DIR, `${pid}.sock`))) problem ??= 'the control socket is left behind';
  return { stopped: true, problem, requests: stats.ok + stats.failed, failed: stats.failed, errors: stats.errors, excused: false };
}

/** Waits for the outcome of the upgrade of `pid` in self mode: the successor's pid, or undefined after a rollback. */
async function selfUpgradeOutcome(service, pid, after) {
  const e = await service.proc.waitForEvent((ev) => ev.pid === pid && (ev.event === 'upgrade-ready' || ev.event === 'upgrade-failed'), {
    after,
    timeout: 20_000,
  });
  return e.event === 'upgrade-ready' ? e.data.pid : undefined;
}

async function perform(op, service, rnd, scope) {
  const pid = service.pid();
  const after = service.proc.events.length;
  const self = service.mode === 'self';
  const upgradeCli = () => cli(['upgrade', '--pid-file', service.pidFile], { tag: scope.tag, timeout: 30_000 });
  const badRelease = async (behaviour) => {
    writeFileSync(service.behaviourFile, behaviour);
    const result = await upgradeCli();
    writeFileSync(service.behaviourFile, 'ok');
    return result;
  };
  switch (op) {
    case 'upgrade': {
      const result = await upgradeCli();
      return { problem: result.code === 0 ? undefined : `upgrade exit ${result.code}: ${result.stdout}${result.stderr}` };
    }
    case 'upgrade-usr2': {
      const last = JSON.stringify((await service.status())?.lastUpgrade);
      process.kill(pid, 'SIGUSR2');
      const done = await waitFor(
        async () => {
          const s = await service.status();
          return s?.state === 'running' && JSON.stringify(s.lastUpgrade) !== last ? s.lastUpgrade : undefined;
        },
        { timeout: 20_000, what: 'the upgrade' },
      ).catch(() => undefined);
      return { problem: done?.ok ? undefined : `SIGUSR2 upgrade: ${JSON.stringify(done)}` };
    }
    case 'upgrade-storm':
      for (let i = 0; i < 3; i++) process.kill(pid, 'SIGUSR2');
      await selfUpgradeOutcome(service, pid, after);
      return {};
    case 'hup': {
      // Each process that gets it logs that it ignores it (no onReload): wait for the lines, then check.
      const count = () => (service.proc.stderr.match(/ignoring SIGHUP/g) ?? []).length;
      const seen = count();
      const expected = self ? 1 : 2;
      process.kill(pid, 'SIGHUP');
      await waitFor(() => count() >= seen + expected, { timeout: 10_000, what: 'SIGHUP to be handled' }).catch(() => undefined);
      return { problem: isAlive(pid) ? undefined : 'SIGHUP killed the process' };
    }
    case 'bad-crash-at-boot':
    case 'bad-never-ready': {
      const result = await badRelease(op === 'bad-crash-at-boot' ? 'crash-at-boot' : 'never-ready');
      return { problem: result.code === 1 ? undefined : `a bad release's upgrade exited ${result.code}: ${result.stdout}` };
    }
    case 'bad-crash-after-ready': {
      // The new version serves, then crashes: its requests in flight fail (excused); the service must survive.
      const ms = Math.floor(rnd() * 400);
      await badRelease(`crash-after-ready:${ms}`);
      await waitFor(() => service.events(after).some((e) => e.event === 'crashing'), { timeout: 10_000, what: 'the crash' }).catch(
        () => undefined,
      );
      return { excused: true };
    }
    case 'kill-successor': {
      process.kill(pid, 'SIGUSR2');
      const boot = await service.proc.waitForEvent((e) => e.event === 'boot' && e.parentPid === pid, { after, timeout: 10_000 });
      await new Promise((r) => setTimeout(r, Math.floor(rnd() * 300))); // a random moment, not a synchronisation
      try {
        process.kill(boot.pid, 'SIGKILL');
      } catch {
        // already gone
      }
      await waitFor(() => !isAlive(boot.pid), { timeout: 10_000, what: 'the killed successor' });
      return { excused: true };
    }
    case 'kill-old-in-drain': {
      process.kill(pid, 'SIGUSR2');
      const successor = await selfUpgradeOutcome(service, pid, after);
      if (successor !== undefined && isAlive(pid)) process.kill(pid, 'SIGKILL');
      return { excused: true };
    }
    case 'kill-worker': {
      const workers = await service.workers();
      const victim = workers[Math.floor(rnd() * workers.length)];
      if (victim) process.kill(victim.pid, 'SIGKILL');
      return { excused: true };
    }
    case 'kill-new-worker': {
      const before = new Set((await service.workers()).map((w) => w.pid));
      const upgrading = upgradeCli();
      const fresh = await waitFor(async () => (await service.workers()).find((w) => !before.has(w.pid)), {
        timeout: 10_000,
        interval: 10,
        what: 'a new worker',
      }).catch(() => undefined);
      await new Promise((r) => setTimeout(r, Math.floor(rnd() * 300)));
      if (fresh && isAlive(fresh.pid)) process.kill(fresh.pid, 'SIGKILL');
      await upgrading;
      return { excused: true };
    }
    case 'supervisor-upgrade': {
      const result = await cli(['upgrade', '--supervisor', '--pid-file', service.pidFile], { tag: scope.tag, timeout: 30_000 });
      return {
        problem:
          result.code === 0 && service.pid() !== pid
            ? undefined
            : `upgrade --supervisor exit ${result.code}, PID file ${service.pid()}: ${result.stdout}${result.stderr}`,
      };
    }
    case 'supervisor-upgrade-usr1': {
      process.kill(pid, 'SIGUSR1');
      const next = await waitFor(() => service.pid() !== pid && service.pid(), { timeout: 20_000, what: 'a new supervisor' }).catch(
        () => undefined,
      );
      await waitFor(() => !isAlive(pid), { timeout: 20_000, what: 'the old supervisor to exit' }).catch(() => undefined);
      return {
        problem: next && !isAlive(pid) ? undefined : `SIGUSR1: PID file ${service.pid()}, old supervisor ${pid} alive: ${isAlive(pid)}`,
      };
    }
    case 'bad-supervisor-upgrade': {
      writeFileSync(service.behaviourFile, 'crash-at-boot');
      const result = await cli(['upgrade', '--supervisor', '--pid-file', service.pidFile], { tag: scope.tag, timeout: 30_000 });
      writeFileSync(service.behaviourFile, 'ok');
      return {
        problem:
          result.code === 1 && service.pid() === pid
            ? undefined
            : `a bad release's supervisor upgrade exited ${result.code}, PID file ${service.pid()}: ${result.stdout}`,
      };
    }
    case 'kill-new-supervisor': {
      // Killed before it has served through its probation (a random moment up to 300 ms after it started).
      const supervisors = () => liveTagged(scope.tag).filter((p) => p !== pid && readCmdline(p).includes(`${BIN} run`));
      const upgrading = cli(['upgrade', '--supervisor', '--pid-file', service.pidFile], { tag: scope.tag, timeout: 30_000 });
      const [fresh] = await waitFor(() => supervisors().length > 0 && supervisors(), {
        timeout: 10_000,
        interval: 5,
        what: 'the new supervisor',
      }).catch(() => []);
      await new Promise((r) => setTimeout(r, Math.floor(rnd() * 300)));
      if (fresh !== undefined && isAlive(fresh)) process.kill(fresh, 'SIGKILL');
      const result = await upgrading;
      await waitFor(() => service.pid() === pid, { timeout: 5_000, what: 'the PID file to name the old supervisor' }).catch(
        () => undefined,
      );
      // Its workers die with it: requests they had accepted fail (excused).
      return {
        excused: true,
        problem:
          result.code === 1 && service.pid() === pid
            ? undefined
            : `upgrade --supervisor exit ${result.code} after the new supervisor was killed, PID file ${service.pid()}: ${result.stdout}`,
      };
    }
    case 'kill-old-supervisor-in-drain': {
      const result = await cli(['upgrade', '--supervisor', '--pid-file', service.pidFile], { tag: scope.tag, timeout: 30_000 });
      if (isAlive(pid)) process.kill(pid, 'SIGKILL');
      // Its draining workers die with it (their requests in flight: excused); the new one serves on.
      return { excused: true, problem: result.code === 0 ? undefined : `upgrade --supervisor exit ${result.code}: ${result.stdout}` };
    }
    case 'term-in-supervisor-upgrade': {
      // Before the handover: the new supervisor's workers boot for 600+ ms; SIGTERM lands within 500 ms of its start.
      const stats = await service.load.stop();
      writeFileSync(service.behaviourFile, `slow-boot:${600 + Math.floor(rnd() * 600)}`);
      const supervisors = () => liveTagged(scope.tag).filter((p) => p !== pid && readCmdline(p).includes(`${BIN} run`));
      const upgrading = cli(['upgrade', '--supervisor', '--pid-file', service.pidFile], { tag: scope.tag, timeout: 30_000 });
      await waitFor(() => supervisors().length > 0, { timeout: 10_000, interval: 5, what: 'the new supervisor' }).catch(() => undefined);
      await new Promise((r) => setTimeout(r, Math.floor(rnd() * 500)));
      process.kill(pid, 'SIGTERM');
      const result = await upgrading;
      writeFileSync(service.behaviourFile, 'ok');
      const life = await endOfLife(service, scope, pid, after, stats, [0]);
      if (result.code === 0) life.problem ??= `the supervisor upgrade landed although a stop came first: ${result.stdout}`;
      return life;
    }
    case 'term-old-supervisor-in-drain': {
      // systemd's KillMode=control-group, or an operator, signals the old supervisor after it handed over: it drains on.
      const result = await cli(['upgrade', '--supervisor', '--pid-file', service.pidFile], { tag: scope.tag, timeout: 30_000 });
      if (isAlive(pid)) process.kill(pid, 'SIGTERM');
      await waitFor(() => !isAlive(pid), { timeout: 20_000, what: 'the old supervisor to exit' }).catch(() => undefined);
      return {
        problem:
          result.code === 0 && !isAlive(pid)
            ? undefined
            : `upgrade --supervisor exit ${result.code}, old supervisor alive: ${isAlive(pid)}: ${result.stdout}`,
      };
    }
    case 'term':
      return stop(service, 'SIGTERM', scope);
    case 'int':
      return stop(service, 'SIGINT', scope);
    case 'term-twice':
      // The second signal may land after a quick drain already ended the process: 0 or 143.
      return { ...(await stop(service, 'SIGTERM', scope, { twice: true, expectCodes: [0, 143] })), excused: true };
    case 'term-in-upgrade': {
      const stats = await service.load.stop();
      process.kill(pid, 'SIGUSR2');
      process.kill(pid, 'SIGTERM');
      return endOfLife(service, scope, pid, after, stats, [0]);
    }
    case 'term-in-drain': {
      // What systemctl stop does during a handoff: SIGTERM to the old process and its successor.
      const stats = await service.load.stop();
      process.kill(pid, 'SIGUSR2');
      const successor = await selfUpgradeOutcome(service, pid, after);
      for (const p of [pid, successor]) if (p !== undefined && isAlive(p)) process.kill(p, 'SIGTERM');
      const life = await endOfLife(service, scope, successor ?? pid, after, stats, [0]);
      const old = await exitEvent(service, pid, after);
      if (old?.code !== 0) life.problem ??= `the old process exited ${old?.code}`;
      return life;
    }
    default:
      throw new Error(`unknown operation ${op}`);
  }
}

function readCmdline(pid) {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

/** Seeds the short form runs in `npm test`; any seed that ever failed is added here. */
export const SHORT_SEEDS = { self: [1, 2], supervisor: [1] };

async function main() {
  const { values } = parseArgs({
    options: {
      seeds: { type: 'string' },
      steps: { type: 'string', default: '40' },
      mode: { type: 'string', default: 'both' },
      write: { type: 'boolean', default: false },
    },
  });
  const modes = values.mode === 'both' ? ['self', 'supervisor'] : [values.mode];
  const seeds = values.seeds?.split(',').map(Number) ?? [1, 2, 3];
  const rows = [];
  const started = Date.now();
  for (const mode of modes) {
    for (const seed of seeds) {
      const t0 = Date.now();
      const row = await drive({ seed, steps: Number(values.steps), mode });
      row.timeMs = Date.now() - t0;
      rows.push(row);
      process.stdout.write(
        `${mode} seed ${seed}: ${row.steps} steps, ${row.lives} lives, ${row.requests} requests, ${row.failed} failed (${row.excused} excused; ${JSON.stringify(row.errors)}), ${(row.timeMs / 1000).toFixed(0)} s — ${row.problems.length === 0 ? 'pass' : `FAIL: ${row.problems.join('; ')}\n  steps: ${row.trace.join(' ')}`}\n`,
      );
    }
  }
  const failing = rows.filter((r) => r.problems.length > 0);
  process.stdout.write(`${rows.length - failing.length} passed, ${failing.length} failed\n`);
  if (values.write) writeReport(rows, Date.now() - started, values.steps);
  process.exit(failing.length > 0 ? 1 : 0);
}

function writeReport(rows, totalMs, steps) {
  const lines = [
    '# Lifecycle driver, long form',
    '',
    `Node ${process.version}, ${cpus().length} CPUs, ${new Date().toISOString()}, total ${(totalMs / 1000).toFixed(0)} s, ${steps} steps per seed.`,
    `Reproduce a row: \`node test/faults/lifecycle-driver.mjs --mode <mode> --seeds <seed> --steps ${steps}\`.`,
    'Failed requests are allowed only in steps that SIGKILL or crash a process holding connections (excused), and counted.',
    '',
    '| mode | seed | steps | lives | requests | failed | of them excused | operations | fds first→last | time | verdict |',
    '|---|---:|---:|---:|---:|---:|---:|---|---|---:|---|',
    ...rows.map(
      (r) =>
        `| ${r.mode} | ${r.seed} | ${r.steps} | ${r.lives} | ${r.requests} | ${r.failed} | ${r.excused} | ${Object.entries(r.ops)
          .map(([k, v]) => `${k} ×${v}`)
          .join(
            ', ',
          )} | ${r.fds.join(' ')} | ${(r.timeMs / 1000).toFixed(0)} s | ${r.problems.length === 0 ? 'pass' : `FAIL: ${r.problems.join('; ').replaceAll('|', '\\|')}`} |`,
    ),
    '',
  ];
  const dir = join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'lifecycle-long.md'), lines.join('\n'));
  process.stdout.write(`wrote ${join(dir, 'lifecycle-long.md')}\n`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
