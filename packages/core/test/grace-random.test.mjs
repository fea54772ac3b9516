// A seeded random walk through the lifecycle of a real Grace instance, in this process, against
// the fake environment of grace-in-process.test.mjs: signals, API calls and successor outcomes
// (ready, never ready, crash, clean exit) in random order and at random moments. After every
// step the rules of lifecycle.ts must hold, seen from outside:
//   - once told to stop, it never serves again (state never back to ready or upgrading);
//   - a second stop signal exits at once with 128 + its number, and only a second one does;
//   - while ready and not binding again, its listener accepts;
//   - every walk ends closed, with at most one successor alive.
// The processes-and-signals version of the same walk is test/faults/lifecycle-driver.mjs.
// Reproduce a walk: GRACE_RANDOM_SEEDS=<seed> node --test packages/core/test/grace-random.test.mjs
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import http from 'node:http';
import { test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { Grace, UpgradeError } from '@grace-restart/core';
import { request } from '../../../test/helpers/load.mjs';
import { waitFor } from '../../../test/helpers/process.mjs';
import { randomSource } from '../../../test/helpers/seeded-random.mjs';
import { inheritedNothing } from './fake-environment.mjs';

const SEEDS = (process.env.GRACE_RANDOM_SEEDS ?? '1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24').split(',').map(Number);
const STEPS = 14;

/** A seeded generator, so that a failing walk can be replayed. */
const random = (seed) => randomSource(seed).next;

function fakeWorld() {
  const world = { attempts: [], successors: [], exits: [], signals: new EventEmitter() };
  world.environment = {
    inherited: inheritedNothing,
    signals: world.signals,
    spawnSuccessor: (options) =>
      new Promise((resolve, reject) => {
        const attempt = { resolve, reject, settled: false };
        // An aborted attempt ends as spawnSuccessor ends it: stopped, rejected.
        options.signal?.addEventListener('abort', () => settle(attempt, 'aborted'), { once: true });
        world.attempts.push(attempt);
      }),
    kill: () => undefined,
    exit: (code) => world.exits.push(code),
  };
  const settle = (attempt, how) => {
    if (attempt.settled) return;
    attempt.settled = true;
    if (how === 'ready') {
      const child = new EventEmitter();
      child.connected = false;
      child.disconnect = () => undefined;
      const successor = { child, alive: true };
      world.successors.push(successor);
      attempt.resolve({ pid: 900_000 + world.successors.length, child, adopts: [] });
    } else attempt.reject(new UpgradeError(how, `successor ${how}`, { durationMs: 1 }));
  };
  world.pending = () => world.attempts.find((a) => !a.settled);
  world.alive = () => world.successors.filter((s) => s.alive);
  world.settle = settle;
  world.endSuccessor = (successor, code, signal = null) => {
    successor.alive = false;
    successor.child.emit('exit', code, signal);
  };
  return world;
}

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

/** The moves of the walk, each possible or not in the moment. */
const MOVES = [
  { name: 'SIGUSR2', run: (w) => w.signals.emit('SIGUSR2', 'SIGUSR2') },
  { name: 'upgrade()', run: (_w, g) => void g.upgrade().catch(() => undefined) },
  { name: 'SIGHUP', run: (w) => w.signals.emit('SIGHUP', 'SIGHUP') },
  { name: 'SIGTERM', stop: 'SIGTERM', run: (w) => w.signals.emit('SIGTERM', 'SIGTERM') },
  { name: 'SIGINT', stop: 'SIGINT', run: (w) => w.signals.emit('SIGINT', 'SIGINT') },
  { name: 'close()', stop: 'api', run: (_w, g) => void g.close() },
  { name: 'successor ready', when: (w) => w.pending(), run: (w) => w.settle(w.pending(), 'ready') },
  { name: 'successor never ready', when: (w) => w.pending(), run: (w) => w.settle(w.pending(), 'timeout') },
  { name: 'successor crashes', when: (w) => w.alive()[0], run: (w) => w.endSuccessor(w.alive()[0], 1) },
  { name: 'successor killed', when: (w) => w.alive()[0], run: (w) => w.endSuccessor(w.alive()[0], null, 'SIGKILL') },
  { name: 'successor exits 0', when: (w) => w.alive()[0], run: (w) => w.endSuccessor(w.alive()[0], 0) },
  { name: 'wait out the probation', run: () => new Promise((resolve) => setTimeout(resolve, 1_200)) },
];

const EXIT_CODE = { SIGTERM: 143, SIGINT: 130 };

async function walk(seed) {
  const rand = random(seed);
  const world = fakeWorld();
  // The probation is pinned: 'wait out the probation' waits 1.2 of it.
  const grace = new Grace({ controlDir: false, logger: quiet, drainTimeout: 1_000, idleGrace: 50, probation: 1_000 }, world.environment);
  const server = http.createServer((_req, res) => res.end('ok'));
  await grace.listen(server, { port: 0, host: '127.0.0.1' });
  await waitFor(() => grace.state === 'ready', { what: 'autoReady' });
  const { port } = server.address();
  const trail = [];
  let told = false;
  const stopSignals = [];
  try {
    for (let step = 0; step < STEPS && grace.state !== 'closed'; step++) {
      const possible = MOVES.filter((m) => m.when === undefined || m.when(world));
      const move = possible[Math.floor(rand() * possible.length)];
      trail.push(move.name);
      if (process.env.GRACE_RANDOM_TRACE) console.error(seed, step, move.name, grace.state);
      if (move.stop !== undefined) told = true;
      if (move.stop === 'SIGTERM' || move.stop === 'SIGINT') stopSignals.push(move.stop);
      await move.run(world, grace);
      for (let i = 0; i < 3; i++) await tick();
      if (told) assert.ok(!['ready', 'upgrading'].includes(grace.state), `serving (${grace.state}) after a stop`);
      // Only a second stop signal exits at once, with its own code.
      const expected = stopSignals.length >= 2 ? [EXIT_CODE[stopSignals[1]]] : [];
      assert.deepEqual(world.exits.slice(0, expected.length), expected);
      if (stopSignals.length < 2) assert.ok(!world.exits.some((c) => c !== 0), `exit codes ${world.exits}`);
      if (grace.state === 'ready') {
        await waitFor(() => server.listening, { what: 'the listener bound again', timeout: 5_000 });
        assert.equal((await request({ port, timeout: 5_000 })).status, 200);
      }
    }
    // The end of every walk: a stop, the successors that remain end as a service stop ends them.
    if (grace.state !== 'closed') {
      for (const attempt of world.attempts) world.settle(attempt, 'aborted');
      world.signals.emit('SIGTERM', 'SIGTERM');
      for (const successor of world.alive()) world.endSuccessor(successor, 0);
      await waitFor(() => grace.state === 'closed', { what: `seed ${seed} to close`, timeout: 10_000 });
    }
    assert.ok(world.successors.filter((s) => s.alive).length <= 1);
  } catch (error) {
    error.message = `seed ${seed}, moves: ${trail.join(' → ')}\n${error.message}`;
    throw error;
  } finally {
    server.close();
  }
}

for (const seed of SEEDS) {
  test(`random walk, seed ${seed}`, { timeout: 60_000 }, () => walk(seed));
}
