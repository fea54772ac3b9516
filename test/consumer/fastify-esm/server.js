// An ES module Fastify app. Runs standalone (SIGUSR2 upgrades it) and as a worker of
// `grace-restart run` alike.
import Fastify from 'fastify';
import graceRestart from '@grace-restart/fastify';

const log = (event, fields) => process.stdout.write(`${JSON.stringify({ event, pid: process.pid, ...fields })}\n`);
process.on('exit', (code) => log('exit', { code }));

const app = Fastify();
await app.register(graceRestart, { pidFile: process.env.PID_FILE, idleGrace: Number(process.env.IDLE_GRACE ?? 3000) });
app.get('/', async () => ({ pid: process.pid, generation: app.graceRestart.generation }));
await app.listen({ port: Number(process.env.PORT ?? 3000), host: '127.0.0.1' });
log('listening', { address: app.server.address() });
