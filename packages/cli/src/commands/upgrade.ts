/**
 * `grace-restart upgrade`: triggers an upgrade of a supervisor (its workers, or with
 * `--supervisor` the supervisor process itself) or of a self-upgrading app, and prints the
 * outcome; exit 0 only if the new version serves.
 */
import { readPidFile } from '@grace-restart/core';
import { controlSocketPath, signalExitCode, type UpgradeOutcome } from '@grace-restart/core/internal';
import { CliError } from '../cli-errors.js';
import { FLAG_DEFAULTS, integer, parseFlags } from '../flags.js';
import type { SupervisorHandoverOutcome } from '../supervisor-handover.js';
import { askControl, assertCatchesSigusr2, targetPid } from './target.js';

/** The code a failed upgrade carries in `--json` output: core's, as the outcome is the same. */
const UPGRADE_FAILED = 'GRACE_ERR_UPGRADE_FAILED';

/** `value` as one JSON line, with the failure's code when it is not ok. */
function jsonLine(value: Record<string, unknown>): string {
  return `${JSON.stringify(value['ok'] === true ? value : { ...value, code: UPGRADE_FAILED })}\n`;
}

export async function upgrade(argv: string[]): Promise<number> {
  const { values } = parseFlags('upgrade', argv, {
    'pid-file': { type: 'string' },
    pid: { type: 'string' },
    timeout: { type: 'string' },
    json: { type: 'boolean' },
    'control-dir': { type: 'string' },
    supervisor: { type: 'boolean' },
  });
  const pid = await targetPid(values);
  const timeout = integer(values.timeout, '--timeout', FLAG_DEFAULTS.upgradeTimeout);
  const socket = controlSocketPath(pid, values['control-dir']);
  stopWaitingOnSignals(pid);
  if (values.supervisor === true) return upgradeSupervisor(pid, socket, timeout, values.json === true);
  const response = await askControl(socket, { cmd: 'upgrade' }, timeout);
  if (response !== undefined) {
    const outcome = response['outcome'] as UpgradeOutcome | undefined;
    if (values.json) process.stdout.write(jsonLine(response));
    else if (outcome) process.stdout.write(`${describeOutcome(outcome)}\n`);
    else process.stdout.write(`upgrade failed: ${String(response['error'])}\n`);
    if (response['ok'] === true) return 0;
    // A stop cut the upgrade short. Run by systemd (ExecReload=), that stop is systemd's own: exit 0,
    // as on the SIGTERM it sends, or the stopped unit would be left `failed` (whichever comes first).
    return outcome?.aborted === true && process.env['INVOCATION_ID'] !== undefined ? 0 : 1;
  }
  return upgradeSelf(pid, values['pid-file'], timeout, values.json === true);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * A process without a control socket (created with `controlDir: false`, or by an older
 * version): SIGUSR2, then watch the PID file and both pids. The upgrade holds once the old
 * process has exited after its successor's probation (a successor that dies within it is
 * rolled back: the old process names itself in the PID file again).
 */
async function upgradeSelf(pid: number, pidFile: string | undefined, timeout: number, json: boolean): Promise<number> {
  const started = Date.now();
  assertCatchesSigusr2(pid);
  process.kill(pid, 'SIGUSR2');
  let newPid: number | undefined;
  while (Date.now() - started < timeout) {
    const current = pidFile === undefined ? undefined : readPidFile(pidFile);
    if (current !== undefined && current !== pid && alive(current)) newPid = current;
    if (!alive(pid) && (pidFile === undefined || newPid !== undefined)) {
      const result = { ok: true, oldPid: pid, newPid, doneMs: Date.now() - started };
      const text =
        newPid === undefined
          ? `upgraded: ${pid} handed over and exited`
          : `upgraded: ${pid} -> ${newPid}; ${pid} let go after its successor's probation and exited (~${result.doneMs} ms)`;
      process.stdout.write(json ? jsonLine(result) : `${text}\n`);
      return 0;
    }
    if (newPid !== undefined && !alive(newPid)) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const message =
    newPid !== undefined && !alive(newPid)
      ? `upgrade failed: the successor ${newPid} died during its probation; ${pid} serves again (see the process logs)`
      : `upgrade failed: ${pid} still serves after ${timeout} ms (the successor failed and was rolled back, is still starting, or ${pid} still drains); see the process logs`;
  process.stdout.write(json ? jsonLine({ ok: false, oldPid: pid, newPid, error: message }) : `${message}\n`);
  return 1;
}

/**
 * A stop signal while `upgrade` waits ends the wait, never the upgrade: that is the service's
 * to finish or abort. Run by systemd (`ExecReload=`, INVOCATION_ID set), SIGTERM means systemd
 * is stopping the unit (or gave up on the reload, which it reports itself): exit 0 then, or
 * the killed reload would leave the stopped unit `failed` (Result=signal). Otherwise the
 * usual 128 + signal number.
 */
function stopWaitingOnSignals(pid: number): void {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      const systemdStopping = signal === 'SIGTERM' && process.env['INVOCATION_ID'] !== undefined;
      process.stdout.write(
        `grace-restart upgrade: stopped waiting (${signal}); the upgrade of ${pid} is the service's to finish or abort${systemdStopping ? ' (systemd is stopping the unit or gave up on this reload)' : ''}: see grace-restart status\n`,
      );
      process.exit(systemdStopping ? 0 : signalExitCode(signal));
    });
  }
}

/** `upgrade --supervisor`: replaces the supervisor process itself, through its control socket. */
async function upgradeSupervisor(pid: number, socket: string, timeout: number, json: boolean): Promise<number> {
  const response = await askControl(socket, { cmd: 'upgrade-supervisor' }, timeout);
  if (response === undefined)
    throw new CliError(
      'GRACE_ERR_NOT_GRACE',
      `process ${pid} has no control socket at ${socket} that answers: it is not a grace-restart run supervisor (or give its --control-dir)`,
    );
  const outcome = response['supervisorUpgrade'] as SupervisorHandoverOutcome | undefined;
  if (json) process.stdout.write(jsonLine(response));
  else if (outcome?.ok === true) {
    process.stdout.write(
      `supervisor upgraded: ${outcome.oldPid} -> ${outcome.newPid} in ${outcome.durationMs} ms, serving generation ${outcome.generation}; the old supervisor drains its workers and exits\n`,
    );
  } else process.stdout.write(`supervisor upgrade failed, ${pid} serves on: ${String(outcome?.error ?? response['error'])}\n`);
  return response['ok'] === true ? 0 : 1;
}

function describeOutcome(outcome: UpgradeOutcome): string {
  const lines = outcome.replaced.map((r) => `  slot ${r.slot}: ${r.oldPid ?? '-'} -> ${r.newPid} (ready in ${r.readyMs} ms)`);
  const probation = outcome.probationMs === undefined ? '' : `, and served through its ${outcome.probationMs} ms probation`;
  const head = outcome.ok
    ? `upgraded to generation ${outcome.generation} in ${outcome.durationMs} ms${probation}`
    : `upgrade failed after ${outcome.durationMs} ms, still serving generation ${outcome.generation}: ${outcome.error}`;
  return [head, ...lines].join('\n');
}
