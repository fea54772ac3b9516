// The ways to replace a running app with a new version, behind one interface so every scenario
// (and the demo) drives them identically:
//   const handle = await METHODS[id].start({ framework, port, dir })
//   await handle.trigger()   // start one replacement, return once it has been triggered
//   await handle.stop()      // stop everything this method started
// `start` resolves once the app answers GET / with 200. A method whose prerequisites are missing
// (an unbuilt example or CLI) has `unavailable(framework)` return the reason.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { adapterApp, bareApp, cliBin, PM2_BIN } from './apps.mjs';
import {
  isAlive,
  killQuietly,
  onCleanup,
  readPid,
  runCommand,
  runCommandSync,
  startProcess,
  track,
  waitForHttp,
  waitGone,
} from './procs.mjs';

const baseEnv = (port) => ({ PORT: String(port), HOST: '127.0.0.1', NODE_ENV: 'production' });

/** `node args` as [file, args], behind `wrap` (a command that execs the rest: setpriv, to run the app as another user). */
const nodeCommand = (wrap, args) =>
  wrap.length === 0 ? [process.execPath, args] : [wrap[0], [...wrap.slice(1), process.execPath, ...args]];

/** Stops the given pids: `signal` first, SIGKILL for whatever is left after `graceMs`. */
async function stopPids(pids, signal = 'SIGTERM', graceMs = 5000) {
  const alive = [...pids].filter(isAlive);
  for (const pid of alive) killQuietly(pid, signal);
  await Promise.all(alive.map((pid) => waitGone(pid, graceMs)));
  for (const pid of alive) if (isAlive(pid)) killQuietly(pid, 'SIGKILL');
}

