/**
 * Boot priority (issue #29): a successor (or a new worker) boots at a lower CPU priority, so the
 * 300–450 ms of CPU its boot takes comes from idle time before it comes from the process that
 * serves, and returns to the parent's priority at its ready report. Only where the child can
 * return by itself: raising priority again needs CAP_SYS_NICE or an RLIMIT_NICE that reaches
 * the parent's nice value (systemd `LimitNICE=+0`, Docker `--ulimit nice=20`). A process that
 * serves is never left niced; where it could be, nothing is niced at all.
 *
 * How: Linux keeps a nice value per thread, a forked child takes its calling thread's, and it
 * survives exec. So the parent lowers its own calling thread, spawns (the child and every thread
 * the child's runtime starts get the boot value from the first instruction on), and raises its
 * thread again, all synchronously; the child, at its ready report, sets each of its threads
 * (/proc/self/task) back to the value it was told.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import { ENV } from './protocol.js';

/** Whether a child can be started niced, and why (for the upgrade's log line). */
export type BootPriority =
  | { readonly mode: 'niced'; readonly nice: number; readonly restore: number; readonly why: string }
  | { readonly mode: 'off'; readonly why: string };

/** CAP_SYS_NICE, bit 23 of a capability mask. */
const CAP_SYS_NICE = 23n;

/** True when the `CapEff:` line of /proc/<pid>/status has CAP_SYS_NICE. */
export function hasCapSysNice(status: string): boolean {
  const hex = /^CapEff:\s*([0-9a-f]+)$/im.exec(status)?.[1];
  return hex !== undefined && ((BigInt(`0x${hex}`) >> CAP_SYS_NICE) & 1n) === 1n;
}

/** The lowest nice value RLIMIT_NICE lets this process set (20 − the soft limit), from /proc/<pid>/limits; 20: none. */
export function rlimitNiceFloor(limits: string): number {
  const soft = /^Max nice priority\s+(\S+)/m.exec(limits)?.[1];
  if (soft === 'unlimited') return -20;
  const value = Number(soft);
  return Number.isInteger(value) ? 20 - Math.min(40, Math.max(0, value)) : 20;
}

/** What the running process's /proc says (empty where there is none: nothing is niced). */
function readOwnProc(): { status: string; limits: string } {
  const read = (path: string): string => {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return '';
    }
  };
  return { status: read('/proc/self/status'), limits: read('/proc/self/limits') };
}

/**
 * The plan for a child started by this process: niced by `bootNice` above this thread's nice
 * value when the child (with this process's privileges) can return to it; else off, with why.
 */
export function planBootPriority(bootNice: number, current = getPriority(0), proc = readOwnProc()): BootPriority {
  if (bootNice === 0) return { mode: 'off', why: 'bootNice is 0' };
  const nice = Math.min(19, current + bootNice);
  if (nice === current) return { mode: 'off', why: `this process already runs at nice ${current}` };
  if (hasCapSysNice(proc.status)) return { mode: 'niced', nice, restore: current, why: 'CAP_SYS_NICE' };
  const floor = rlimitNiceFloor(proc.limits);
  if (floor <= current) return { mode: 'niced', nice, restore: current, why: `RLIMIT_NICE allows nice ${floor}` };
  return {
    mode: 'off',
    why: `it could not return to nice ${current} without CAP_SYS_NICE or an RLIMIT_NICE of ${20 - current} (systemd LimitNICE=+${current}, docker --ulimit nice=${20 - current})`,
  };
}

/** For log lines: `nice 10 until ready (CAP_SYS_NICE)`, or `off: why`. */
export function describeBootPriority(plan: BootPriority): string {
  return plan.mode === 'niced' ? `nice ${plan.nice} until ready (${plan.why})` : `off: ${plan.why}`;
}

/** The environment a child started under `plan` needs to return to the parent's priority at its ready report. */
export function bootPriorityEnv(plan: BootPriority): Record<string, string> {
  return plan.mode === 'niced' ? { [ENV.niceAfterBoot]: String(plan.restore) } : {};
}

/**
 * Runs `spawn` (synchronous: child_process.spawn, cluster.fork) with this thread lowered to the
 * plan's nice value, then raises it again. Neither may fail the spawn: a lowering refused (a
 * seccomp filter) starts the child at this process's priority, and a raise refused (privileges
 * gone since the plan) is a process warning on stderr, since this process then serves niced.
 */
export function spawnAtBootPriority<T>(plan: BootPriority, spawn: () => T): T {
  if (plan.mode === 'off') return spawn();
  try {
    setPriority(0, plan.nice);
  } catch {
    return spawn();
  }
  try {
    return spawn();
  } finally {
    try {
      setPriority(0, plan.restore);
    } catch (error) {
      process.emitWarning(`grace-restart: could not return to nice ${plan.restore} after starting a process niced: ${String(error)}`);
    }
  }
}

/**
 * In a child started niced: every thread back to the nice value the parent gave (and the
 * variable taken out of the environment, so the child's own children do not read it).
 * Returns what happened, for the ready log line (`ok` false: some thread could not return, or
 * the value was not one); undefined when this process was not niced.
 */
export function returnFromBootPriority(env: NodeJS.ProcessEnv = process.env): { ok: boolean; text: string } | undefined {
  const value = env[ENV.niceAfterBoot];
  delete env[ENV.niceAfterBoot];
  if (value === undefined) return undefined;
  const restore = /^-?[0-9]{1,2}$/.test(value) ? Number(value) : Number.NaN;
  if (!(restore >= -20 && restore <= 19))
    return { ok: false, text: `ignored ${ENV.niceAfterBoot}=${JSON.stringify(value)}: not a nice value` };
  const failed: string[] = [];
  for (const tid of threadIds()) {
    try {
      setPriority(tid, restore);
    } catch (error) {
      // A thread that ended meanwhile is gone (ESRCH); anything else leaves it niced: said.
      if ((error as NodeJS.ErrnoException).code !== 'ESRCH') failed.push(`${tid}: ${(error as Error).message}`);
    }
  }
  if (failed.length === 0) return { ok: true, text: `back to nice ${restore}` };
  return { ok: false, text: `could not return to nice ${restore}: ${failed.join('; ')}` };
}

function threadIds(): number[] {
  try {
    return readdirSync('/proc/self/task').map(Number).filter(Number.isInteger);
  } catch {
    return [process.pid];
  }
}
