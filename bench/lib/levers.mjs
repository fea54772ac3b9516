// Unprivileged ways to keep a booting successor off the serving process's CPU (issue #29, item 2),
// applied from outside by the bench to decide which is worth building into grace-restart: each
// needs no privilege over a process of one's own user, where `nice` back to 0 does.
//
//  - batch: the successor's threads go to SCHED_BATCH at once and back to SCHED_OTHER when it
//    serves (util-linux chrt). BATCH keeps its weight but gives up wakeup preemption, so a
//    booting thread that wakes does not cut into the serving thread's slice.
//  - duty:RUN/STOP: the successor is stopped (SIGSTOP) for STOP ms after each RUN ms until it
//    serves, as cpulimit does: its boot takes at most RUN/(RUN+STOP) of a core, and longer.
//
// Applied from outside there is a race: the new process runs for the few milliseconds until this
// poll finds it (a 1 ms poll of the parents' children), of its 300–450 ms boot.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';

const childrenOf = (pid) => {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const chrt = (args) => new Promise((resolve) => execFile('chrt', args, (error) => resolve(error)));
const signal = (pid, sig) => {
  try {
    process.kill(pid, sig);
  } catch {
    // gone
  }
};

/** Waits (1 ms polls, up to 5 s) for a child of one of `parents` that is not in `known`. */
async function newChild(parents, known) {
  const deadline = performance.now() + 5000;
  while (performance.now() < deadline) {
    for (const parent of parents) {
      const child = childrenOf(parent).find((pid) => !known.has(pid));
      if (child !== undefined) return child;
    }
    await sleep(1);
  }
  return undefined;
}

/** Parses --lever: 'none', 'batch' or 'duty:RUN/STOP' (ms). */
export function parseLever(text = 'none') {
  if (text === 'none' || text === 'batch') return { kind: text };
  const duty = /^duty:(\d+)\/(\d+)$/.exec(text);
  if (duty) return { kind: 'duty', runMs: Number(duty[1]), stopMs: Number(duty[2]) };
  throw new Error(`--lever: ${text} is none, batch or duty:RUN/STOP`);
}

/**
 * Applies `lever` to the next process the `parents` start (the successor, or a new worker) until
 * `serving()` says it serves. Resolves with { pid, appliedAfterMs } once it let go.
 */
export async function applyLever(lever, { parents, serving }) {
  if (lever.kind === 'none') return undefined;
  const known = new Set(parents.flatMap(childrenOf));
  const t0 = performance.now();
  const pid = await newChild(parents, known);
  if (pid === undefined) return { error: 'no new process found' };
  const appliedAfterMs = performance.now() - t0;
  if (lever.kind === 'batch') {
    const error = await chrt(['--batch', '--all-tasks', '--pid', '0', String(pid)]);
    while (!serving()) await sleep(2);
    await chrt(['--other', '--all-tasks', '--pid', '0', String(pid)]);
    return { pid, appliedAfterMs, error: error?.message };
  }
  while (!serving()) {
    await sleep(lever.runMs);
    if (serving()) break;
    signal(pid, 'SIGSTOP');
    await sleep(lever.stopMs);
    signal(pid, 'SIGCONT');
  }
  signal(pid, 'SIGCONT');
  return { pid, appliedAfterMs };
}
