// Bare Express 5 app (no grace-restart), same routes as examples/express.
import express from 'express';
import { body, host, port, slowMs, started } from './shared.mjs';

const app = express();
app.disable('x-powered-by');
app.get('/', (_req, res) => res.json(body('express')));
app.get('/health', (_req, res) => res.json({ status: 'ok' }));
app.get('/slow', (req, res) => setTimeout(() => res.json(body('express')), slowMs(req.query.ms)));
app.post('/echo', express.raw({ type: '*/*', limit: '10mb' }), (req, res) => res.json({ pid: process.pid, bytes: req.body?.length ?? 0 }));
const server = app.listen(port, host, () => started('express', server));
