/** `grace-restart status`: generation, workers and uptime of a supervisor or a self-upgrading app. */
import { controlSocketPath, type SelfStatus } from '@grace-restart/core/internal';
import { parseFlags } from '../flags.js';
import type { SupervisorStatus } from '../supervisor.js';
import { askControl, targetPid } from './target.js';

export async function status(argv: string[]): Promise<number> {
  const { values } = parseFlags('status', argv, {
    'pid-file': { type: 'string' },
    pid: { type: 'string' },
    json: { type: 'boolean' },
    'control-dir': { type: 'string' },
  });
  const pid = await targetPid(values);
  const socket = controlSocketPath(pid, values['control-dir']);
  const response = await askControl(socket, { cmd: 'status' }, 5_000);
  if (response === undefined) {
    const line = { mode: 'unknown', pid, running: true };
    process.stdout.write(
      values.json
        ? `${JSON.stringify(line)}\n`
        : `pid ${pid} is running, without a control socket (controlDir: false, or not a grace-restart process)\n`,
    );
    return 0;
  }
  const s = response['status'] as SupervisorStatus | SelfStatus;
  process.stdout.write(values.json ? `${JSON.stringify(s)}\n` : `${describeStatus(s)}\n`);
  return 0;
}

function describeStatus(s: SupervisorStatus | SelfStatus): string {
  if (s.mode === 'self') {
    const parent = s.parentPid === undefined ? '' : `, took over from ${s.parentPid}`;
    const answered = s.answers === undefined ? '' : `\n  answered ${s.answers.requests} requests, ${s.answers.errors5xx} with 5xx`;
    return `process ${s.pid}: ${s.state}, generation ${s.generation}, up ${Math.round(s.uptimeMs / 1000)}s${parent} (self-upgrading)${answered}`;
  }
  const rows = s.workers.map(
    (w) =>
      `  ${String(w.pid).padEnd(8)} ${String(w.slot).padEnd(5)} ${String(w.generation).padEnd(11)} ${w.state.padEnd(9)} ${Math.round(w.uptimeMs / 1000)}s`,
  );
  const rollback =
    s.lastUpgrade?.trigger === 'rollback' && s.lastUpgrade.ok
      ? [`  rolled back from a bad release: generation ${s.lastUpgrade.generation} runs the previous release`]
      : [];
  return [
    `supervisor ${s.pid}: ${s.state}, generation ${s.generation}, up ${Math.round(s.uptimeMs / 1000)}s, release ${s.release}`,
    ...rollback,
    `  ${'PID'.padEnd(8)} ${'SLOT'.padEnd(5)} ${'GENERATION'.padEnd(11)} ${'STATE'.padEnd(9)} UPTIME`,
    ...rows,
    ...(s.generations ?? []).map((g) => `  generation ${g.generation}: answered ${g.requests} requests, ${g.errors5xx} with 5xx`),
  ].join('\n');
}
