// The fuzz app on node:http, wired as core's README shows: createGrace() + grace.listen().
import http from 'node:http';
import { createGrace } from '@grace-restart/core';
import { digest, echoLine, emit, KEEP_ALIVE_TIMEOUT, settings } from './echo.mjs';

const grace = createGrace({ pidFile: settings.pidFile });
const server = http.createServer((req, res) => {
  digest(req).then(
    ({ bytes, sha }) => {
      const line = echoLine(req.url, bytes, sha);
      res.setHeader('x-echo', line);
      res.end(line);
    },
    // The request was aborted (its client, or a proxy's upstream connection, went away): nobody to answer.
    () => res.destroy(),
  );
});
server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT;
await grace.listen(server, { port: settings.port, host: '127.0.0.1' });
emit('listening', { port: server.address().port });
