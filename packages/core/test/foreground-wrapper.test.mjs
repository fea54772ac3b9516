// A process started by `npm start`, `npx tsx` or nodemon (issue #26): the wrapper exits when
// the first process hands over, so the app says so at its first ready, by default.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { followJsonEvents, waitFor } from '../../../test/helpers/process.mjs';
import { foregroundWrapper } from '../dist/foreground-wrapper.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/server.mjs', import.meta.url));

/** A fake /proc: pid → [argv, ppid]. */
const procOf = (table) => (pid, file) => {
  const row = table[pid];
  if (row === undefined) return undefined;
  return file === 'cmdline' ? `${row[0].join('\0')}\0` : `${pid} (x) S ${row[1]} 0 0`;
};

test('foregroundWrapper: npm (its process title), through sh -c, npx tsx, nodemon; not a shell, systemd or a plain node', () => {
  const table = {
    10: [['sh', '-c', 'node dist/server.js'], 9],
    9: [['npm start'], 8],
    8: [['bash'], 1],
    20: [['node', '/home/u/.npm/_npx/abc/node_modules/.bin/tsx', 'src/server.ts'], 19],
    30: [['node', '/app/node_modules/nodemon/bin/nodemon.js', 'server.js'], 1],
    31: [['/usr/bin/nodemon', 'server.js'], 1],
    40: [['bash'], 1],
    50: [['/lib/systemd/systemd', '--system'], 0],
    60: [['node', '--test', 'x.test.mjs'], 1],
  };
  const read = procOf(table);
  assert.deepEqual(foregroundWrapper(10, read), { pid: 9, command: 'npm start' });
  assert.equal(foregroundWrapper(20, read)?.pid, 20);
  assert.equal(foregroundWrapper(31, read)?.pid, 31);
  for (const pid of [8, 40, 50, 60, 999]) assert.equal(foregroundWrapper(pid, read), undefined, `pid ${pid}`);
});

test('started by `npm start`: a warning on stderr by default names npm, its pid and how to stop the app', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'grace-npm-start-'));
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({ name: 'app', private: true, scripts: { start: `node ${JSON.stringify(FIXTURE)}` } }),
  );
  const npm = spawn('npm', ['start', '--silent'], {
    cwd: dir,
    env: { ...process.env, PORT: '0', PID_FILE: join(dir, 'app.pid') },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  t.after(() => {
    try {
      process.kill(-npm.pid, 'SIGKILL');
    } catch {
      // gone
    }
  });
  const output = followJsonEvents(npm);
  await output.waitForEvent({ event: 'ready' }, { timeout: 30_000 });
  const line = await waitFor(() => output.stderr.split('\n').find((l) => l.includes('started by')), { what: 'the warning' });
  const warning = JSON.parse(line);
  assert.equal(warning.level, 40);
  assert.match(warning.msg, /started by `npm start` \(pid \d+\), which exits when this process hands over/);
  assert.match(warning.msg, new RegExp(`kill -TERM \\$\\(cat ${join(dir, 'app.pid').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\)`));
});
