// Bare Koa 3 app (no grace-restart), same routes as examples/koa.
import Koa from 'koa';
import { body, host, port, slowMs, started } from './shared.mjs';

const app = new Koa();
app.use(async (ctx) => {
  if (ctx.path === '/health') ctx.body = { status: 'ok' };
  else if (ctx.path === '/slow') {
    await new Promise((r) => setTimeout(r, slowMs(ctx.query.ms)));
    ctx.body = body('koa');
  } else if (ctx.path === '/echo' && ctx.method === 'POST') {
    let bytes = 0;
    for await (const chunk of ctx.req) bytes += chunk.length;
    ctx.body = { pid: process.pid, bytes };
  } else ctx.body = body('koa');
});
const server = app.listen(port, host, () => started('koa', server));
