// Which release to roll back to (releases.ts), in process: the rule that turns crashes after a
// promotion into a rollback (the supervisor that acts on it runs real workers in bad-release.test.mjs).
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, realpathSync, renameSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { BAD_RELEASE_CRASHES, Releases } from '../dist/releases.js';

const warnings = [];
const logger = { debug() {}, info() {}, error() {}, warn: (_fields, message) => warnings.push(message) };

function layout() {
  const root = realpathSync(mkdtempSync(join(tmpdir(), 'grace-releases-')));
  for (const v of ['v1', 'v2']) mkdirSync(join(root, v));
  symlinkSync(join(root, 'v1'), join(root, 'current'));
  const switchTo = (v) => {
    symlinkSync(join(root, v), join(root, 'next'));
    renameSync(join(root, 'next'), join(root, 'current'));
  };
  return { root, current: join(root, 'current'), switchTo };
}

test('two crashes of the newest generation within the window roll back to the release before it, once', () => {
  assert.equal(BAD_RELEASE_CRASHES, 2);
  const { root, current, switchTo } = layout();
  const releases = new Releases(current, 1, 60_000, logger);
  assert.equal(releases.current, join(root, 'v1'));
  const now = Date.now();
  assert.equal(releases.rollbackTarget(1, [now, now], now), undefined, 'no release before the first');
  switchTo('v2');
  const target = releases.resolveTarget();
  releases.checkUpgrade(target);
  releases.promote(target, 2, false);
  const at = Date.now();
  assert.equal(releases.rollbackTarget(2, [at], at), undefined, 'one crash is not a bad release');
  assert.equal(releases.rollbackTarget(2, [at - 10_000, at], at), undefined, 'a crash before the promotion does not count');
  assert.equal(releases.rollbackTarget(1, [at, at], at), undefined, 'crashes of another generation do not count');
  assert.equal(releases.rollbackTarget(2, [at, at], at + 61_000), undefined, 'after the window');
  assert.equal(releases.rollbackTarget(2, [at, at + 1], at + 1), join(root, 'v1'));
  releases.promote(join(root, 'v1'), 3, true);
  assert.equal(releases.rollbacks, 1);
  const later = Date.now();
  assert.equal(releases.rollbackTarget(3, [later, later], later), undefined, 'a rollback is not rolled back');
});

test('started in /, an upgrade warns that releases cannot be told apart, not that files were replaced in place', () => {
  warnings.length = 0;
  const releases = new Releases('/', 1, 60_000, logger);
  releases.checkUpgrade(releases.resolveTarget());
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /started in \/, so it cannot tell one release from the next/);
  assert.match(warnings[0], /WorkingDirectory=.*WORKDIR/);
  assert.doesNotMatch(warnings[0], /replaced in place/);
});

test('an upgrade from the same directory warns that it cannot be rolled back to; a window of 0 disables it all', () => {
  const { current } = layout();
  warnings.length = 0;
  const releases = new Releases(current, 1, 60_000, logger);
  releases.checkUpgrade(releases.resolveTarget());
  assert.match(warnings.join('\n'), /files replaced in place cannot be rolled back to/);
  releases.promote(releases.resolveTarget(), 2, false);
  const now = Date.now();
  assert.equal(releases.rollbackTarget(2, [now, now], now), undefined, 'nothing to go back to');
  warnings.length = 0;
  const off = new Releases(current, 1, 0, logger);
  off.checkUpgrade(off.resolveTarget());
  assert.deepEqual(warnings, []);
  off.promote('/elsewhere', 2, false);
  assert.equal(off.rollbackTarget(2, [now, now], now), undefined, 'a window of 0: never');
});
