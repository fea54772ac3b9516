/** The example's routes: identity, a slow request, an upload sink and a health check. */
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';

const MiB = 1024 * 1024;
/** Largest body POST /echo accepts. */
export const ECHO_LIMIT = 100 * MiB;

/** Who answered: lets a client see the pid and generation change across upgrades. */
function identity(app: FastifyInstance, version: string) {
  return { framework: 'fastify', pid: process.pid, version, generation: app.graceRestart.generation };
}

/** Counts the bytes of any body as they stream in, without buffering them. */
function countBytes(_req: unknown, payload: IncomingMessage, done: (err: Error | null, body?: { bytes: number }) => void): void {
  let bytes = 0;
  payload.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
  });
  payload.on('end', () => done(null, { bytes }));
  payload.on('error', (err) => done(err));
}

/** POST /echo in its own scope, so its catch-all parser leaves the other routes' JSON parsing alone. */
const echo: FastifyPluginAsync = async (scope) => {
  scope.removeAllContentTypeParsers();
  scope.addContentTypeParser('*', countBytes);
  scope.post('/echo', { bodyLimit: ECHO_LIMIT }, async (request) => ({
    bytes: (request.body as { bytes: number } | undefined)?.bytes ?? 0,
  }));
};

export function registerRoutes(app: FastifyInstance, version: string): void {
  app.get('/', async () => identity(app, version));
  app.get<{ Querystring: { ms?: string } }>('/slow', async (request) => {
    const ms = Math.min(Number(request.query.ms ?? 1000) || 0, 60_000);
    await new Promise((resolve) => setTimeout(resolve, ms));
    return identity(app, version);
  });
  // Load balancers stop routing here as soon as this process drains.
  app.get('/health', async (_request, reply) => {
    if (app.graceRestart.isDraining) return reply.code(503).send({ status: 'draining' });
    return { status: 'ok' };
  });
  app.register(echo);
}
