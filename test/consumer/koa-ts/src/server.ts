// A Koa app in strict TypeScript (NodeNext, ES modules). `ctx.graceRestart` is typed by the
// adapter's augmentation of Koa's context, with `@types/koa` installed by the app.
import Koa from 'koa';
import { graceRestart, type GraceOptions } from '@grace-restart/koa';
import type { AddressInfo } from 'node:net';

const log = (event: string, fields: object = {}): void => {
  process.stdout.write(`${JSON.stringify({ event, pid: process.pid, ...fields })}\n`);
};
process.on('exit', (code) => log('exit', { code }));

const options: GraceOptions = { idleGrace: Number(process.env['IDLE_GRACE'] ?? 3000) };
if (process.env['PID_FILE'] !== undefined) options.pidFile = process.env['PID_FILE'];

const app = new Koa();
graceRestart(app, options);
app.use((ctx) => {
  const generation: number = ctx.graceRestart.generation;
  ctx.body = { pid: process.pid, generation };
});
const server = app.listen(Number(process.env['PORT'] ?? 3000), '127.0.0.1', () => {
  const address = server.address() as AddressInfo;
  log('listening', { address });
});
