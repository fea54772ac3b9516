#!/usr/bin/env node
// The systemd recipes of docs/operations.md, tried against a real systemd as PID 1.
//
//   sudo node test/systemd/rehearse.mjs        (after npm ci && npm run build)
//   sudo ONLY=activatedSupervisorUnit node test/systemd/rehearse.mjs   (some scenarios only)
//
// Needs root, `debootstrap` and `systemd-nspawn` (apt-get install debootstrap systemd-container).
// Builds a Debian bookworm tree once (ROOTFS, default /var/lib/grace-nspawn/bookworm), boots it
// with `systemd-nspawn --boot`, binding this machine's node binary and this checkout read-only.
// The container shares this machine's network, so the units listen on 127.0.0.1 and load is sent
// from here. Drives it with `nsenter -t <its PID 1> -a systemctl …`; powers it off at the end.
// Prints one line per check and a summary; exits 1 if an expected outcome was not met.
import { execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request, startLoad } from '../helpers/load.mjs';
import { freePort, waitFor } from '../helpers/process.mjs';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const ROOTFS = process.env.ROOTFS ?? '/var/lib/grace-nspawn/bookworm';
const MIRROR = process.env.MIRROR ?? 'http://deb.debian.org/debian';
const NODE = realpathSync(process.execPath);
const CLI = `/usr/local/bin/node ${REPO}/packages/cli/dist/bin.js`;
const results = [];

let container;
function check(name, ok, detail, unit) {
  results.push({ name, ok, detail });
  console.log(`${ok ? 'PASS' : 'FAIL'}  ${name}: ${detail}`);
  // What the unit logged, to see why.
  if (!ok && unit && container)
    console.log(container.run('journalctl', '--no-pager', '-o', 'cat', '-n', '40', '-u', unit).stdout.replace(/^/gm, '      | '));
}

function ensureRootfs() {
  if (existsSync(join(ROOTFS, 'usr/lib/systemd/systemd'))) return;
  console.log(`debootstrap bookworm into ${ROOTFS} (a few minutes, once)…`);
  mkdirSync(ROOTFS, { recursive: true });
  execFileSync('debootstrap', ['--variant=minbase', '--include=systemd,systemd-sysv,dbus,procps,libstdc++6', 'bookworm', ROOTFS, MIRROR], {
    stdio: 'inherit',
  });
}

