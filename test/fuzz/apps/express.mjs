// The fuzz app on Express, wired as @grace-restart/express's README shows: app.use(graceRestart()).
import express from 'express';
import { graceRestart } from '@grace-restart/express';
import { digest, echoLine, emit, KEEP_ALIVE_TIMEOUT, settings } from './echo.mjs';

const app = express();
app.use(graceRestart({ pidFile: settings.pidFile }));
app.all('/fuzz/:id', async (req, res) => {
  const { bytes, sha } = await digest(req);
  const line = echoLine(req.url, bytes, sha);
  res.set('x-echo', line).type('text/plain').send(line);
});
const server = app.listen(settings.port, '127.0.0.1', () => emit('listening', { port: server.address().port }));
server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT;
