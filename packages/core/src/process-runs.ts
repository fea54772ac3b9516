/**
 * Whether process `pid` runs: signal 0 reaches it, or is refused only for want of permission
 * (EPERM: it runs as another user). `kill` is the process's own unless the caller has a seam.
 */
export function processRuns(pid: number, kill: (pid: number, signal: 0) => void = (p, s) => process.kill(p, s)): boolean {
  try {
    kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