/** Serving is not enough: an upgrade needs the app to have reported ready, which writes the PID file. */
async function waitForPidFile(pidFile, what) {
  const deadline = Date.now() + 5000;
  while (readPid(pidFile) === undefined) {
    if (Date.now() > deadline) throw new Error(`${what} serves but never reported ready (no pid in its PID file after 5 s)`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Starts `node file` and collects every pid it becomes in `pids`. */
function startNodeApp(file, env, pids) {
  const proc = startProcess(process.execPath, [file], { env, onEvent: (e) => typeof e.pid === 'number' && pids.add(e.pid) });
  pids.add(proc.pid);
  return proc;
}

/**
 * grace-restart self-upgrade: SIGUSR2 to whichever pid the PID file names. `move` sets live
 * connection handoff through core's kill switch GRACE_RESTART_MOVE_CONNECTIONS (1 or 0; unset:
 * core's default). The handle's `drains` collects core's "drained" log line of each process that
 * drained after an upgrade ({ pid, moved, connections, closedIdle, forced }).
 */
function graceMethod({ id, label, move }) {
  return {
    id,
    label,
    app: 'adapter',
    move,
    unavailable: (framework) => adapterApp(framework).missing,
    async start({ framework, port, dir, env = {}, wrap = [] }) {
      const pidFile = join(dir, `${framework}-${port}.pid`);
      const pids = new Set();
      const drains = [];
      const moveEnv = move === undefined ? {} : { GRACE_RESTART_MOVE_CONNECTIONS: move ? '1' : '0' };
      // Successors write to the same stdout, so their lines come through this one pipe.
      const proc = startProcess(...nodeCommand(wrap, [adapterApp(framework).path]), {
        env: { ...baseEnv(port), PID_FILE: pidFile, ...moveEnv, ...env },
        onEvent: (e) => {
          if (typeof e.pid === 'number') pids.add(e.pid);
          if (e.msg === 'drained' && e.reason === 'upgrade')
            drains.push({ pid: e.pid, moved: e.moved, connections: e.connections, closedIdle: e.closedIdle, forced: e.forced });
        },
      });
      pids.add(proc.pid);
      await waitForHttp({ port, proc, what: `${framework} (grace-restart)` });
      await waitForPidFile(pidFile, `${framework} example`);
      return {
        proc,
        pids,
        drains,
        currentPid: () => readPid(pidFile),
        /** Ready = the PID file names a new, live process (core writes it when the successor is ready). */
        isReady: (oldPids) => {
          const pid = readPid(pidFile);
          return pid !== undefined && !oldPids.has(pid) && isAlive(pid);
        },
        async trigger() {
          const pid = readPid(pidFile);
          if (pid === undefined) throw new Error(`no pid in ${pidFile}`);
          track(pid);
          pids.add(pid);
          process.kill(pid, 'SIGUSR2');
        },
        async stop() {
          const pid = readPid(pidFile);
          if (pid !== undefined) pids.add(pid);
          await stopPids(pids);
        },
      };
    },
  };
}

const grace = graceMethod({ id: 'grace', label: 'grace-restart (SIGUSR2 self-upgrade)' });

/** A supervisor that restarts: stop the old process, then start the new one (bare app). */
function restartMethod({ id, label, graceful }) {
  return {
    id,
    label,
    app: 'bare',
    unavailable: () => undefined,
    async start({ framework, port, env = {} }) {
      const pids = new Set();
      const appEnv = { ...baseEnv(port), GRACEFUL: graceful ? '1' : '0', ...env };
      let proc = startNodeApp(bareApp(framework).path, appEnv, pids);
      await waitForHttp({ port, proc, what: `${framework} (bare)` });
      return {
        pids,
        currentPid: () => proc.pid,
        async trigger() {
          // As systemd or a container runtime does it: SIGTERM, wait for the exit, start again.
          proc.child.kill('SIGTERM');
          await proc.exited;
          proc = startNodeApp(bareApp(framework).path, appEnv, pids);
        },
        async stop() {
          await stopPids(pids);
        },
      };
    },
  };
}

/** `pm2 reload` in cluster mode: pm2 starts a new worker, waits for it, then SIGINTs the old one. */
function pm2Method(instances) {
  return {
    id: `pm2-${instances}`,
    label: `pm2 reload, cluster ×${instances}`,
    app: 'bare',
    unavailable: () => undefined,
    async start({ framework, port, dir, env = {} }) {
      // A private daemon per run: never touches the user's own pm2.
      const home = join(dir, `pm2-${framework}-${instances}-${port}`);
      const pm2Env = { PM2_HOME: home, PM2_DISABLE_VERSION_CHECK: 'true' };
      const pm2 = (...args) => runCommand(PM2_BIN, args, { env: pm2Env });
      const unregister = onCleanup(() => runCommandSync(PM2_BIN, ['kill'], { env: pm2Env }));
      const ecosystem = join(dir, `pm2-${framework}-${instances}-${port}.json`);
      writeFileSync(
        ecosystem,
        JSON.stringify({
          apps: [
            {
              name: 'bench-app',
              script: bareApp(framework).path,
              exec_mode: 'cluster',
              instances,
              // pm2's documented graceful setup: wait for process.send('ready'), SIGINT the old
              // worker, SIGKILL after kill_timeout; the bare app drains on SIGINT.
              wait_ready: true,
              listen_timeout: 10_000,
              kill_timeout: 5_000,
              env: { ...baseEnv(port), GRACEFUL: '1', ...env },
            },
          ],
        }),
      );
      const started = await pm2('start', ecosystem);
      if (started.code !== 0) throw new Error(`pm2 start failed: ${started.stderr || started.stdout}`);
      track(readPid(join(home, 'pm2.pid')));
      await waitForHttp({ port, what: `${framework} under pm2` });
      return {
        pids: new Set(),
        currentPid: () => undefined,
        async trigger() {
          const result = await pm2('reload', 'bench-app');
          if (result.code !== 0) throw new Error(`pm2 reload failed: ${result.stderr || result.stdout}`);
        },
        async stop() {
          await pm2('kill');
          unregister();
        },
      };
    },
  };
}

/** `grace-restart run --workers N`: the CLI supervisor holds the socket and rolls its workers. */
function supervisorMethod(workers) {
  return {
    id: `supervisor-${workers}`,
    label: `grace-restart run, ${workers} worker${workers > 1 ? 's' : ''}`,
    app: 'adapter',
    unavailable: (framework) => cliBin().missing ?? adapterApp(framework).missing,
    async start({ framework, port, dir, env = {}, wrap = [] }) {
      const pidFile = join(dir, `supervisor-${framework}-${workers}-${port}.pid`);
      const pids = new Set();
      const args = [
        cliBin().path,
        'run',
        '--workers',
        String(workers),
        '--pid-file',
        pidFile,
        '--log-level',
        'warn',
        '--',
        process.execPath,
        adapterApp(framework).path,
      ];
      const proc = startProcess(...nodeCommand(wrap, args), {
        env: { ...baseEnv(port), ...env },
        onEvent: (e) => typeof e.pid === 'number' && pids.add(e.pid),
      });
      await waitForHttp({ port, proc, what: `${framework} under grace-restart run` });
      // The supervisor writes its PID file once every worker has reported ready.
      await waitForPidFile(pidFile, `${framework} under grace-restart run`);
      return {
        proc,
        pids,
        // The supervisor's pid never changes; the processes that serve are its workers, which
        // the load generator learns from their answers.
        currentPid: () => undefined,
        // SIGUSR2 to the supervisor, as an operator's `kill -USR2` or systemd's ExecReload would:
        // trigger -> serving then measures the upgrade, not the start-up of a `grace-restart
        // upgrade` process (a Node process of its own, ~150 ms of CPU on this busy machine).
        // The runner waits for the new version to serve and for the next slot, so upgrades 3 s
        // apart do not overlap; the CLI's own path is tested in packages/cli.
        async trigger() {
          const pid = readPid(pidFile);
          if (pid === undefined) throw new Error(`no pid in ${pidFile}`);
          process.kill(pid, 'SIGUSR2');
        },
        async stop() {
          proc.child.kill('SIGTERM');
          await Promise.race([proc.exited, new Promise((r) => setTimeout(r, 10_000))]);
          await stopPids([proc.pid, ...pids], 'SIGKILL', 1000);
        },
      };
    },
  };
}

export const METHODS = Object.fromEntries(
  [
    grace,
    // Live connection handoff on and off, whatever core's default: the upstream-pool scenario.
    graceMethod({ id: 'grace-move', label: 'grace-restart, moveConnections on', move: true }),
    graceMethod({ id: 'grace-nomove', label: 'grace-restart, moveConnections off', move: false }),
    supervisorMethod(1),
    supervisorMethod(2),
    restartMethod({ id: 'restart', label: 'plain restart (SIGTERM, then start)', graceful: false }),
    restartMethod({ id: 'graceful', label: 'graceful close (close + closeIdleConnections), then start', graceful: true }),
    pm2Method(1),
    pm2Method(2),
  ].map((m) => [m.id, m]),
);
