/**
 * A process started by a wrapper that waits for it (`npm start`, `npx tsx`, nodemon): an
 * upgrade ends the first process, so the wrapper exits with it and the new version serves on
 * without it, out of reach of the terminal's Ctrl-C, or (npm as a container's PID 1) the
 * container ends. Nothing fails at the moment, so the process says so at its first ready
 * (issue #26). Linux: the ancestors are read from /proc; elsewhere nothing is found.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

/** A wrapper that waits for this process. */
export interface ForegroundWrapper {
  pid: number;
  /** Its command line, as `ps` shows it. */
  command: string;
}

/** Runners whose own process lives only as long as the app's (argv[0] or process title). */
const RUNNERS = new Set(['npm', 'npx', 'pnpm', 'yarn', 'bun', 'tsx', 'ts-node', 'nodemon']);
/** Scripts node runs for them (argv[1]). */
const RUNNER_SCRIPT = /(?:^|\/)(?:npm-cli\.js|npx-cli\.js|yarn\.c?js|pnpm\.c?js|tsx|ts-node|nodemon)$|\/tsx\/dist\/cli\.m?js$/;

type ReadProc = (pid: number, file: 'cmdline' | 'stat') => string | undefined;
const readProc: ReadProc = (pid, file) => {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return undefined;
  }
};

/** The wrapper among this process's nearest ancestors (through `sh -c`), or undefined. */
export function foregroundWrapper(ppid: number = process.ppid, read: ReadProc = readProc): ForegroundWrapper | undefined {
  let pid = ppid;
  for (let depth = 0; depth < 4 && pid > 0; depth++) {
    const argv = read(pid, 'cmdline')?.split('\0').filter(Boolean);
    if (argv === undefined || argv.length === 0) return undefined;
    const command = argv.join(' ');
    const first = (argv[0] ?? '').split(' ')[0] ?? '';
    if (RUNNERS.has(basename(first)) || RUNNER_SCRIPT.test(argv[1] ?? '')) return { pid, command };
    // npm runs a script through `sh -c`: look at who started the shell.
    if (!(['sh', 'bash', 'dash'].includes(basename(first)) && argv[1] === '-c')) return undefined;
    const stat = read(pid, 'stat');
    pid = stat === undefined ? 0 : Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  }
  return undefined;
}

/** What an operator reads. */
export function foregroundWrapperMessage(wrapper: ForegroundWrapper, pidFile: string | undefined): string {
  const stop = pidFile === undefined ? `kill -TERM <pid>` : `kill -TERM $(cat ${pidFile})`;
  return (
    `grace-restart: started by \`${wrapper.command}\` (pid ${wrapper.pid}), which exits when this process hands over at an upgrade: ` +
    'the new version then serves on without it, out of reach of Ctrl-C (and a container whose PID 1 it is ends). ' +
    `Start the app with node itself where it is upgraded (or under grace-restart run, systemd, Docker); stop this one with ${stop}`
  );
}
