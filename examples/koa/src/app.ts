/** The example's routes; `ctx.graceRestart` comes from `graceRestart(app)` in server.ts. */
import Koa, { type Context } from 'koa';

export function createApp(version: string): Koa {
  const app = new Koa();
  const about = (ctx: Context) => ({ framework: 'koa', pid: process.pid, version, generation: ctx.graceRestart.generation });

  app.use(async (ctx) => {
    if (ctx.method === 'GET' && ctx.path === '/') {
      ctx.body = about(ctx);
    } else if (ctx.method === 'GET' && ctx.path === '/slow') {
      await new Promise((resolve) => setTimeout(resolve, delayMs(ctx.query['ms'])));
      ctx.body = about(ctx);
    } else if (ctx.method === 'POST' && ctx.path === '/echo') {
      // Counted as it streams: no body parser, so no size limit and no buffering.
      let bytes = 0;
      for await (const chunk of ctx.req) bytes += (chunk as Buffer).length;
      ctx.body = { bytes };
    } else if (ctx.method === 'GET' && ctx.path === '/health') {
      // Load balancers stop sending here as soon as this process starts draining.
      const draining = ctx.graceRestart.isDraining;
      ctx.status = draining ? 503 : 200;
      ctx.body = { status: draining ? 'draining' : 'ok' };
    }
  });
  return app;
}

function delayMs(value: unknown): number {
  const ms = Number(value ?? 1000);
  return Number.isFinite(ms) ? Math.min(Math.max(ms, 0), 60_000) : 1000;
}
