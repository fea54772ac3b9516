/**
 * The signal surface: what each signal means to a grace-restart process.
 * - upgrade signal (SIGUSR2): start a successor and hand it the listeners;
 * - stop signals (SIGTERM, SIGINT): drain and exit; a second one exits at once;
 * - reload signal (SIGHUP): call `onReload`, only when one is given (else SIGHUP keeps its
 *   default meaning).
 */
import { constants } from 'node:os';

export interface SignalConfig {
  upgradeSignal: NodeJS.Signals | false;
  stopSignals: readonly NodeJS.Signals[];
  reloadSignal: NodeJS.Signals | false;
}

export interface SignalActions {
  upgrade(signal: NodeJS.Signals): void;
  stop(signal: NodeJS.Signals): void;
  /** Present only when the app gave an `onReload` hook. */
  reload: ((signal: NodeJS.Signals) => void) | undefined;
}

/** Installs the handlers; returns a function that removes them. */
export function installSignalHandlers(config: SignalConfig, actions: SignalActions): () => void {
  const installed: [NodeJS.Signals, (signal: NodeJS.Signals) => void][] = [];
  const on = (signal: NodeJS.Signals, handler: (signal: NodeJS.Signals) => void): void => {
    process.on(signal, handler);
    installed.push([signal, handler]);
  };

  if (config.upgradeSignal !== false) on(config.upgradeSignal, actions.upgrade);
  if (config.reloadSignal !== false && actions.reload !== undefined) on(config.reloadSignal, actions.reload);
  let stopping = false;
  for (const stopSignal of config.stopSignals) {
    on(stopSignal, (signal) => {
      if (stopping) {
        // The operator insists: exit now, with the conventional 128 + signal number.
        process.exit(128 + (constants.signals[signal] ?? 0));
      }
      stopping = true;
      actions.stop(signal);
    });
  }
  return () => {
    for (const [signal, handler] of installed) process.removeListener(signal, handler);
  };
}
