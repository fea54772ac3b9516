// Bad releases of a self-upgrading app (issue #28): one that fails its health check, one that dies
// within the probation (its default length, 10 s: the old process keeps its sockets and watches
// it), and a good one, which `grace-restart upgrade` reports after the probation's verdict. Each
// test runs the fixture as a real process under keep-alive load, asserted from outside.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { request, startLoad } from '../../../test/helpers/load.mjs';
import { isAlive, runCli, waitFor } from '../../../test/helpers/process.mjs';
import { controlSocketPath, sendControl } from '../dist/internal.js';
import { servingPid, startServer } from './helpers.mjs';

const tempDir = () => mkdtempSync(join(tmpdir(), 'grace-probation-test-'));
/** The suite's runner shortens the probation (scripts/run-tests.sh); these tests use the default. */
const DEFAULT_PROBATION = { GRACE_RESTART_PROBATION: '' };
const LOAD_CONNECTIONS = 10;

/** After a rollback: the old process answers and is named in the PID file again, and the load flows on it; the load's figures. */
async function servesAgain({ fixture, port, pidFile, load }) {
  assert.equal(await servingPid({ port }), fixture.pid);
  assert.equal(readFileSync(pidFile, 'utf8').trim(), String(fixture.pid), 'the PID file names the old process again');
  const ok = load.stats.ok;
  await waitFor(() => load.stats.ok > ok + 200, { what: 'load to flow on the old process' });
  return load.stop();
}

test('a release that dies 3 s after its ready report is rolled back: no connect refused, upgrade exits 1', async (t) => {
  const dir = tempDir();
  const behaviour = join(dir, 'behaviour');
  const pidFile = join(dir, 'app.pid');
  writeFileSync(behaviour, 'ok');
  const { fixture, port } = await startServer(t, { ...DEFAULT_PROBATION, BEHAVIOUR_FILE: behaviour, PID_FILE: pidFile });
  const load = startLoad({ port, connections: LOAD_CONNECTIONS });
  t.after(() => load.stop());
  await waitFor(() => load.stats.ok > 200, { what: 'load to flow' });

  // With the old fixed 1 s probation, the old process had exited by the time this release died.
  writeFileSync(behaviour, 'crash-after-ready:3000');
  const after = fixture.events.length;
  const result = await runCli(['upgrade', '--pid-file', pidFile]);
  const successor = await fixture.waitForEvent((e) => e.event === 'ready' && e.pid !== fixture.pid, { after });
  assert.equal(result.code, 1, result.stdout + result.stderr);
  assert.match(
    result.stdout,
    new RegExp(
      `upgrade failed after \\d+ ms, still serving generation 1: successor ${successor.pid} exited \\(exit code 7\\) after it was ready`,
    ),
  );
  assert.ok(!isAlive(successor.pid), 'the bad release is gone');
  assert.ok(isAlive(fixture.pid), 'the old process serves on');
  assert.equal(
    fixture.events.slice(after).some((e) => e.event === 'drain-start'),
    false,
    'the old process had not let go: the probation was still on',
  );
  const stats = await servesAgain({ fixture, port, pidFile, load });
  // What may fail: the request in flight on each keep-alive connection that had moved to the
  // bad release when it died (reset), so at most one per load connection. Never a refused connect.
  assert.deepEqual(
    Object.keys(stats.errors).filter((k) => k !== 'ECONNRESET'),
    [],
    JSON.stringify(stats.errors),
  );
  assert.ok((stats.errors.ECONNRESET ?? 0) <= LOAD_CONNECTIONS, JSON.stringify(stats.errors));
  // The release is fixed: the next upgrade is promoted.
  writeFileSync(behaviour, 'ok');
  const fixed = await runCli(['upgrade', '--pid-file', pidFile]);
  assert.equal(fixed.code, 0, fixed.stdout + fixed.stderr);
});

