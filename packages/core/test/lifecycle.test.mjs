// The lifecycle table itself: the rules every cell must keep (the processes that run it are
// tested in test/lifecycle.test.mjs and by the randomized driver).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LIFECYCLE, transition } from '@grace-restart/core/internal';

const states = Object.keys(LIFECYCLE);
const events = [
  'ready',
  'healthy',
  'unhealthy',
  'upgrade',
  'stop',
  'stop-again',
  'reload',
  'successor-ready',
  'replaced',
  'successor-failed',
  'successor-lost',
  'successor-stopped',
  'relisten-failed',
  'drain-done',
];
const serving = new Set(['ready', 'upgrading']);

test('once told to stop, no event leads back to serving', () => {
  for (const from of ['stopping', 'closed']) {
    for (const event of events) {
      const { to } = transition(from, event);
      assert.ok(!serving.has(to), `${from} + ${event} -> ${to}`);
    }
  }
});

test('a stop is never ignored while the process serves or hands over', () => {
  for (const from of ['starting', 'checking', 'ready', 'upgrading', 'handed-off']) {
    assert.equal(transition(from, 'stop').to, 'stopping', from);
  }
});

test('a second stop signal exits at once in every state', () => {
  for (const from of states) assert.equal(transition(from, 'stop-again').action, 'exit-now', from);
});

test('SIGHUP never stops a process: it reloads or is ignored, in every state', () => {
  for (const from of states) {
    const { to, action } = transition(from, 'reload');
    assert.equal(to, from);
    assert.ok(['call-onReload', 'ignore'].includes(action), `${from}: ${action}`);
  }
});

test('only a successor that died after its ready report brings a handed-off process back', () => {
  for (const event of events) {
    const { to } = transition('handed-off', event);
    if (serving.has(to)) assert.equal(event, 'successor-lost');
  }
});

test('events that cannot happen in a state are ignored, not thrown', () => {
  assert.deepEqual(transition('starting', 'successor-lost'), { to: 'starting', action: 'ignore' });
  assert.deepEqual(transition('closed', 'drain-done'), { to: 'closed', action: 'ignore' });
});

test('a successor that stops cleanly after its takeover stops the service: the old process does not serve again', () => {
  assert.deepEqual(transition('handed-off', 'successor-stopped'), { to: 'stopping', action: 'forget-handoff-and-stop' });
  assert.deepEqual(transition('handed-off', 'successor-lost'), { to: 'ready', action: 'serve-again' });
});

test('a supervised worker the supervisor replaces drains like a process that handed off, or stops', () => {
  assert.deepEqual(transition('ready', 'replaced'), { to: 'handed-off', action: 'drain-for-upgrade' });
  assert.equal(transition('starting', 'replaced').to, 'stopping');
  // A supervised worker never upgrades itself: 'upgrading' cannot meet a supervisor's retire.
  for (const from of ['handed-off', 'stopping', 'closed']) assert.ok(!serving.has(transition(from, 'replaced').to), from);
});
