/** The example's routes; `req.graceRestart` comes from the mounted `graceRestart()`. */
import express, { type Express, type Request } from 'express';
import type { GraceRestartMiddleware } from '@grace-restart/express';

export function createApp(restart: GraceRestartMiddleware, version: string): Express {
  const app = express();
  app.disable('x-powered-by');
  app.use(restart);
  const about = (req: Request) => ({ framework: 'express', pid: process.pid, version, generation: req.graceRestart.generation });

  app.get('/', (req, res) => {
    res.json(about(req));
  });
  app.get('/slow', (req, res) => {
    setTimeout(() => res.json(about(req)), delayMs(req.query['ms']));
  });
  // Counted as it streams: no body parser, so no size limit and no buffering.
  app.post('/echo', async (req, res) => {
    let bytes = 0;
    for await (const chunk of req) bytes += (chunk as Buffer).length;
    res.json({ bytes });
  });
  // Load balancers stop sending here as soon as this process starts draining.
  app.get('/health', (req, res) => {
    const draining = req.graceRestart.isDraining;
    res.status(draining ? 503 : 200).json({ status: draining ? 'draining' : 'ok' });
  });
  return app;
}

function delayMs(value: unknown): number {
  const ms = Number(value ?? 1000);
  return Number.isFinite(ms) ? Math.min(Math.max(ms, 0), 60_000) : 1000;
}
