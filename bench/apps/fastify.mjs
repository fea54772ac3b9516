// Bare Fastify 5 app (no grace-restart), same routes as examples/fastify.
import Fastify, { LogController } from 'fastify';
import { body, host, port, slowMs, started } from './shared.mjs';

// Same logger setup as examples/fastify (pino, lifecycle lines only), so the overhead comparison
// measures the grace-restart plugin and not pino's per-request child loggers.
const app = Fastify({
  logger: { level: process.env.LOG_LEVEL || 'info' },
  logController: new LogController({ disableRequestLogging: true }),
});
app.get('/', async () => body('fastify'));
app.get('/health', async () => ({ status: 'ok' }));
app.get('/slow', async (req) => {
  await new Promise((r) => setTimeout(r, slowMs(req.query.ms)));
  return body('fastify');
});
app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, payload, done) => done(null, payload));
app.post('/echo', async (req) => ({ pid: process.pid, bytes: req.body?.length ?? 0 }));
await app.listen({ port, host });
started('fastify', app.server);
