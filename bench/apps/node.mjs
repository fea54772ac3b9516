// Bare node:http app (no grace-restart): the baseline for the plain node fixture.
import http from 'node:http';
import { body, host, port, slowMs, started } from './shared.mjs';

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  const json = (status, value) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(value));
  };
  if (url.pathname === '/health') return json(200, { status: 'ok' });
  if (url.pathname === '/slow') return setTimeout(() => json(200, body('node')), slowMs(url.searchParams.get('ms')));
  if (url.pathname === '/echo' && req.method === 'POST') {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => json(200, { pid: process.pid, bytes: Buffer.concat(chunks).length }));
    return;
  }
  json(200, body('node'));
});
server.listen(port, host, () => started('node', server));
