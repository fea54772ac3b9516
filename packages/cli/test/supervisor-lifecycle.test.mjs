// The supervisor's lifecycle table itself: the rules every cell must keep, the README's copy of
// it, and a seeded random walk through it (the processes that run it are tested in
// supervisor.test.mjs and supervisor-upgrade.test.mjs). In-process: no process is started.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { randomSource } from '../../../test/helpers/seeded-random.mjs';
import {
  SUPERVISOR_EVENTS,
  SUPERVISOR_LIFECYCLE,
  SUPERVISOR_STATES,
  supervisorLifecycleMarkdown,
  supervisorTransition,
} from '../dist/supervisor-lifecycle.js';

const STATES = ['starting', 'running', 'upgrading', 'upgrading-supervisor', 'handed-over', 'stopping', 'stopped'];
const EVENTS = [
  'start-done',
  'start-failed',
  'upgrade',
  'upgrade-done',
  'supervisor-upgrade',
  'supervisor-upgrade-done',
  'supervisor-upgrade-failed',
  'stop',
  'stop-again',
  'hup',
  'crash',
  'crash-loop',
  'bad-release',
  'over-memory',
  'drained',
];
/** States in which workers serve for this supervisor and upgrades may run. */
const SERVING = new Set(['running', 'upgrading', 'upgrading-supervisor']);
/** Once here, told to stop or replaced: never serving again. */
const ENDING = new Set(['handed-over', 'stopping', 'stopped']);
/** Actions that start something new. */
const STARTS = new Set([
  'rolling-upgrade',
  'roll-back-release',
  'replace-worker',
  'start-new-supervisor',
  'restart-slot',
  'serve',
  'serve-on',
]);

test('the table names the states and events the README does, and every state answers every event', () => {
  assert.deepEqual(SUPERVISOR_STATES, STATES);
  assert.deepEqual(SUPERVISOR_EVENTS, EVENTS);
  for (const state of STATES) {
    assert.deepEqual(Object.keys(SUPERVISOR_LIFECYCLE[state]).sort(), [...EVENTS].sort(), state);
    for (const event of EVENTS) {
      const { to, action } = supervisorTransition(state, event);
      assert.ok(STATES.includes(to), `${state} + ${event} -> ${to}`);
      assert.equal(typeof action, 'string', `${state} + ${event}`);
    }
  }
});

test('a bad release is rolled back only from running, into an upgrade: never while another upgrade runs', () => {
  for (const from of STATES) {
    const { to, action } = supervisorTransition(from, 'bad-release');
    if (from === 'running') assert.deepEqual({ to, action }, { to: 'upgrading', action: 'roll-back-release' });
    else assert.deepEqual({ to, action }, { to: from, action: 'ignore' }, from);
  }
});

test('a worker over --max-memory is replaced only while running: an upgrade replaces it anyway', () => {
  for (const from of STATES) {
    const { to, action } = supervisorTransition(from, 'over-memory');
    if (from === 'running') assert.deepEqual({ to, action }, { to: 'running', action: 'replace-worker' });
    else assert.deepEqual({ to, action }, { to: from, action: 'ignore' }, from);
  }
});

test('once stopping or handed over, no event serves again or starts anything', () => {
  for (const from of ENDING) {
    for (const event of EVENTS) {
      const { to, action } = supervisorTransition(from, event);
      assert.ok(ENDING.has(to), `${from} + ${event} -> ${to}`);
      assert.ok(!STARTS.has(action), `${from} + ${event}: ${action}`);
    }
  }
});

test('a first stop signal is never ignored before the supervisor is told to stop', () => {
  assert.deepEqual(supervisorTransition('starting', 'stop'), { to: 'stopping', action: 'drain-and-stop' });
  assert.deepEqual(supervisorTransition('running', 'stop'), { to: 'stopping', action: 'drain-and-stop' });
  assert.deepEqual(supervisorTransition('upgrading', 'stop'), { to: 'stopping', action: 'abort-upgrade-and-stop' });
  assert.deepEqual(supervisorTransition('upgrading-supervisor', 'stop'), { to: 'stopping', action: 'abort-handover-and-stop' });
});

test('a second stop signal kills at once in every state', () => {
  for (const from of STATES) assert.equal(supervisorTransition(from, 'stop-again').action, 'kill-now', from);
});

