/**
 * Turns the command after `--` (`node [node options] script [args]`) into what
 * cluster.fork needs, re-resolved at every fork so that a switched `current` symlink
 * brings the new release.
 */
import { basename, isAbsolute, relative, resolve } from 'node:path';

export interface WorkerCommand {
  execArgv: string[];
  script: string;
  args: string[];
}

/** Node options whose value is the next argument. */
const TAKES_VALUE = new Set([
  '-r',
  '--require',
  '--import',
  '--loader',
  '--experimental-loader',
  '--env-file',
  '--conditions',
  '-C',
  '--title',
]);

export function parseWorkerCommand(argv: readonly string[]): WorkerCommand {
  const rest = [...argv];
  const first = rest[0];
  if (first !== undefined && (first === process.execPath || /^node(js)?(\.exe)?$/.test(basename(first)))) rest.shift();
  else if (first !== undefined && !/\.[cm]?[jt]s$/.test(first)) {
    // `-- python3 app.py` or `-- npm start`: the workers are Node cluster workers.
    throw new Error(`grace-restart run starts Node.js apps: give "-- node [node options] <script>" (or the script's path), not "${first}"`);
  }
  const execArgv: string[] = [];
  while (rest.length > 0 && rest[0]?.startsWith('-')) {
    const option = rest.shift() as string;
    execArgv.push(option);
    if (TAKES_VALUE.has(option) && rest.length > 0) execArgv.push(rest.shift() as string);
  }
  const script = rest.shift();
  if (script === undefined) {
    throw new Error('missing the app to run: grace-restart run [options] -- node dist/server.js');
  }
  if (/\s/.test(script) && rest.length === 0 && argv.length === 1) {
    throw new Error(`"${script}" looks like a whole command line in one argument; pass it as separate words after --`);
  }
  return { execArgv, script, args: rest };
}

/** The script's absolute path, under the directory the supervisor was started from. */
export function scriptPath(command: WorkerCommand, startDir: string): string {
  return resolve(startDir, command.script);
}

/**
 * The script to run from `releaseDir` (a rollback's release) for a command given under
 * `startDir`: a script inside the start directory is the same file of that release; one
 * outside it (an absolute path elsewhere) stays as given.
 */
export function releaseScript(command: WorkerCommand, startDir: string, releaseDir: string): string {
  const script = scriptPath(command, startDir);
  if (releaseDir === startDir) return script;
  const inside = relative(startDir, script);
  return inside.startsWith('..') || isAbsolute(inside) ? script : resolve(releaseDir, inside);
}
