// End-to-end: examples/express as a real process, upgraded under load (test/helpers/example-e2e.mjs).
import { fileURLToPath } from 'node:url';
import { testExample } from './helpers/example-e2e.mjs';

testExample({ framework: 'express', script: fileURLToPath(new URL('../examples/express/dist/server.js', import.meta.url)) });
