// The commands the READMEs give, run as written in the repository's layout after `npm ci &&
// npm run build`: the root README's supervisor session through `npx grace-restart` (the bin
// npm ci links to the committed packages/cli/bin/grace-restart.js), and each example's
// README (`node examples/<name>/dist/server.js`, `kill -USR2 $(cat app.pid)`, `kill -TERM …`).
// Only the port (3000 → a free one) and the PID file's directory (a temp dir) are changed.
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { run, spawnJson } from './helpers/consumer.mjs';
import { request } from './helpers/load.mjs';
import { isAlive, waitFor } from './helpers/process.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const EXAMPLES = ['fastify', 'express', 'koa'];
// npx must use the linked workspace bin; were it missing, fail instead of fetching a package.
const NPX_ENV = { npm_config_yes: 'false', npm_config_update_notifier: 'false' };

function tempDir(t) {
  const dir = mkdtempSync(join(tmpdir(), 'grace-readme-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The lines of the first ```sh block of `markdown` that contains `marker`. */
function shBlock(markdown, marker) {
  const block = [...markdown.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]).find((b) => b.includes(marker));
  assert.ok(block, `no sh block with ${marker}`);
  return block
    .split('\n')
    .map((line) =>
      line
        .replace(/\s+#.*$/, '')
        .replace(/^#.*$/, '')
        .trim(),
    )
    .filter(Boolean);
}

const readPid = (file) => (existsSync(file) ? Number(readFileSync(file, 'utf8').trim()) : undefined);
const portOf = (event) => event.port ?? event.address?.port;

test('npm ci links node_modules/.bin/grace-restart to the committed bin, which asks for a build when dist/ is missing', async (t) => {
  const link = join(ROOT, 'node_modules', '.bin', 'grace-restart');
  assert.equal(realpathSync(link), join(ROOT, 'packages', 'cli', 'bin', 'grace-restart.js'));
  assert.equal(
    JSON.parse(readFileSync(join(ROOT, 'packages', 'cli', 'package.json'), 'utf8')).bin['grace-restart'],
    './bin/grace-restart.js',
  );

  // The same file in a package without dist/, as in a clone before `npm run build`.
  const unbuilt = join(tempDir(t), 'cli');
  mkdirSync(join(unbuilt, 'bin'), { recursive: true });
  cpSync(join(ROOT, 'packages', 'cli', 'bin', 'grace-restart.js'), join(unbuilt, 'bin', 'grace-restart.js'));
  writeFileSync(join(unbuilt, 'package.json'), '{ "type": "module" }\n');
  const result = await run(join(unbuilt, 'bin', 'grace-restart.js'), ['status', '--pid', '1']);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /dist\/bin\.js is missing: the CLI is not built yet; run npm run build/);
});

const supervisorSession = shBlock(readFileSync(join(ROOT, 'README.md'), 'utf8'), 'npx grace-restart run');

for (const example of EXAMPLES) {
  test(`root README: the supervisor session with examples/${example}, through npx grace-restart`, async (t) => {
    const dir = tempDir(t);
    const pidFile = join(dir, 'sup.pid');
    const words = (line) =>
      line
        .replaceAll('examples/fastify/', `examples/${example}/`)
        .split(/\s+/)
        .map((w) => (w === 'sup.pid' ? pidFile : w));
    let supervisor;
    let port;
    const answers = [];
    for (const line of supervisorSession) {
      const [first, ...rest] = words(line);
      if (first === 'PORT=3000' && rest[0] === 'npx') {
        supervisor = spawnJson('npx', rest.slice(1), { cwd: ROOT, env: { ...NPX_ENV, PORT: '0' } });
        t.after(() => supervisor.cleanup());
        port = portOf(await supervisor.waitForEvent((e) => e.event === 'listening' && portOf(e) > 0, { timeout: 60_000 }));
        await waitFor(() => readPid(pidFile), { what: 'the supervisor PID file' });
      } else if (first === 'curl') {
        assert.match(rest[0], /^127\.0\.0\.1:3000\//);
        const res = await request({ port, path: rest[0].slice('127.0.0.1:3000'.length) });
        assert.equal(res.status, 200, res.body);
        answers.push(res.json);
      } else if (first === 'npx') {
        const result = await run('npx', rest, { cwd: ROOT, env: NPX_ENV });
        assert.equal(result.code, 0, `${line}\n${result.stdout}${result.stderr}`);
      } else if (line === 'kill -TERM $(cat sup.pid)') {
        process.kill(readPid(pidFile), 'SIGTERM');
      } else {
        assert.fail(`the test does not know how to run this README line: ${line}`);
      }
    }
    assert.deepEqual(
      await supervisor.exited,
      { code: 0, signal: null },
      `npx grace-restart run exits 0; stderr: ${supervisor.stderr.slice(-800)}`,
    );
    assert.equal(existsSync(pidFile), false, 'sup.pid is removed');
    assert.equal(answers.length, 2);
    assert.deepEqual(
      answers.map((a) => [a.framework, a.generation]),
      [
        [example, 1],
        [example, 2],
      ],
    );
    assert.notEqual(answers[0].pid, answers[1].pid, 'a new worker answers after the upgrade');
  });
}

for (const example of EXAMPLES) {
  test(`examples/${example}/README.md: node … dist/server.js, kill -USR2 $(cat app.pid), kill -TERM $(cat app.pid)`, async (t) => {
    const readme = readFileSync(join(ROOT, 'examples', example, 'README.md'), 'utf8');
    const start = shBlock(readme, 'PID_FILE=app.pid').find((line) => line.includes('PID_FILE=app.pid'));
    assert.equal(start, `PORT=3000 PID_FILE=app.pid node examples/${example}/dist/server.js`);
    for (const line of ['kill -USR2 $(cat app.pid)', 'kill -TERM $(cat app.pid)'])
      assert.ok(readme.includes(line), `the README says ${line}`);

    const pidFile = join(tempDir(t), 'app.pid');
    const app = spawnJson(process.execPath, [start.split(' ').at(-1)], { cwd: ROOT, env: { PORT: '0', PID_FILE: pidFile } });
    t.after(() => app.cleanup());
    const port = portOf(await app.waitForEvent((e) => e.event === 'listening' && portOf(e) > 0));
    await waitFor(() => readPid(pidFile) === app.pid, { what: 'app.pid' });
    assert.equal((await request({ port })).json.generation, 1);

    process.kill(readPid(pidFile), 'SIGUSR2');
    const next = await waitFor(() => (readPid(pidFile) !== app.pid ? readPid(pidFile) : undefined), {
      what: 'app.pid to name the new process',
    });
    assert.deepEqual(await app.exited, { code: 0, signal: null }, 'the old process exits 0 after its drain');
    assert.deepEqual((await request({ port })).json, { framework: example, pid: next, version: 'dev', generation: 2 });

    process.kill(readPid(pidFile), 'SIGTERM');
    await waitFor(() => !isAlive(next), { what: `process ${next} to stop` });
    assert.equal(existsSync(pidFile), false, 'app.pid is removed');
  });
}
