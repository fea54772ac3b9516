// docs/guides/hono.md, run as written: its server.mjs block in a scratch app outside the
// repository (packed @grace-restart/core, hono and @hono/node-server installed), its commands
// (kill -USR2 / kill -TERM $(cat app.pid)) sent as signals, under keep-alive load. And the
// miswiring it warns about, serve(), gets grace-restart's error line naming the fix.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { upgradeAndStopUnderLoad } from './helpers/guide-app.mjs';
import { scratchApp } from './helpers/scratch-app.mjs';
import { startDrainingLoad } from './helpers/load.mjs';
import { freePort, startFixture, waitFor } from './helpers/process.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const GUIDE = readFileSync(join(ROOT, 'docs/guides/hono.md'), 'utf8');
const block = (lang, first) => {
  const found = [...GUIDE.matchAll(new RegExp(`\`\`\`${lang}\\n([\\s\\S]*?)\`\`\``, 'g'))]
    .map((m) => m[1])
    .find((b) => b.startsWith(first));
  assert.ok(found, `the guide has a ${lang} block starting with ${first}`);
  return found;
};

/** A scratch app outside the repository with core, hono and @hono/node-server installed. */
const appDir = (t) => scratchApp(t, { deps: ['hono', '@hono/node-server'] });

test('the Hono guide, as written: 2 upgrades under keep-alive load and a stop, 0 failed', async (t) => {
  const dir = await appDir(t);
  writeFileSync(join(dir, 'server.mjs'), block('js', '// server.mjs'));
  const commands = block('sh', 'node server.mjs');
  for (const line of ['kill -USR2 $(cat app.pid)', 'kill -TERM $(cat app.pid)']) assert.ok(commands.includes(line), line);
  const port = await freePort();
  const app = startFixture(join(dir, 'server.mjs'), { env: { PORT: String(port) }, cwd: dir });
  t.after(() => app.cleanup());
  const { stats, pid } = await upgradeAndStopUnderLoad({ pidFile: join(dir, 'app.pid'), firstPid: app.pid, port });
  assert.equal(stats.failed, 0, JSON.stringify(stats));
  assert.ok(stats.pids[pid] > 0, 'the last generation answered');
  assert.doesNotMatch(app.stderr, /never saw/);
});

test("Hono's serve() instead: grace-restart's error line names createAdaptorServer() and grace.listen(), and SIGTERM under load still fails no request", async (t) => {
  const dir = await appDir(t);
  const miswired = block('js', '// server.mjs')
    .replace("import { createAdaptorServer } from '@hono/node-server'", "import { serve } from '@hono/node-server'")
    .replace(
      /await grace\.listen\(createAdaptorServer\(\{ fetch: app\.fetch \}\), \{ port: (.*), host: '127\.0\.0\.1' \}\)/,
      "serve({ fetch: app.fetch, port: $1, hostname: '127.0.0.1' })",
    );
  assert.match(miswired, /serve\(\{ fetch: app\.fetch/);
  writeFileSync(join(dir, 'server.mjs'), miswired);
  const port = await freePort();
  const app = startFixture(join(dir, 'server.mjs'), { env: { PORT: String(port) }, cwd: dir });
  t.after(() => app.cleanup());
  await waitFor(
    () =>
      /"level":50,.*listens on 127\.0\.0\.1:\d+ through a server grace-restart never saw.*createAdaptorServer\(\) then grace\.listen\(\)/.test(
        app.stderr,
      ),
    { what: 'the error line' },
  );
  // SIGTERM under keep-alive load: the server grace-restart was not given is drained all the same
  // (Node's default SIGTERM, without grace-restart, would exit under the requests in flight).
  const load = startDrainingLoad({ port, connections: 10 });
  await waitFor(() => load.stats.ok > 300 || load.stats.failed > 0, { what: 'load to flow' });
  process.kill(app.pid, 'SIGTERM');
  await load.done;
  t.diagnostic(`SIGTERM under load: ${JSON.stringify(load.stats)}`);
  assert.equal(load.stats.failed, 0, JSON.stringify(load.stats.errors));
  assert.deepEqual(await app.exited, { code: 0, signal: null });
  assert.match(app.stderr, /SIGTERM: draining the servers seen answering requests/);
});
