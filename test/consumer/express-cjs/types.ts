// TypeScript in CommonJS mode (package "type": "commonjs", module nodenext): these imports
// compile to require() calls of ES module packages, which TypeScript >= 5.8 accepts for Node's
// require(esm). Run after compiling, it prints what each package exports.
import { createGrace, GraceError, type GraceOptions } from '@grace-restart/core';
import { graceRestart, type GraceRestartMiddleware } from '@grace-restart/express';
import { Supervisor } from '@grace-restart/cli';

const options: GraceOptions = { idleGrace: 3000, upgradeSignal: false, stopSignals: false };
const middleware: GraceRestartMiddleware = graceRestart(createGrace(options));
const loaded: Record<string, string> = {
  createGrace: typeof createGrace,
  GraceError: typeof GraceError,
  graceRestart: typeof graceRestart,
  grace: typeof middleware.grace.upgrade,
  Supervisor: typeof Supervisor,
  moduleSystem: typeof require === 'function' && typeof module === 'object' ? 'commonjs' : 'esm',
};
process.stdout.write(`${JSON.stringify(loaded)}\n`);
