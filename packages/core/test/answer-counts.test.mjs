// The answer counts (answer-counts.ts) in process, with real servers and real requests: what is
// counted, what is not (another server of the process), and that stopping unsubscribes.
import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';
import { AnswerCounter, countAnswers } from '../dist/answer-counts.js';
import { request } from '../../../test/helpers/load.mjs';

function listening(handler) {
  const server = http.createServer(handler);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

test('answers of its own servers are counted by status class; another server of the process is not', async (t) => {
  const ours = await listening((req, res) => {
    res.statusCode = req.url === '/fail' ? 503 : 200;
    res.end();
  });
  const theirs = await listening((_req, res) => res.end());
  t.after(() => {
    ours.close();
    theirs.close();
  });
  const counter = new AnswerCounter((server) => server === ours);
  counter.start();
  for (const path of ['/', '/', '/fail']) await request({ port: ours.address().port, path });
  await request({ port: theirs.address().port });
  assert.deepEqual(counter.counts, { requests: 3, errors5xx: 1, unanswered: 0 });
  counter.stop();
  await request({ port: ours.address().port, path: '/fail' });
  assert.deepEqual(counter.counts, { requests: 3, errors5xx: 1, unanswered: 0 }, 'nothing counted once stopped');
});

test('a request that is never answered counts as unanswered', async (t) => {
  const held = [];
  const server = await listening((_req, res) => held.push(res));
  t.after(() => server.close());
  const counter = new AnswerCounter((s) => s === server);
  counter.start();
  t.after(() => counter.stop());
  const pending = request({ port: server.address().port }).catch(() => undefined);
  while (held.length === 0) await new Promise((r) => setTimeout(r, 5));
  assert.deepEqual(counter.counts, { requests: 0, errors5xx: 0, unanswered: 1 });
  held[0].end();
  await pending;
  assert.deepEqual(counter.counts, { requests: 1, errors5xx: 0, unanswered: 0 });
});

test('a supervised worker reports its last answers when counting ends, not only every second', async (t) => {
  const server = await listening((_req, res) => res.end());
  t.after(() => server.close());
  const reports = [];
  let end;
  const until = new Promise((resolve) => {
    end = resolve;
  });
  countAnswers(
    (s) => s === server,
    (counts) => reports.push(counts),
    until,
  );
  // Well inside the first second: the periodic report has not run yet.
  for (let i = 0; i < 3; i++) await request({ port: server.address().port });
  end();
  await until;
  await new Promise(setImmediate);
  assert.deepEqual(reports.at(-1), { requests: 3, errors5xx: 0, unanswered: 0 });
  await request({ port: server.address().port });
  await new Promise(setImmediate);
  assert.equal(reports.length, 1, 'nothing counted or reported after the end');
});
