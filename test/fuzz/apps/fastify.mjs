// The fuzz app on Fastify, wired as @grace-restart/fastify's README shows: app.register(graceRestart).
import Fastify from 'fastify';
import graceRestart from '@grace-restart/fastify';
import { BODY_LIMIT, digest, echoLine, emit, KEEP_ALIVE_TIMEOUT, settings } from './echo.mjs';

const app = Fastify({ logger: { level: 'warn' }, bodyLimit: BODY_LIMIT, keepAliveTimeout: KEEP_ALIVE_TIMEOUT });
// Every body, of any type, is hashed as it streams.
app.addContentTypeParser('*', (_request, payload, done) => digest(payload).then((d) => done(null, d), done));
await app.register(graceRestart, { pidFile: settings.pidFile });
app.all('/fuzz/:id', async (request, reply) => {
  const { bytes, sha } = request.body ?? (await digest(request.raw));
  const line = echoLine(request.url, bytes, sha);
  reply.header('x-echo', line).type('text/plain');
  return line;
});
await app.listen({ port: settings.port, host: '127.0.0.1' });
emit('listening', { port: app.server.address().port });