test('SIGHUP never changes the state: it is forwarded or ignored', () => {
  for (const from of STATES) {
    const { to, action } = supervisorTransition(from, 'hup');
    assert.equal(to, from);
    assert.ok(['forward-hup', 'ignore'].includes(action), `${from}: ${action}`);
  }
});

test('a crash restarts its slot exactly in the serving states; a crash loop stops them', () => {
  for (const from of STATES) {
    const crash = supervisorTransition(from, 'crash');
    assert.equal(crash.to, from);
    assert.equal(crash.action, SERVING.has(from) ? 'restart-slot' : 'note-exit', from);
    const loop = supervisorTransition(from, 'crash-loop');
    if (SERVING.has(from)) assert.deepEqual(loop, { to: 'stopping', action: 'give-up' }, from);
    else assert.equal(loop.action, 'ignore', from);
  }
});

test('at most one upgrade of either kind runs: each starts only from running, and a second joins or is refused', () => {
  for (const from of STATES) {
    for (const event of EVENTS) {
      const { action } = supervisorTransition(from, event);
      if (['rolling-upgrade', 'roll-back-release', 'start-new-supervisor'].includes(action))
        assert.equal(from, 'running', `${from} + ${event}`);
    }
  }
  assert.equal(supervisorTransition('upgrading', 'upgrade').action, 'join-upgrade');
  assert.equal(supervisorTransition('upgrading', 'supervisor-upgrade').action, 'refuse-supervisor-upgrade');
  assert.equal(supervisorTransition('upgrading-supervisor', 'supervisor-upgrade').action, 'join-supervisor-upgrade');
  assert.equal(supervisorTransition('upgrading-supervisor', 'upgrade').action, 'refuse-upgrade');
});

test('only a drain ends the supervisor, and it ends every stop and handover', () => {
  for (const from of STATES) {
    for (const event of EVENTS) {
      const { to, action } = supervisorTransition(from, event);
      if (to === 'stopped' && from !== 'stopped') assert.deepEqual([event, action], ['drained', 'exit'], `${from} + ${event}`);
    }
  }
  for (const from of ['handed-over', 'stopping'])
    assert.deepEqual(supervisorTransition(from, 'drained'), { to: 'stopped', action: 'exit' });
});

test("the CLI README prints the code's table", () => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const table = supervisorLifecycleMarkdown();
  assert.ok(readme.includes(`${table}\n`), `packages/cli/README.md must hold the table as the code has it:\n\n${table}\n`);
});

/** A seeded generator, so that a failing walk can be replayed. */
const random = (seed) => randomSource(seed).next;

test('random walks through the table keep the rules (SEED=n replays one)', () => {
  const seed = Number(process.env.SEED ?? Date.now() % 2 ** 31);
  console.log(`# supervisor lifecycle walk: SEED=${seed}`);
  const next = random(seed);
  for (let walk = 0; walk < 2_000; walk++) {
    let state = 'starting';
    let stopSignals = 0;
    const path = [];
    for (let step = 0; step < 40; step++) {
      // A stop signal is `stop` the first time, `stop-again` after, as bin.ts counts them.
      let event = EVENTS[Math.floor(next() * EVENTS.length)];
      if (event === 'stop' || event === 'stop-again') event = stopSignals++ === 0 ? 'stop' : 'stop-again';
      const { to, action } = supervisorTransition(state, event);
      path.push(`${state} --${event}/${action}--> ${to}`);
      const where = `seed ${seed}, walk ${walk}:\n  ${path.join('\n  ')}`;
      if (action === 'kill-now') {
        assert.equal(event, 'stop-again', where);
        break; // the process is gone
      }
      if (ENDING.has(state)) assert.ok(ENDING.has(to) && !STARTS.has(action), where);
      if (stopSignals > 0) assert.ok(!SERVING.has(to), `told to stop, serving again: ${where}`);
      if (state === 'stopped') assert.equal(to, 'stopped', where);
      if (SERVING.has(to) && !SERVING.has(state)) assert.ok(['serve'].includes(action), where);
      if (to === 'upgrading' && state !== 'upgrading') assert.ok(['rolling-upgrade', 'roll-back-release'].includes(action), where);
      if (to === 'upgrading-supervisor' && state !== 'upgrading-supervisor') assert.equal(action, 'start-new-supervisor', where);
      state = to;
    }
  }
});
