// --pin for the latency benches (issue #29): the load generator on a core of its own, the apps
// (every process they fork inherits the mask) on the others. Without it the loader, the serving
// process and the booting successor share every core, and the loader's ~0.6 core at 10 000 req/s
// is CPU the boot takes from the serving process as much as from the loader: a real service's
// clients are on other machines.
//
// BENCH_WRAP=script replaces taskset (with --pin only): the script gets node's path and its
// arguments, and must pin and exec them itself. It is how the profiles in docs/benchmarks.md were
// taken, e.g. `exec taskset --cpu-list 0 "$1" --cpu-prof --cpu-prof-dir=/tmp/prof "${@:2}"`;
// the app's successors inherit node's flags, so each process writes its own profile.
import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';

/**
 * Pins this process (all its threads) to the last CPU when `enabled`; returns the command prefix
 * (taskset, which execs the rest) that starts an app on the other CPUs, and a label for reports.
 */
export function pinLoadGenerator(enabled) {
  if (!enabled) return { wrap: [], label: 'none: load generator and apps share every CPU' };
  const n = cpus().length;
  if (n < 2) throw new Error(`--pin needs 2 CPUs or more, this machine has ${n}`);
  const loader = String(n - 1);
  const apps = n === 2 ? '0' : `0-${n - 2}`;
  execFileSync('taskset', ['--all-tasks', '--pid', '--cpu-list', loader, String(process.pid)], { stdio: 'ignore' });
  return {
    wrap: process.env.BENCH_WRAP ? [process.env.BENCH_WRAP] : ['taskset', '--cpu-list', apps],
    label: `load generator on CPU ${loader}, apps on CPU ${apps}`,
  };
}
