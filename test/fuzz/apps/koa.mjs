// The fuzz app on Koa, wired as @grace-restart/koa's README shows: graceRestart(app).
import Koa from 'koa';
import { graceRestart } from '@grace-restart/koa';
import { digest, echoLine, emit, KEEP_ALIVE_TIMEOUT, settings } from './echo.mjs';

const app = new Koa();
graceRestart(app, { pidFile: settings.pidFile });
app.use(async (ctx) => {
  const { bytes, sha } = await digest(ctx.req);
  const line = echoLine(ctx.url, bytes, sha);
  ctx.set('x-echo', line);
  ctx.type = 'text/plain';
  ctx.body = line;
});
const server = app.listen(settings.port, '127.0.0.1', () => emit('listening', { port: server.address().port }));
server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT;
