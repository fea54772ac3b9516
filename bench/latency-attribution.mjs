#!/usr/bin/env node
// Where the tail latency of an upgrade comes from (groundwork for issue #17): the same example
// app and keep-alive load (bench/lib/load.mjs, 50 connections, saturating on 2 cores), with
// three events 2 s apart of one kind per run, and the p99 / p99.9 of the 1 s after each event
// against the 2.4 s of steady state before the first:
//   none            nothing happens: the noise floor (steady vs steady)
//   cold-start      the same app boots on another port (its start-up CPU, no handoff)
//   upgrade         SIGUSR2, keep-alive connections moving to the successor (the default)
//   upgrade-nomove  SIGUSR2 with GRACE_RESTART_MOVE_CONNECTIONS=0 (the keep-alive-first drain)
//   supervisor      the app under `grace-restart run` (1 worker), SIGUSR2 to the supervisor
//   supervisor-nomove  the same with GRACE_RESTART_MOVE_CONNECTIONS=0
// Each line also gives the p99 event-loop delay of this process, which runs the clients, in
// steady state and in the windows: how long an answer may wait here for the CPU before it is timed.
// APP_NICE=n starts the servers at nice n (the clients first); APP_NODE_ARGS adds node flags to them.
// Each kind runs `--rounds` times, in turn. Not part of `npm run bench`; run it after a build:
//   node bench/latency-attribution.mjs [--framework fastify|express|koa] [--rounds 2]
import '../test/helpers/short-probation.mjs';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { histogramBetween, histogramOver, startLoad } from './lib/load.mjs';
import { freePort, killQuietly, sleep } from './lib/procs.mjs';

const { values } = parseArgs({ options: { framework: { type: 'string', default: 'fastify' }, rounds: { type: 'string', default: '2' } } });
const app = new URL(`../examples/${values.framework}/dist/server.js`, import.meta.url).pathname;
const KINDS = (process.env.KINDS ?? 'none,cold-start,upgrade,upgrade-nomove').split(',');
const EVENT_GAP_MS = 2000;
const WINDOW_MS = 1000;

// APP_NICE=n starts every server process (and so its successors, which inherit it) at nice n, so
// that this process, the clients, wins the CPU: what is left of the rise is the server's own.
const launch = (args, options) =>
  process.env.APP_NICE
    ? spawn('nice', ['-n', process.env.APP_NICE, process.execPath, ...args], options)
    : spawn(process.execPath, args, options);

