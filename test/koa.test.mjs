// End-to-end: examples/koa as a real process, upgraded under load (test/helpers/example-e2e.mjs).
import { fileURLToPath } from 'node:url';
import { testExample } from './helpers/example-e2e.mjs';

testExample({ framework: 'koa', script: fileURLToPath(new URL('../examples/koa/dist/server.js', import.meta.url)) });
