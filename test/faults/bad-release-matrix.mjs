// The bad-release matrix (issue #28): for each kind of bad release × self-upgrade and
// `grace-restart run --workers 2`, under keep-alive load, with the default settings and a
// `healthCheck` of '/healthz' (for the releases that answer badly rather than crash, a canary:
// self-upgrading, the `canary` option over the default 10 s probation; under `run` a 5 s
// `--canary-window`; and under `run`, `--listen` on the app's address so that the supervisor
// holds the socket): is the bad release rolled back, how long until the verdict, how
// many requests failed and how many connects were refused.
//
//   node test/faults/bad-release-matrix.mjs [--rows crash-at-boot,...] [--modes self,run2] [--out FILE.md]
//
// Each row deploys as an operator would: releases/v1 (good) and releases/v2 (the bad one), a
// `current` symlink switched from v1 to v2, then `grace-restart upgrade --pid-file`. The row then
// watches 20 s more (a crash 3 s after ready, a rollback after promotion) and asks fresh
// connections which version serves. The app is the core fixture (node:http on createGrace).
import { mkdirSync, mkdtempSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { request, startLoad } from '../helpers/load.mjs';
import { freePort, runCli, startFixture, waitFor } from '../helpers/process.mjs';

const APP = fileURLToPath(new URL('../../packages/core/test/fixtures/server.mjs', import.meta.url));
const BIN = fileURLToPath(new URL('../../packages/cli/dist/bin.js', import.meta.url));
const ROWS = ['crash-at-boot', 'crash-after-ready:3000', 'status-500', 'status-500-tenth', 'hang', 'unhealthy'];
const CONNECTIONS = 20;
const WATCH_AFTER_MS = 20_000;

const { values } = parseArgs({ options: { rows: { type: 'string' }, modes: { type: 'string' }, out: { type: 'string' } } });
const rows = values.rows?.split(',') ?? ROWS;
const modes = values.modes?.split(',') ?? ['self', 'run2'];

function deploy(behaviour) {
  const root = mkdtempSync(join(tmpdir(), 'grace-bad-release-'));
  for (const [version, b] of [
    ['v1', 'ok'],
    ['v2', behaviour],
  ]) {
    const dir = join(root, 'releases', version);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'behaviour'), b);
    const env = `process.env.APP_VERSION = '${version}';\nprocess.env.BEHAVIOUR_FILE = ${JSON.stringify(join(dir, 'behaviour'))};\n`;
    writeFileSync(join(dir, 'server.mjs'), `${env}await import(${JSON.stringify(APP)});\n`);
  }
  const current = (version) => {
    symlinkSync(join(root, 'releases', version), join(root, 'next'));
    renameSync(join(root, 'next'), join(root, 'current'));
  };
  current('v1');
  return { root, cwd: join(root, 'current'), current };
}

/** The releases that serve but answer badly get a canary under `run` (the crashes run with the defaults). */
const CANARY = ['status-500', 'status-500-tenth', 'hang'];

function start(mode, cwd, pidFile, behaviour, port) {
  // The defaults the issue measures: the 10 s probation, whatever the caller's environment says.
  // A fixed port, as a service has; under `run` the supervisor holds it (--listen).
  const env = { PORT: String(port), PWD: cwd, HEALTH_CHECK: '/healthz', GRACE_RESTART_PROBATION: '' };
  if (mode === 'self') {
    const canary = CANARY.includes(behaviour) ? { CANARY: '1' } : {};
    return startFixture(join(cwd, 'server.mjs'), { cwd, env: { ...env, ...canary, PID_FILE: pidFile } });
  }
  const canary = CANARY.includes(behaviour) ? ['--canary-window', '5000'] : [];
  return startFixture(BIN, {
    cwd,
    env,
    args: ['run', '--workers', '2', '--listen', `127.0.0.1:${port}`, '--pid-file', pidFile, ...canary, '--', 'node', 'server.mjs'],
  });
}

/** Which version a fresh connection reaches, or why none does. */
async function probe(port) {
  try {
    const res = await request({ port, timeout: 2_000 });
    return res.status === 200 ? res.json.version : `http ${res.status}`;
  } catch (error) {
    return error.code ?? error.message;
  }
}

async function runRow(behaviour, mode) {
  const { root, cwd, current } = deploy(behaviour);
  const pidFile = join(root, 'app.pid');
  const app = start(mode, cwd, pidFile, behaviour, await freePort());
  try {
    const { address } = await app.waitForEvent({ event: 'listening' });
    await waitFor(async () => (await probe(address.port)) === 'v1', { what: 'v1 to serve' });
    const load = startLoad({ port: address.port, connections: CONNECTIONS, timeout: 5_000 });
    await waitFor(() => load.stats.ok > 300, { what: 'load to flow' });
    current('v2');
    const triggered = Date.now();
    const upgrade = await runCli(['upgrade', '--pid-file', pidFile], { timeout: 90_000 });
    const upgradeMs = Date.now() - triggered;
    // Watch on: a crash after the ready report, a rollback after promotion.
    const seen = [];
    let rollbackMs;
    while (Date.now() - triggered < upgradeMs + WATCH_AFTER_MS) {
      seen.push(await probe(address.port));
      if (mode === 'run2' && rollbackMs === undefined) {
        const status = await runCli(['status', '--pid-file', pidFile, '--json']);
        if (status.code === 0 && JSON.parse(status.stdout).lastUpgrade?.trigger === 'rollback') rollbackMs = Date.now() - triggered;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    const stats = await load.stop();
    const finals = [];
    for (let i = 0; i < 5; i++) finals.push(await probe(address.port));
    const final = finals.every((v) => v === 'v1') ? 'v1' : finals.every((v) => v === 'v2') ? 'v2' : finals.join('/');
    const outcome = final === 'v1' ? 'rolled back' : final === 'v2' ? 'bad release serves' : `service down or mixed (${final})`;
    return {
      behaviour,
      mode,
      upgradeExit: upgrade.code,
      upgradeSays: upgrade.stdout.trim().split('\n')[0],
      verdictMs: rollbackMs ?? upgradeMs,
      outcome,
      requests: stats.ok + stats.failed,
      failed: stats.failed,
      refused: stats.errors.ECONNREFUSED ?? 0,
      errors: stats.errors,
      downProbes: seen.filter((v) => v !== 'v1' && v !== 'v2').length,
    };
  } finally {
    app.cleanup();
  }
}

const results = [];
for (const behaviour of rows) {
  for (const mode of modes) {
    const row = await runRow(behaviour, mode);
    results.push(row);
    console.log(
      `${behaviour}/${mode}: ${row.outcome}, upgrade exit ${row.upgradeExit}, verdict ${row.verdictMs} ms, ${row.failed} failed (${row.refused} refused) of ${row.requests}: ${JSON.stringify(row.errors)}`,
    );
  }
}
if (values.out) {
  const lines = [
    '| release (v2) | mode | outcome | `upgrade` exit | time to verdict | requests | failed | refused | errors | probes without v1/v2 |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...results.map(
      (r) =>
        `| ${r.behaviour} | ${r.mode} | ${r.outcome} | ${r.upgradeExit} | ${(r.verdictMs / 1000).toFixed(1)} s | ${r.requests} | ${r.failed} | ${r.refused} | ${JSON.stringify(r.errors).replaceAll('|', '/')} | ${r.downProbes} |`,
    ),
  ];
  writeFileSync(values.out, `${lines.join('\n')}\n`);
}
process.exit(0);
