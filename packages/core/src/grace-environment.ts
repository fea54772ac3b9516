/**
 * Everything a Grace instance takes from the process around it: what the process inherited
 * (listeners, the handoff, supervision, systemd), its signals, the successor it starts, and
 * its exit. The real process by default; an in-process test gives a fake one (an
 * EventEmitter for signals, a successor that reports ready or dies on cue, an exit that
 * records its code), as tableflip's upgrader takes its `env`.
 */
import type { EventEmitter } from 'node:events';
import { spawnSuccessor, type ReadySuccessor, type SpawnSuccessorOptions } from './handoff.js';
import { takeProcessEnv, type ProcessEnv } from './process-env.js';

/** Where signals arrive: `process`, or an EventEmitter in a test. */
export type SignalSource = Pick<EventEmitter, 'on' | 'removeListener' | 'listenerCount'>;

/** @internal Not public API: the seam between a Grace instance and its process. */
export interface GraceEnvironment {
  /** What the process inherited; read (and removed from process.env) once per process. */
  inherited(): ProcessEnv;
  /** Where the upgrade, stop and reload signals arrive. */
  readonly signals: SignalSource;
  /** Starts the successor and resolves once it reported ready (handoff.ts). */
  spawnSuccessor(options: SpawnSuccessorOptions): Promise<ReadySuccessor>;
  /** Sends a signal to another process (the supervisor, for a worker's SIGUSR2); 0 asks whether it runs. */
  kill(pid: number, signal: NodeJS.Signals | 0): void;
  /** Ends the process. */
  exit(code: number): void;
}

/** The process this code runs in. */
export const processEnvironment: GraceEnvironment = {
  inherited: takeProcessEnv,
  signals: process,
  spawnSuccessor,
  kill: (pid, signal) => process.kill(pid, signal),
  exit: (code) => process.exit(code),
};
