/**
 * The signal surface: which signal is which lifecycle event (lifecycle.ts decides what the
 * event does in the current state).
 * - upgrade signal (SIGUSR2): 'upgrade';
 * - stop signals (SIGTERM, SIGINT): 'stop', and any later one 'stop-again' (exit at once with
 *   the conventional 128 + signal number, as the CLI does);
 * - reload signal (SIGHUP): 'reload'. It is always caught, with or without an `onReload`
 *   hook: left to its default, SIGHUP would kill the process without a drain.
 */
import type { EventEmitter } from 'node:events';
import { constants } from 'node:os';

export interface SignalConfig {
  upgradeSignal: NodeJS.Signals | false;
  stopSignals: readonly NodeJS.Signals[];
  reloadSignal: NodeJS.Signals | false;
}

export interface SignalActions {
  upgrade(signal: NodeJS.Signals): void;
  stop(signal: NodeJS.Signals): void;
  stopAgain(signal: NodeJS.Signals): void;
  reload(signal: NodeJS.Signals): void;
}

/** The exit code of a process ended by a second `signal`: 128 + its number. */
export function signalExitCode(signal: NodeJS.Signals): number {
  return 128 + (constants.signals[signal] ?? 0);
}

/** What {@link installSignalHandlers} installed. */
export interface InstalledSignals {
  /** Removes every handler. */
  uninstall(): void;
  /**
   * Removes the stop handlers only, leaving the stop signals to the app's own handlers (or to
   * their default): for a process whose server grace-restart never saw (grace.ts).
   */
  releaseStopSignals(): void;
}

/** Installs the handlers on `source` (the process, or an EventEmitter in an in-process test). */
export function installSignalHandlers(
  config: SignalConfig,
  actions: SignalActions,
  source: Pick<EventEmitter, 'on' | 'removeListener'> = process,
): InstalledSignals {
  const installed: [NodeJS.Signals, (signal: NodeJS.Signals) => void][] = [];
  const on = (signal: NodeJS.Signals, handler: (signal: NodeJS.Signals) => void): void => {
    source.on(signal, handler);
    installed.push([signal, handler]);
  };
  const remove = (which: (signal: NodeJS.Signals) => boolean): void => {
    for (const [signal, handler] of installed) if (which(signal)) source.removeListener(signal, handler);
  };

  if (config.upgradeSignal !== false) on(config.upgradeSignal, actions.upgrade);
  if (config.reloadSignal !== false) on(config.reloadSignal, actions.reload);
  let stopping = false;
  for (const stopSignal of config.stopSignals) {
    on(stopSignal, (signal) => {
      if (stopping) return actions.stopAgain(signal);
      stopping = true;
      actions.stop(signal);
    });
  }
  return {
    uninstall: () => remove(() => true),
    releaseStopSignals: () => remove((signal) => config.stopSignals.includes(signal)),
  };
}