test('a good release serves through the probation: new connections reach it, the old one keeps its sockets until the verdict', async (t) => {
  const dir = tempDir();
  const pidFile = join(dir, 'app.pid');
  const { fixture, port } = await startServer(t, { ...DEFAULT_PROBATION, PID_FILE: pidFile });
  const load = startLoad({ port, connections: LOAD_CONNECTIONS });
  t.after(() => load.stop());
  await waitFor(() => load.stats.ok > 200, { what: 'load to flow' });
  const after = fixture.events.length;
  let answered = false;
  const upgrading = runCli(['upgrade', '--pid-file', pidFile]).finally(() => (answered = true));
  const successor = await fixture.waitForEvent((e) => e.event === 'ready' && e.pid !== fixture.pid, { after });

  // During the probation a fresh connection is accepted by either process (they share the
  // socket); the old process moves what it accepts to the successor as the move's pace allows
  // and serves what waits its turn. Most answers come from the successor.
  const during = [];
  for (let i = 0; i < 20; i += 1) during.push((await request({ port })).json.pid);
  assert.equal(answered, false, 'upgrade still waits for the verdict');
  assert.ok(isAlive(fixture.pid), 'the old process is still there, holding its sockets');
  const bySuccessor = during.filter((pid) => pid === successor.pid).length;
  t.diagnostic(`fresh connections during the probation: ${bySuccessor} of 20 answered by the successor`);
  assert.ok(bySuccessor > 0, `answers came from ${[...new Set(during)]}`);
  const listening = fixture.events.slice(after).some((e) => e.event === 'drain-start');
  assert.equal(listening, false, 'the old process has not let go yet');

  const result = await upgrading;
  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.match(result.stdout, /upgraded to generation 2 in \d+ ms, and served through its 10000 ms probation/);
  await waitFor(() => !isAlive(fixture.pid), { what: `old process ${fixture.pid} to exit after the probation` });
  const stats = await load.stop();
  assert.equal(stats.failed, 0, JSON.stringify(stats.errors));
  // The successor counts what it answered: every request of the load since its ready report.
  const status = JSON.parse((await runCli(['status', '--pid-file', pidFile, '--json'])).stdout);
  assert.equal(status.pid, successor.pid);
  assert.ok(status.answers.requests > 0 && status.answers.errors5xx === 0, JSON.stringify(status.answers));
});

test('a release that fails its health check never serves: rolled back with the reason, nothing lost', async (t) => {
  const dir = tempDir();
  const behaviour = join(dir, 'behaviour');
  const pidFile = join(dir, 'app.pid');
  writeFileSync(behaviour, 'ok');
  const { fixture, port } = await startServer(t, { BEHAVIOUR_FILE: behaviour, PID_FILE: pidFile, HEALTH_CHECK: '/healthz' });
  const load = startLoad({ port, connections: LOAD_CONNECTIONS });
  t.after(() => load.stop());
  await waitFor(() => load.stats.ok > 200, { what: 'load to flow' });
  writeFileSync(behaviour, 'unhealthy');
  const after = fixture.events.length;
  const result = await runCli(['upgrade', '--pid-file', pidFile]);
  assert.equal(result.code, 1, result.stdout + result.stderr);
  assert.match(
    result.stdout,
    /upgrade failed after \d+ ms, still serving generation 1: successor \d+ failed its health check: GET \/healthz answered 500 \(unhealthy\)/,
  );
  const failed = await fixture.waitForEvent({ event: 'upgrade-failed' }, { after });
  assert.equal(failed.reason, 'unhealthy');
  assert.equal(
    fixture.events.slice(after).some((e) => e.event === 'ready' && e.pid !== fixture.pid),
    false,
    'the bad release never reported ready',
  );
  const ok = load.stats.ok;
  await waitFor(() => load.stats.ok > ok + 200, { what: 'load to flow on the old process' });
  const stats = await load.stop();
  // The bad release listened on the shared sockets while it checked itself: what it accepted
  // then, it drained (its stop), so nothing fails.
  assert.equal(stats.failed, 0, JSON.stringify(stats.errors));
  assert.equal(await servingPid({ port }), fixture.pid);
});