/** Boots the tree; resolves { leader, run(cmd…), stop() } once systemd reports running. */
async function boot() {
  writeFileSync(join(ROOTFS, 'etc/hostname'), 'grace-rehearsal\n');
  const args = [
    '--boot',
    '--register=no',
    '--keep-unit',
    '-D',
    ROOTFS,
    `--bind-ro=${NODE}:/usr/local/bin/node`,
    `--bind-ro=${REPO}`,
    '--console=passive',
  ];
  const nspawn = spawn('systemd-nspawn', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  nspawn.stdout.on('data', (d) => (log += d));
  nspawn.stderr.on('data', (d) => (log += d));
  const exited = new Promise((resolve) => nspawn.once('exit', resolve));
  // On SIGTERM nspawn powers the booted container off cleanly.
  const abandon = (error) => {
    nspawn.kill('SIGTERM');
    throw error;
  };
  const leader = await waitFor(
    () => {
      if (nspawn.exitCode !== null) throw new Error(`systemd-nspawn exited ${nspawn.exitCode}: ${log}`);
      // nspawn forks twice before the container's init execs: wait for systemd itself.
      return readChildren(nspawn.pid).find((pid) => readComm(pid) === 'systemd');
    },
    { timeout: 30_000, what: 'the container to start' },
  ).catch(abandon);
  const run = (...cmd) => spawnSync('nsenter', ['-t', String(leader), '-a', ...cmd], { encoding: 'utf8', timeout: 120_000 });
  // While load runs from this process: spawnSync would stall its clients for the command's whole
  // duration, and their latency and idle timeouts would measure that stall.
  const runAsync = (...cmd) =>
    new Promise((resolve) => {
      execFile('nsenter', ['-t', String(leader), '-a', ...cmd], { encoding: 'utf8', timeout: 120_000 }, (error, stdout, stderr) => {
        resolve({ status: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
      });
    });
  await waitFor(() => /^(running|degraded)/.test(run('systemctl', 'is-system-running').stdout), {
    timeout: 60_000,
    what: 'systemd in the container to finish booting',
  }).catch(abandon);
  console.log(`container booted: ${run('systemctl', '--version').stdout.split('\n')[0]} as PID 1 (host pid ${leader})`);
  return {
    leader,
    run,
    runAsync,
    async stop() {
      run('systemctl', 'poweroff');
      const done = await Promise.race([exited.then(() => true), new Promise((r) => setTimeout(() => r(false), 30_000))]);
      if (!done) nspawn.kill('SIGKILL');
    },
  };
}

function readChildren(pid) {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function readComm(pid) {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

function installUnit(name, text) {
  writeFileSync(join(ROOTFS, 'etc/systemd/system', name), text);
}

const show = (c, unit, prop) => c.run('systemctl', 'show', '-p', prop, '--value', unit).stdout.trim();
/** The unit's MainPID once it is another process than `before` and `before` has exited; undefined after 30 s. */
const mainPidMovedFrom = (c, unit, before, what) =>
  waitFor(
    () => {
      const p = show(c, unit, 'MainPID');
      return p !== before && p !== '0' && c.run('kill', '-0', before).status !== 0 && p;
    },
    { timeout: 30_000, what },
  ).catch(() => undefined);
/** Children of `pid` inside the container (its pid namespace). */
const childrenIn = (c, pid) => c.run('cat', `/proc/${pid}/task/${pid}/children`).stdout.trim().split(/\s+/).filter(Boolean).map(Number);
const timed = (fn) => {
  const t0 = Date.now();
  const r = fn();
  return { ...r, ms: Date.now() - t0 };
};
const timedAsync = async (fn) => {
  const t0 = Date.now();
  const r = await fn();
  return { ...r, ms: Date.now() - t0 };
};

async function supervisorUnit(c) {
  const port = await freePort();
  installUnit(
    'app-supervisor.service',
    `[Unit]
Description=grace-restart rehearsal: the supervisor recipe
[Service]
Type=notify
NotifyAccess=all
WorkingDirectory=${REPO}/examples/fastify
Environment=PORT=${port} HOST=127.0.0.1
ExecStart=${CLI} run --workers 2 --pid-file /run/app/app.pid -- node dist/server.js
ExecReload=${CLI} upgrade --pid-file /run/app/app.pid
# After a supervisor upgrade the main process is not systemd's child: on cgroup v1 systemd does
# not wait for it (SIGKILL mid-drain): stop it and wait for its drain here.
ExecStop=/bin/sh -c 'kill -TERM $MAINPID; while kill -0 $MAINPID 2>/dev/null; do sleep 0.2; done'
RuntimeDirectory=app
KillSignal=SIGTERM
# SIGTERM to the supervisor only: it drains its workers. With the default (control-group) each
# worker would also get systemd's SIGTERM, and a second stop signal means "exit at once".
KillMode=mixed
TimeoutStopSec=45
`,
  );
  c.run('systemctl', 'daemon-reload');
  const unit = 'app-supervisor.service';
  const start = timed(() => c.run('systemctl', 'start', unit));
  await waitFor(
    () =>
      request({ port, timeout: 2000 }).then(
        (r) => r.status === 200,
        () => false,
      ),
    { what: 'the supervisor unit to serve' },
  );
  const mainPid = show(c, unit, 'MainPID');
  check(
    'supervisor: systemctl start',
    start.status === 0,
    `exit ${start.status} in ${start.ms} ms, MainPID ${mainPid}, serving on 127.0.0.1:${port}`,
  );

  const load = startLoad({ port, connections: 20 });
  await waitFor(() => load.stats.ok > 300, { what: 'load to flow' });
  const reloads = [];
  for (let i = 0; i < 3; i++) {
    const before = childrenIn(c, mainPid);
    const r = await timedAsync(() => c.runAsync('systemctl', 'reload', unit));
    // The retired workers drain after the reload returns: wait until they are gone.
    const replaced = await waitFor(
      () => {
        const now = childrenIn(c, mainPid);
        return now.length === 2 && now.every((p) => !before.includes(p));
      },
      { timeout: 30_000, what: 'the old workers to exit' },
    ).catch(() => false);
    reloads.push({ status: r.status, ms: r.ms, replaced });
    const okBefore = load.stats.ok;
    await waitFor(() => load.stats.ok > okBefore + 300, { what: 'load to flow after the reload' });
  }
  const result = await load.stop();
  check(
    'supervisor: 3 × systemctl reload under load',
    reloads.every((r) => r.status === 0 && r.replaced) && result.failed === 0 && show(c, unit, 'MainPID') === mainPid,
    `reload exits ${reloads.map((r) => r.status).join('/')} in ${reloads.map((r) => r.ms).join('/')} ms, all workers replaced each time: ${reloads.every((r) => r.replaced)}, MainPID unchanged: ${show(c, unit, 'MainPID') === mainPid}; ${result.ok} requests, ${result.failed} failed ${JSON.stringify(result.errors)}`,
  );

  const workers = childrenIn(c, mainPid);
  c.run('kill', '-KILL', String(workers[0]));
  const replacement = await waitFor(
    () => {
      const now = childrenIn(c, mainPid);
      return now.length === 2 && !now.includes(workers[0]) && now;
    },
    { timeout: 30_000, what: 'the supervisor to replace the killed worker' },
  ).catch(() => undefined);
  const serves = await request({ port }).then(
    (r) => r.status,
    (e) => e.code,
  );
  check(
    'supervisor: a worker killed with SIGKILL is replaced',
    replacement !== undefined && show(c, unit, 'ActiveState') === 'active' && serves === 200,
    `killed ${workers[0]}, workers now ${JSON.stringify(replacement)}, unit ${show(c, unit, 'ActiveState')}, GET / → ${serves}`,
  );

  // The supervisor itself, with the TCP socket cluster bound for its workers.
  const upLoad = startLoad({ port, connections: 20, latency: true });
  await waitFor(() => upLoad.stats.ok > 300, { what: 'load to flow' });
  const up = await timedAsync(() => c.runAsync(...CLI.split(' '), 'upgrade', '--supervisor', '--pid-file', '/run/app/app.pid'));
  const newMain = show(c, unit, 'MainPID');
  const oldGone = await waitFor(() => c.run('kill', '-0', mainPid).status !== 0, {
    timeout: 30_000,
    what: 'the old supervisor to exit',
  }).then(
    () => true,
    () => false,
  );
  const upOk = upLoad.stats.ok;
  await waitFor(() => upLoad.stats.ok > upOk + 300, { what: 'load to flow after the supervisor upgrade' });
  const upResult = await upLoad.stop();
  check(
    'supervisor: grace-restart upgrade --supervisor under load',
    up.status === 0 && newMain !== mainPid && oldGone && upResult.failed === 0 && show(c, unit, 'ActiveState') === 'active',
    `exit ${up.status} in ${up.ms} ms; MainPID ${mainPid}→${newMain}, old supervisor exited: ${oldGone}, unit ${show(c, unit, 'ActiveState')}; ${upResult.ok} requests, ${upResult.failed} failed ${JSON.stringify(upResult.errors)}, p99 ${upResult.latencyMs.p99} ms, max ${upResult.latencyMs.max} ms`,
  );

  const slow = request({ port, path: '/slow?ms=2000' });
  await new Promise((r) => setTimeout(r, 300));
  const stop = timed(() => c.run('systemctl', 'stop', unit));
  const slowRes = await slow.then(
    (r) => r.status,
    (e) => e.code,
  );
  const props = ['Result', 'ExecMainStatus', 'ExecMainCode'].map((p) => `${p}=${show(c, unit, p)}`).join(' ');
  check(
    'supervisor: systemctl stop drains (after the supervisor upgrade)',
    stop.status === 0 && slowRes === 200 && show(c, unit, 'Result') === 'success' && show(c, unit, 'ActiveState') === 'inactive',
    `exit ${stop.status} in ${stop.ms} ms; a 2 s request in flight → ${slowRes}; ${props}`,
    unit,
  );
}

/**
 * The supervisor socket-activated, Type=notify (its own sd_notify): reloads, `systemctl
 * restart` and a supervisor upgrade under load, a stop while a reload is in flight, the stop.
 * The app is core's test fixture, whose next release can be made slow to boot.
 */
async function activatedSupervisorUnit(c) {
  const port = await freePort();
  // Not /tmp: nspawn mounts a tmpfs there, which this side does not see.
  const behaviour = join(ROOTFS, 'var/lib/grace-behaviour');
  writeFileSync(behaviour, 'ok');
  const unit = 'app-sup.service';
  installUnit(
    'app-sup.socket',
    `[Socket]
ListenStream=127.0.0.1:${port}
`,
  );
  installUnit(
    unit,
    `[Unit]
Requires=app-sup.socket
After=app-sup.socket
[Service]
Type=notify
NotifyAccess=all
Environment=PORT=${port} HOST=127.0.0.1 BEHAVIOUR_FILE=/var/lib/grace-behaviour
ExecStart=${CLI} run --workers 2 --pid-file /run/app-sup/app.pid -- node ${REPO}/packages/core/test/fixtures/server.mjs
ExecReload=${CLI} upgrade --pid-file /run/app-sup/app.pid
# After a supervisor upgrade the main process is not systemd's child: on cgroup v1 systemd does
# not wait for it (SIGKILL mid-drain): stop it and wait for its drain here.
ExecStop=/bin/sh -c 'kill -TERM $MAINPID; while kill -0 $MAINPID 2>/dev/null; do sleep 0.2; done'
RuntimeDirectory=app-sup
KillMode=mixed
TimeoutStopSec=45
`,
  );
  c.run('systemctl', 'daemon-reload');
  const label = 'supervisor socket-activated (app-sup.socket), Type=notify';
  c.run('systemctl', 'start', 'app-sup.socket');
  const first = await request({ port, timeout: 15_000 }).then(
    (r) => r.json,
    (e) => ({ error: e.code }),
  );
  // A worker answers as soon as it listens; the supervisor's READY=1 comes once both are ready.
  await waitFor(() => show(c, unit, 'StatusText').startsWith('serving, generation 1, 2 workers'), {
    timeout: 10_000,
    what: 'the supervisor to report both workers',
  }).catch(() => undefined);
  const mainPid = show(c, unit, 'MainPID');
  check(
    `${label}: the first connection starts it`,
    typeof first.pid === 'number' &&
      show(c, unit, 'ActiveState') === 'active' &&
      show(c, unit, 'StatusText').startsWith('serving, generation 1, 2 workers'),
    `GET / → worker ${first.pid ?? first.error}, unit ${show(c, unit, 'ActiveState')}, MainPID ${mainPid}, StatusText "${show(c, unit, 'StatusText')}"`,
    unit,
  );

  const underLoad = async (what, action) => {
    const load = startLoad({ port, connections: 20, latency: true });
    await waitFor(() => load.stats.ok > 300, { what: 'load to flow' });
    const outcome = await action();
    const okBefore = load.stats.ok;
    await waitFor(() => load.stats.ok > okBefore + 300, { what: `load to flow after ${what}` });
    return { outcome, result: await load.stop() };
  };
  const figures = (r) =>
    `${r.ok} requests, ${r.failed} failed ${JSON.stringify(r.errors)}, latency p50/p99/max ${r.latencyMs.p50}/${r.latencyMs.p99}/${r.latencyMs.max} ms`;

  const reloads = await underLoad('3 reloads', async () => {
    const rounds = [];
    for (let i = 0; i < 3; i++) rounds.push(await timedAsync(() => c.runAsync('systemctl', 'reload', unit)));
    return rounds;
  });
  check(
    `${label}: 3 × systemctl reload under load`,
    reloads.outcome.every((r) => r.status === 0) && reloads.result.failed === 0 && show(c, unit, 'MainPID') === mainPid,
    `reload exits ${reloads.outcome.map((r) => r.status).join('/')} in ${reloads.outcome.map((r) => r.ms).join('/')} ms, MainPID unchanged: ${show(c, unit, 'MainPID') === mainPid}; ${figures(reloads.result)}`,
  );

  const restart = await underLoad('a restart', () => timedAsync(() => c.runAsync('systemctl', 'restart', unit)));
  const afterRestart = show(c, unit, 'MainPID');
  check(
    `${label}: systemctl restart under load`,
    restart.outcome.status === 0 && restart.result.failed === 0 && afterRestart !== mainPid && show(c, unit, 'ActiveState') === 'active',
    `exit ${restart.outcome.status} in ${restart.outcome.ms} ms, MainPID ${mainPid}→${afterRestart}; connects waited in the socket's backlog: ${figures(restart.result)}`,
  );

  const upgrade = await underLoad('a supervisor upgrade', () =>
    timedAsync(() => c.runAsync(...CLI.split(' '), 'upgrade', '--supervisor', '--pid-file', '/run/app-sup/app.pid')),
  );
  const newMain = show(c, unit, 'MainPID');
  const oldGone = await waitFor(() => c.run('kill', '-0', afterRestart).status !== 0, {
    timeout: 30_000,
    what: 'the old supervisor to exit',
  }).then(
    () => true,
    () => false,
  );
  const pidFile = c.run('cat', '/run/app-sup/app.pid').stdout.trim();
  check(
    `${label}: grace-restart upgrade --supervisor under load`,
    upgrade.outcome.status === 0 &&
      upgrade.result.failed === 0 &&
      newMain !== afterRestart &&
      pidFile === newMain &&
      oldGone &&
      show(c, unit, 'ActiveState') === 'active',
    `exit ${upgrade.outcome.status} in ${upgrade.outcome.ms} ms (${upgrade.outcome.stdout.trim()}); MainPID ${afterRestart}→${newMain}, PID file ${pidFile}, old supervisor exited: ${oldGone}, unit ${show(c, unit, 'ActiveState')}; ${figures(upgrade.result)}`,
  );
  const reloadAfter = timed(() => c.run('systemctl', 'reload', unit));
  check(
    `${label}: systemctl reload after the supervisor upgrade`,
    reloadAfter.status === 0 && show(c, unit, 'StatusText').startsWith('serving, generation 3'),
    `exit ${reloadAfter.status} in ${reloadAfter.ms} ms, StatusText "${show(c, unit, 'StatusText')}"`,
  );

  // A stop while a reload waits for a new release that boots slowly.
  writeFileSync(behaviour, 'slow-boot:5000');
  c.run('systemctl', 'reload', '--no-block', unit);
  // Once the supervisor works on it (its RELOADING=1 status): a stop within the first ~0.1 s, while
  // node itself still starts the `grace-restart upgrade` process, kills it before it can answer.
  const reloading = await waitFor(
    () => show(c, unit, 'ActiveState') === 'reloading' && show(c, unit, 'StatusText').startsWith('upgrading to generation'),
    { timeout: 10_000, what: 'the reload to run' },
  ).then(
    () => true,
    () => false,
  );
  const stopDuringReload = timed(() => c.run('systemctl', 'stop', unit));
  writeFileSync(behaviour, 'ok');
  check(
    `${label}: systemctl stop while a reload is in flight`,
    reloading && stopDuringReload.status === 0 && show(c, unit, 'ActiveState') === 'inactive' && show(c, unit, 'Result') === 'success',
    `reloading seen: ${reloading}; stop exit ${stopDuringReload.status} in ${stopDuringReload.ms} ms; unit ${show(c, unit, 'ActiveState')}, Result=${show(c, unit, 'Result')}`,
    unit,
  );

  const again = await request({ port, timeout: 15_000 }).then(
    (r) => r.json?.pid,
    (e) => e.code,
  );
  const slow = request({ port, path: '/slow?ms=2000' });
  await waitFor(() => show(c, unit, 'ActiveState') === 'active', { timeout: 10_000, what: 'the unit to be active again' }).catch(
    () => undefined,
  );
  await new Promise((r) => setTimeout(r, 300));
  const stop = timed(() => c.run('systemctl', 'stop', unit));
  const slowRes = await slow.then(
    (r) => r.status,
    (e) => e.code,
  );
  check(
    `${label}: next connection activates it again; systemctl stop drains`,
    typeof again === 'number' &&
      stop.status === 0 &&
      slowRes === 200 &&
      show(c, unit, 'ActiveState') === 'inactive' &&
      show(c, unit, 'Result') === 'success',
    `GET / → ${again}; stop exit ${stop.status} in ${stop.ms} ms, a 2 s request in flight → ${slowRes}, unit ${show(c, unit, 'ActiveState')}, Result=${show(c, unit, 'Result')}`,
  );
  c.run('systemctl', 'stop', 'app-sup.socket');
}

/** The plain Fastify example as a Type=notify unit: core's own sd_notify, no app code for it. */
async function coreNotifyUnit(c) {
  const port = await freePort();
  const unit = 'app-core-notify.service';
  installUnit(
    unit,
    `[Service]
Type=notify
NotifyAccess=all
WatchdogSec=3
WorkingDirectory=${REPO}/examples/fastify
Environment=PORT=${port} HOST=127.0.0.1
ExecStart=/usr/local/bin/node dist/server.js
ExecReload=/bin/kill -USR2 $MAINPID
ExecStop=/bin/sh -c 'kill -TERM $MAINPID; while kill -0 $MAINPID 2>/dev/null; do sleep 0.2; done'
TimeoutStopSec=45
`,
  );
  c.run('systemctl', 'daemon-reload');
  const label = "self-upgrade, Type=notify with core's own sd_notify, WatchdogSec=3";
  const start = timed(() => c.run('systemctl', 'start', unit));
  let mainPid = show(c, unit, 'MainPID');
  check(
    `${label}: start waits for READY=1`,
    start.status === 0 && show(c, unit, 'ActiveState') === 'active' && show(c, unit, 'StatusText') === 'serving, generation 1',
    `exit ${start.status} in ${start.ms} ms, MainPID ${mainPid}, StatusText "${show(c, unit, 'StatusText')}"`,
  );
  const load = startLoad({ port, connections: 20, latency: true });
  await waitFor(() => load.stats.ok > 300, { what: 'load to flow' });
  const moves = [];
  for (let i = 0; i < 3; i++) {
    const before = mainPid;
    await c.runAsync('systemctl', 'reload', unit);
    const now = await mainPidMovedFrom(c, unit, before, 'MainPID to move to the successor');
    moves.push(`${before}→${now}`);
    if (now) mainPid = now;
  }
  // Longer than WatchdogSec: the pings of the last generation keep the unit alive.
  await new Promise((r) => setTimeout(r, 4000));
  const result = await load.stop();
  check(
    `${label}: 3 upgrades under load, MAINPID from the handover, watchdog kept`,
    !moves.some((m) => m.endsWith('undefined')) &&
      result.failed === 0 &&
      show(c, unit, 'ActiveState') === 'active' &&
      show(c, unit, 'StatusText') === 'serving, generation 4',
    `MainPID ${moves.join(', ')}, unit ${show(c, unit, 'ActiveState')}, StatusText "${show(c, unit, 'StatusText')}", NRestarts=${show(c, unit, 'NRestarts')}; ${result.ok} requests, ${result.failed} failed, p99 ${result.latencyMs.p99} ms`,
  );
  const stop = timed(() => c.run('systemctl', 'stop', unit));
  check(
    `${label}: stop`,
    stop.status === 0 && show(c, unit, 'Result') === 'success',
    `exit ${stop.status} in ${stop.ms} ms, Result=${show(c, unit, 'Result')}`,
  );
}

/**
 * A release that dies 3 s after its ready report, under Type=notify (issue #28): within the
 * probation (10 s by default) the old process is still systemd's main process and holds the
 * sockets, so it serves again; the unit stays active and never restarts.
 */
async function coreNotifyBadRelease(c) {
  const port = await freePort();
  const unit = 'app-core-bad-release.service';
  const behaviour = '/run/grace-behaviour';
  const setBehaviour = (text) => c.run('sh', '-c', `echo '${text}' > ${behaviour}`);
  setBehaviour('ok');
  installUnit(
    unit,
    `[Service]
Type=notify
NotifyAccess=all
Environment=PORT=${port} HOST=127.0.0.1 BEHAVIOUR_FILE=${behaviour}
ExecStart=/usr/local/bin/node ${REPO}/packages/core/test/fixtures/server.mjs
ExecReload=/bin/kill -USR2 $MAINPID
ExecStop=/bin/sh -c 'kill -TERM $MAINPID; while kill -0 $MAINPID 2>/dev/null; do sleep 0.2; done'
TimeoutStopSec=45
`,
  );
  c.run('systemctl', 'daemon-reload');
  const label = 'self-upgrade, Type=notify, a release that dies 3 s after its ready report';
  c.run('systemctl', 'start', unit);
  const mainPid = show(c, unit, 'MainPID');
  const load = startLoad({ port, connections: 20 });
  await waitFor(() => load.stats.ok > 300, { what: 'load to flow' });
  setBehaviour('crash-after-ready:3000');
  await c.runAsync('systemctl', 'reload', unit);
  const status = await waitFor(
    () => {
      const text = show(c, unit, 'StatusText');
      return /died: serving generation 1 again/.test(text) && text;
    },
    { timeout: 30_000, what: 'the old process to serve again' },
  ).catch(() => show(c, unit, 'StatusText'));
  const ok = load.stats.ok;
  await waitFor(() => load.stats.ok > ok + 300, { what: 'load to flow on the old process' }).catch(() => undefined);
  const result = await load.stop();
  const refused = result.errors.ECONNREFUSED ?? 0;
  check(
    `${label}: the old process serves again, the unit never stops`,
    show(c, unit, 'ActiveState') === 'active' &&
      show(c, unit, 'MainPID') === mainPid &&
      show(c, unit, 'NRestarts') === '0' &&
      refused === 0 &&
      result.failed <= 20,
    `StatusText "${status}", MainPID ${mainPid}→${show(c, unit, 'MainPID')}, unit ${show(c, unit, 'ActiveState')}, NRestarts=${show(c, unit, 'NRestarts')}; ${result.ok} requests, ${result.failed} failed (at most 1 per connection: the request in flight on the dying release), ${refused} refused: ${JSON.stringify(result.errors)}`,
    unit,
  );
  setBehaviour('ok');
  await c.runAsync('systemctl', 'reload', unit);
  const moved = await mainPidMovedFrom(c, unit, mainPid, 'MainPID to move to the fixed release');
  check(`${label}: the fixed release is promoted after its probation`, moved !== undefined, `MainPID ${mainPid}→${moved}`, unit);
  const stop = timed(() => c.run('systemctl', 'stop', unit));
  check(
    `${label}: stop`,
    stop.status === 0 && show(c, unit, 'Result') === 'success',
    `exit ${stop.status}, Result=${show(c, unit, 'Result')}`,
    unit,
  );
}

/** The supervisor as Type=simple: it runs, but cannot be replaced (systemd would stop the unit). */
async function simpleSupervisorUnit(c) {
  const port = await freePort();
  const unit = 'app-sup-simple.service';
  installUnit(
    unit,
    `[Service]
Type=simple
WorkingDirectory=${REPO}/examples/fastify
Environment=PORT=${port} HOST=127.0.0.1
ExecStart=${CLI} run --workers 1 --pid-file /run/app-sup-simple/app.pid -- node dist/server.js
RuntimeDirectory=app-sup-simple
KillMode=mixed
`,
  );
  c.run('systemctl', 'daemon-reload');
  c.run('systemctl', 'start', unit);
  await waitFor(
    () =>
      request({ port, timeout: 2000 }).then(
        (r) => r.status === 200,
        () => false,
      ),
    { what: `${unit} to serve` },
  );
  const mainPid = show(c, unit, 'MainPID');
  const refused = c.run(...CLI.split(' '), 'upgrade', '--supervisor', '--pid-file', '/run/app-sup-simple/app.pid');
  check(
    'supervisor, Type=simple: upgrade --supervisor is refused with the reason',
    refused.status === 1 &&
      /Type=notify/.test(refused.stdout) &&
      show(c, unit, 'MainPID') === mainPid &&
      show(c, unit, 'ActiveState') === 'active',
    `exit ${refused.status}: ${refused.stdout.trim()}; MainPID still ${show(c, unit, 'MainPID')}`,
  );
  c.run('systemctl', 'stop', unit);
}

/** The old docs' recipe: Type=forking + PIDFile for a process that never forks. */
async function forkingUnit(c) {
  const port = await freePort();
  installUnit(
    'app-forking.service',
    `[Service]
Type=forking
PIDFile=/run/app-forking/app.pid
Environment=PORT=${port} HOST=127.0.0.1 PID_FILE=/run/app-forking/app.pid
ExecStart=/usr/local/bin/node ${REPO}/test/systemd/notify-app.mjs
ExecReload=/bin/kill -USR2 $MAINPID
RuntimeDirectory=app-forking
TimeoutStartSec=10
`,
  );
  c.run('systemctl', 'daemon-reload');
  const start = timed(() => c.run('systemctl', 'start', 'app-forking.service'));
  check(
    'self-upgrade, Type=forking + PIDFile (the old recipe): does not start',
    start.status !== 0,
    `systemctl start exit ${start.status} after ${start.ms} ms, Result=${show(c, 'app-forking.service', 'Result')}: systemd waits for ExecStart's process to exit (fork), which never happens`,
  );
  c.run('systemctl', 'stop', 'app-forking.service');
}

/** Type=simple with a self-upgrading app: the unit dies with its original process. */
async function simpleSelfUpgrade(c) {
  const port = await freePort();
  installUnit(
    'app-simple.service',
    `[Service]
Type=simple
Environment=PORT=${port} HOST=127.0.0.1
ExecStart=/usr/local/bin/node ${REPO}/test/systemd/notify-app.mjs
ExecReload=/bin/kill -USR2 $MAINPID
`,
  );
  c.run('systemctl', 'daemon-reload');
  c.run('systemctl', 'start', 'app-simple.service');
  await waitFor(
    () =>
      request({ port, timeout: 2000 }).then(
        (r) => r.status === 200,
        () => false,
      ),
    { what: 'app-simple to serve' },
  );
  c.run('systemctl', 'reload', 'app-simple.service');
  await waitFor(() => show(c, 'app-simple.service', 'ActiveState') !== 'active', { timeout: 15_000, what: 'app-simple to stop' }).catch(
    () => undefined,
  );
  const serves = await request({ port, timeout: 2000 }).then(
    (r) => r.status,
    (e) => e.code,
  );
  check(
    'self-upgrade, Type=simple: the first upgrade stops the unit',
    show(c, 'app-simple.service', 'ActiveState') !== 'active',
    `after systemctl reload: unit ${show(c, 'app-simple.service', 'ActiveState')}, GET / → ${serves} (the successor was killed with the unit's cgroup)`,
  );
  c.run('systemctl', 'stop', 'app-simple.service');
}

/** Type=notify + NotifyAccess=all, each generation reports MAINPID through systemd-notify. */
async function notifyUnit(c, { socket }) {
  const port = await freePort();
  const unit = socket ? 'app-activated.service' : 'app-notify.service';
  if (socket) {
    installUnit(
      'app-activated.socket',
      `[Socket]
ListenStream=127.0.0.1:${port}
`,
    );
  }
  installUnit(
    unit,
    `[Service]
Type=notify
NotifyAccess=all
Environment=PORT=${port} HOST=127.0.0.1
ExecStart=/usr/local/bin/node ${REPO}/test/systemd/notify-app.mjs
ExecReload=/bin/kill -USR2 $MAINPID
# After an upgrade the main process is not systemd's child: systemd may not wait for it to
# exit (with cgroup v1 inside a container it does not), and would SIGKILL it mid-drain.
ExecStop=/bin/sh -c 'kill -TERM $MAINPID; while kill -0 $MAINPID 2>/dev/null; do sleep 0.2; done'
TimeoutStopSec=45
`,
  );
  c.run('systemctl', 'daemon-reload');
  const label = socket
    ? 'socket-activated (.socket unit, no FileDescriptorName=), Type=notify'
    : 'self-upgrade, Type=notify + NotifyAccess=all';
  const start = timed(() => c.run('systemctl', 'start', socket ? 'app-activated.socket' : unit));
  const first = await waitFor(
    () =>
      request({ port, timeout: 5000 }).then(
        (r) => r.status === 200 && r.json,
        () => false,
      ),
    { what: `${unit} to serve` },
  );
  let mainPid = show(c, unit, 'MainPID');
  check(
    `${label}: start`,
    start.status === 0 && show(c, unit, 'ActiveState') === 'active',
    `systemctl start exit ${start.status} in ${start.ms} ms; first GET served by pid ${first.pid}, MainPID ${mainPid}${socket ? ', started by the first connection' : ''}`,
  );

  const load = startLoad({ port, connections: 20 });
  await waitFor(() => load.stats.ok > 300, { what: 'load to flow' });
  const rounds = [];
  for (let i = 0; i < 3; i++) {
    const before = mainPid;
    const r = timed(() => c.run('systemctl', 'reload', unit));
    // ExecReload only sends SIGUSR2: the upgrade completes after systemctl returns.
    const now = await mainPidMovedFrom(c, unit, before, 'MainPID to move to the successor and the old process to exit');
    rounds.push({ status: r.status, from: before, to: now, active: show(c, unit, 'ActiveState') });
    if (now) mainPid = now;
    const okBefore = load.stats.ok;
    await waitFor(() => load.stats.ok > okBefore + 300, { what: 'load to flow after the upgrade' });
  }
  const result = await load.stop();
  check(
    `${label}: 3 × systemctl reload under load`,
    rounds.every((r) => r.status === 0 && r.to && r.active === 'active') && result.failed === 0,
    `MainPID ${rounds.map((r) => `${r.from}→${r.to}`).join(', ')}, unit ${rounds.map((r) => r.active).join('/')}; ${result.ok} requests, ${result.failed} failed ${JSON.stringify(result.errors)}`,
  );

  const slow = request({ port, path: '/slow' });
  await new Promise((r) => setTimeout(r, 300));
  const stop = timed(() => c.run('systemctl', 'stop', unit));
  const slowRes = await slow.then(
    (r) => r.status,
    (e) => e.code,
  );
  check(
    `${label}: systemctl stop drains`,
    stop.status === 0 && slowRes === 200 && show(c, unit, 'Result') === 'success',
    `exit ${stop.status} in ${stop.ms} ms; a 2 s request in flight → ${slowRes}; Result=${show(c, unit, 'Result')} ExecMainStatus=${show(c, unit, 'ExecMainStatus')}`,
  );
  if (socket) {
    // The socket unit still listens: the next connection starts the service again.
    const again = await request({ port, timeout: 10_000 }).then(
      (r) => r.json?.pid,
      (e) => e.code,
    );
    check(
      `${label}: the next connection after a stop activates it again`,
      typeof again === 'number' && show(c, unit, 'ActiveState') === 'active',
      `GET / → pid ${again}, unit ${show(c, unit, 'ActiveState')}`,
    );
    c.run('systemctl', 'stop', unit, 'app-activated.socket');
  }
}

/**
 * Boot priority (issue #29) as docs/operations.md sets it up: a root service keeps CAP_SYS_NICE,
 * a `User=nobody` service gets back to nice 0 with `LimitNICE=+0`, and one without it boots its
 * successor un-niced (the log says why). After a reload every thread of the new main process
 * runs at nice 0.
 */
/** Whether this machine's root may raise a hard rlimit (CAP_SYS_RESOURCE, bit 24 of its bounding set). */
function canRaiseRlimits() {
  const hex = /^CapBnd:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0';
  return ((BigInt(`0x${hex}`) >> 24n) & 1n) === 1n;
}

async function bootPriorityUnits(c) {
  const cases = [
    { name: 'root', extra: '', plan: 'nice 10 until ready (CAP_SYS_NICE)', niced: true },
    // Raising a hard rlimit needs CAP_SYS_RESOURCE; where this machine's root lacks it (CapBnd
    // without bit 24) systemd cannot apply LimitNICE= and the service runs un-niced, as it says.
    canRaiseRlimits()
      ? { name: 'limitnice', extra: 'User=nobody\nLimitNICE=+0\n', plan: 'nice 10 until ready (RLIMIT_NICE allows nice 0)', niced: true }
      : { name: 'limitnice', extra: 'User=nobody\nLimitNICE=+0\n', plan: 'off: it could not return to nice 0', niced: false },
    { name: 'user', extra: 'User=nobody\n', plan: 'off: it could not return to nice 0', niced: false },
  ];
  for (const k of cases) {
    const port = await freePort();
    const unit = `app-nice-${k.name}.service`;
    installUnit(
      unit,
      `[Service]
Type=notify
NotifyAccess=all
${k.extra}WorkingDirectory=${REPO}/examples/fastify
Environment=PORT=${port} HOST=127.0.0.1 GRACE_RESTART_PROBATION=1000
ExecStart=/usr/local/bin/node dist/server.js
ExecReload=/bin/kill -USR2 $MAINPID
`,
    );
    c.run('systemctl', 'daemon-reload');
    const start = c.run('systemctl', 'start', unit);
    const before = show(c, unit, 'MainPID');
    const rlimit = /^Max nice priority.*$/m.exec(c.run('cat', `/proc/${before}/limits`).stdout)?.[0].replace(/\s+/g, ' ');
    c.run('systemctl', 'reload', unit);
    const now = await mainPidMovedFrom(c, unit, before, 'MainPID to move to the successor');
    const journal = c.run('journalctl', '--no-pager', '-o', 'cat', '-u', unit).stdout;
    const plan = /"bootPriority":"([^"]*)"/.exec(journal)?.[1] ?? 'none';
    const returned = journal.includes('"bootPriority":"back to nice 0"');
    const nices = now ? c.run('ps', '-L', '-o', 'ni=', '-p', now).stdout.trim().split(/\s+/) : [];
    check(
      `boot priority, ${k.extra ? k.extra.trim().replaceAll('\n', ' ') : 'a root service'}: the successor ${k.niced ? 'boots niced and returns' : 'is not niced'}`,
      start.status === 0 && plan.startsWith(k.plan) && returned === k.niced && nices.length > 0 && nices.every((n) => n === '0'),
      `start exit ${start.status} (${rlimit}, LimitNICE=${show(c, unit, 'LimitNICE')}); upgrade started: "${plan}"; ready: ${returned ? 'back to nice 0' : 'no return'}; MainPID ${before}→${now}, its threads' nice ${nices.join(',')}`,
      unit,
    );
    c.run('systemctl', 'stop', unit);
  }
}

if (process.getuid?.() !== 0) {
  console.error('run as root: debootstrap, systemd-nspawn and nsenter need it');
  process.exit(2);
}
ensureRootfs();
try {
  container = await boot();
  // ONLY=supervisorUnit,coreNotifyUnit runs just those.
  const only = process.env.ONLY?.split(',');
  const scenarios = [
    ['supervisorUnit', () => supervisorUnit(container)],
    ['simpleSupervisorUnit', () => simpleSupervisorUnit(container)],
    ['activatedSupervisorUnit', () => activatedSupervisorUnit(container)],
    ['coreNotifyUnit', () => coreNotifyUnit(container)],
    ['coreNotifyBadRelease', () => coreNotifyBadRelease(container)],
    ['forkingUnit', () => forkingUnit(container)],
    ['simpleSelfUpgrade', () => simpleSelfUpgrade(container)],
    ['notifyUnit', () => notifyUnit(container, { socket: false })],
    ['activatedNotifyUnit', () => notifyUnit(container, { socket: true })],
    ['bootPriorityUnits', () => bootPriorityUnits(container)],
  ];
  for (const [name, run] of scenarios) if (only === undefined || only.includes(name)) await run();
} catch (error) {
  check('rehearsal', false, `aborted: ${error.stack}`);
} finally {
  await container?.stop();
}
const failed = results.filter((r) => !r.ok);
console.log(`\n${results.length - failed.length}/${results.length} checks passed`);
process.exit(failed.length ? 1 : 0);
