/**
 * `grace-restart status` and `upgrade` without `--pid` or `--pid-file`: the grace-restart
 * processes of this user are the ones answering on a control socket in the control directory
 * (`<pid>.sock`, core's control.ts). One that serves is the target; several are listed.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

/** A process that answered on its control socket. */
export interface Running {
  pid: number;
  mode: 'self' | 'supervisor';
  state: string;
  generation: number;
}

/** States in which a process is still the one to ask: not one that hands over or stops. */
const SERVING = new Set(['starting', 'ready', 'upgrading', 'running']);

/** Asks every `<pid>.sock` in `dir`; sockets nobody answers on (a process gone) are skipped. */
export async function findRunning(dir: string, ask: (socket: string) => Promise<Record<string, unknown> | undefined>): Promise<Running[]> {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const pids = names.map((name) => /^(\d+)\.sock$/.exec(name)?.[1]).filter((pid): pid is string => pid !== undefined);
  const answers = await Promise.all(
    pids.map(async (pid) => ({ pid: Number(pid), status: (await ask(join(dir, `${pid}.sock`)).catch(() => undefined))?.['status'] })),
  );
  return answers.flatMap(({ pid, status }) => {
    if (typeof status !== 'object' || status === null) return [];
    const s = status as Partial<Running>;
    if (s.mode !== 'self' && s.mode !== 'supervisor') return [];
    return [{ pid, mode: s.mode, state: String(s.state), generation: Number(s.generation) }];
  });
}

/** The one serving process of `running`, or why there is none to pick (no target, or several). */
export function pickRunning(running: readonly Running[], dir: string): { pid: number } | { problem: string } {
  const serving = running.filter((r) => SERVING.has(r.state));
  if (serving.length === 1) return { pid: (serving[0] as Running).pid };
  if (serving.length === 0) return { problem: `give --pid-file PATH or --pid N: no grace-restart process of this user answers in ${dir}` };
  const list = serving
    .map((r) => `${r.pid} (${r.mode === 'self' ? 'self-upgrading' : 'supervisor'}, ${r.state}, generation ${r.generation})`)
    .join(', ');
  return { problem: `${serving.length} grace-restart processes of this user answer in ${dir}: ${list}; give --pid N` };
}