async function run(kind) {
  const upgrades = kind.startsWith('upgrade') || kind.startsWith('supervisor');
  const pidFile = join(mkdtempSync(join(tmpdir(), 'grace-attribution-')), 'app.pid');
  const port = await freePort();
  const env = {
    ...process.env,
    PORT: String(port),
    HOST: '127.0.0.1',
    PID_FILE: pidFile,
    GRACE_RESTART_MOVE_CONNECTIONS: kind.endsWith('nomove') ? '0' : '1',
  };
  const nodeArgs = process.env.APP_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const cli = new URL('../packages/cli/dist/bin.js', import.meta.url).pathname;
  const supervised = ['run', '--workers', '1', '--pid-file', pidFile, '--log-level', 'warn', '--', process.execPath, ...nodeArgs, app];
  const first = kind.startsWith('supervisor')
    ? launch([cli, ...supervised], { env: { ...env, PID_FILE: '' }, stdio: 'ignore' })
    : launch([...nodeArgs, app], { env, stdio: 'ignore' });
  const deadline = Date.now() + 20_000;
  while (!existsSync(pidFile)) {
    if (Date.now() > deadline) throw new Error(`${app} wrote no PID file`);
    await sleep(20);
  }
  const loadStart = performance.now();
  const answers = [];
  const load = startLoad({ port, connections: 50, onAnswer: (a) => answers.push(a) });
  // The clients run in this process: its own event-loop delay is the part of every measured
  // latency that is the client waiting for the CPU, not the server answering late.
  const clientDelay = { steady: monitorEventLoopDelay({ resolution: 1 }), during: monitorEventLoopDelay({ resolution: 1 }) };
  await sleep(500);
  clientDelay.steady.enable();
  await sleep(2500);
  clientDelay.steady.disable();
  const events = [];
  const strays = [];
  for (let i = 0; i < 3; i++) {
    events.push(performance.now() - loadStart);
    if (upgrades) process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGUSR2');
    if (kind === 'cold-start')
      strays.push(launch([app], { env: { ...process.env, PORT: String(await freePort()), HOST: '127.0.0.1' }, stdio: 'ignore' }));
    clientDelay.during.enable();
    await sleep(WINDOW_MS);
    clientDelay.during.disable();
    await sleep(EVENT_GAP_MS - WINDOW_MS);
  }
  const result = await load.stop();
  killQuietly(Number(readFileSync(pidFile, 'utf8')));
  killQuietly(first.pid);
  for (const stray of strays) killQuietly(stray.pid);
  const steady = histogramBetween(result.slots, 500, events[0] - 100);
  const during = histogramOver(
    result.slots,
    events.map((at) => [at, at + WINDOW_MS]),
  );
  const p = (h, q) => Math.round(h.percentileMs(q) * 10) / 10;
  const moves = upgrades ? events.map((at) => movedFirstRequests(answers, at)) : undefined;
  // ms over the 1 ms sampling interval (the histogram records the whole interval, in ns). No
  // max: the first sample after each enable() spans the time it was disabled.
  const loopDelay = (h) => Math.round((h.percentile(99) / 1e6 - 1) * 10) / 10;
  const clientLoopDelayP99 = { steady: loopDelay(clientDelay.steady), during: loopDelay(clientDelay.during) };
  return {
    moves,
    kind,
    requests: result.ok + result.failed,
    failed: result.failed,
    steadyP99: p(steady, 99),
    p99: p(during, 99),
    p999: p(during, 99.9),
    ratio: Math.round((during.percentileMs(99) / steady.percentileMs(99)) * 100) / 100,
    clientLoopDelayP99,
  };
}

/**
 * What the connections' first requests to the successor cost after the upgrade at `at`: the
 * successor's first answer (ms after the trigger), how long until every connection had its first
 * answer from it, and the latency of those first requests against the old process's in the same span.
 */
function movedFirstRequests(answers, at) {
  const after = answers.filter((a) => a.at >= at && a.at < at + EVENT_GAP_MS);
  const oldPid = answers.filter((a) => a.at < at).at(-1)?.pid;
  const firsts = new Map();
  for (const a of after) if (a.pid !== oldPid && !firsts.has(a.loop)) firsts.set(a.loop, a);
  const list = [...firsts.values()];
  if (list.length === 0) return undefined;
  const start = Math.min(...list.map((a) => a.at));
  const end = Math.max(...list.map((a) => a.at));
  const lat = list.map((a) => a.at - a.began).sort((x, y) => x - y);
  const old = after
    .filter((a) => a.pid === oldPid && a.at >= start && a.at <= end)
    .map((a) => a.at - a.began)
    .sort((x, y) => x - y);
  const r = (x) => (x === undefined ? undefined : Math.round(x));
  // The successor's answers per 100 ms from its first one: how fast a cold process serves.
  const rate = [];
  for (const a of after) if (a.pid !== oldPid) rate[Math.floor((a.at - start) / 100)] = (rate[Math.floor((a.at - start) / 100)] ?? 0) + 1;
  const steadyRate = answers.filter((a) => a.at >= at - 1000 && a.at < at).length / 10;
  return {
    rate: rate
      .slice(0, 10)
      .map((n) => n ?? 0)
      .join(' '),
    steadyRate,
    servingMs: r(start - at),
    spanMs: r(end - start),
    conns: list.length,
    firstP50: r(lat[lat.length >> 1]),
    firstMax: r(lat.at(-1)),
    oldP50: r(old[old.length >> 1]),
    oldMax: r(old.at(-1)),
    oldN: old.length,
  };
}

console.log(
  `${values.framework}, node ${process.version}: p99 / p99.9 (ms) in the ${WINDOW_MS} ms after each of 3 events, against steady state`,
);
for (let round = 0; round < Number(values.rounds); round++) {
  for (const kind of KINDS) console.log(JSON.stringify(await run(kind)));
}
process.exit(0);