test('canary: a release answering 500 to one request in ten fails at the end of its probation; it drains, the old process serves again, upgrade exits 1 with both rates', async (t) => {
  const dir = tempDir();
  const behaviour = join(dir, 'behaviour');
  const pidFile = join(dir, 'app.pid');
  writeFileSync(behaviour, 'ok');
  // A 3 s probation: the canary's window.
  const { fixture, port } = await startServer(t, {
    GRACE_RESTART_PROBATION: '3000',
    BEHAVIOUR_FILE: behaviour,
    PID_FILE: pidFile,
    CANARY: '1',
  });
  const load = startLoad({ port, connections: LOAD_CONNECTIONS });
  t.after(() => load.stop());
  await waitFor(() => load.stats.ok > 200, { what: 'load to flow' });
  writeFileSync(behaviour, 'status-500-tenth');
  const after = fixture.events.length;
  const okBefore = load.stats.ok;
  const result = await runCli(['upgrade', '--pid-file', pidFile]);
  assert.equal(result.code, 1, result.stdout + result.stderr);
  assert.match(
    result.stdout,
    /still serving generation 1: successor (\d+): canary failed: \d+\.\d% \(\d+ of \d+\) errors against 0\.0% \(0 of \d+\) for this process \(limit: 1 points worse\) \(canary\)/,
  );
  const successor = Number(/successor (\d+): canary failed/.exec(result.stdout)[1]);
  const failed = await fixture.waitForEvent({ event: 'upgrade-failed' }, { after });
  assert.equal(failed.reason, 'canary');
  await waitFor(() => !isAlive(successor), { what: `the failed successor ${successor} to drain and exit` });
  assert.ok(isAlive(fixture.pid), 'the old process serves on');
  const stats = await servesAgain({ fixture, port, pidFile, load });
  // What fails: the bad release's own 500s while it served its probation (all the traffic moved
  // to it: about one in ten of the requests of that window). Nothing else: no reset, no refusal.
  assert.deepEqual(
    Object.keys(stats.errors).filter((k) => k !== 'http 500'),
    [],
    JSON.stringify(stats.errors),
  );
  const duringUpgrade = stats.ok + stats.failed - okBefore;
  t.diagnostic(`${stats.failed} answered 500 of ${duringUpgrade} requests from the upgrade on`);
  assert.ok(stats.failed <= duringUpgrade / 10 + LOAD_CONNECTIONS, `${stats.failed} of ${duringUpgrade}`);
});

test('canary: a good release passes its probation verdict and is promoted, nothing lost', async (t) => {
  const dir = tempDir();
  const pidFile = join(dir, 'app.pid');
  const { fixture, port } = await startServer(t, { GRACE_RESTART_PROBATION: '3000', PID_FILE: pidFile, CANARY: '1' });
  const load = startLoad({ port, connections: LOAD_CONNECTIONS });
  t.after(() => load.stop());
  await waitFor(() => load.stats.ok > 200, { what: 'load to flow' });
  const result = await runCli(['upgrade', '--pid-file', pidFile]);
  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.match(result.stdout, /served through its 3000 ms probation/);
  await waitFor(() => !isAlive(fixture.pid), { what: 'the old process to exit' });
  const successor = await servingPid({ port });
  assert.notEqual(successor, fixture.pid);
  // Its predecessor gone, nobody could serve in its place: a late verdict on its socket is refused.
  const late = await sendControl(controlSocketPath(successor), { cmd: 'canary-failed', reason: 'too late' }, 5_000);
  assert.deepEqual(late, { ok: false, error: 'not a successor serving its probation' });
  const ok = load.stats.ok;
  await waitFor(() => load.stats.ok > ok + 200, { what: 'load to flow on the successor' });
  assert.equal(await servingPid({ port }), successor);
  const stats = await load.stop();
  assert.equal(stats.failed, 0, JSON.stringify(stats.errors));
});
