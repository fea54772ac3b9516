// What /proc says about a process, read from outside: its children and its threads' nice values.
import { readdirSync, readFileSync } from 'node:fs';
import { waitFor } from './process.mjs';

/** The nice value of each thread of `pid` (field 19 of /proc/<pid>/task/<tid>/stat), or undefined once it is gone. */
export function threadNices(pid) {
  try {
    return readdirSync(`/proc/${pid}/task`).map((tid) => {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      // Fields from the 3rd on follow the command name, which may hold spaces, in parentheses.
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
    });
  } catch {
    return undefined;
  }
}

/** The pids of `pid`'s children (its main thread's). */
export function childrenOf(pid) {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Waits for a child of `pid` (other than those in `except`) whose runtime has started its threads; its pid. */
export function newChildWithThreads(pid, { except = [], what = 'the new child and its threads' } = {}) {
  return waitFor(() => childrenOf(pid).find((child) => !except.includes(child) && (threadNices(child)?.length ?? 0) > 1), { what });
}
