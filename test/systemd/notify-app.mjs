// The self-upgrade app of the systemd rehearsal (test/systemd/rehearse.mjs): a node:http app
// on @grace-restart/core that tells systemd (Type=notify, NotifyAccess=all) which process is
// the service's main process each time a generation becomes ready. Listens on PORT/HOST, or
// on the socket systemd passed (socket activation). One JSON line per lifecycle event.
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import { createGrace } from '@grace-restart/core';

const emit = (event, extra = {}) => process.stdout.write(`${JSON.stringify({ event, pid: process.pid, ...extra })}\n`);
const grace = createGrace({ pidFile: process.env.PID_FILE });
grace.on('ready', () => {
  // READY=1 and MAINPID=<this pid>: from now on systemd follows this generation, so the exit
  // of the previous one does not stop the unit. Sent before the old process can exit: it
  // drains first, which takes longer than this call.
  if (process.env.NOTIFY_SOCKET)
    execFileSync('systemd-notify', ['--ready', `--pid=${process.pid}`, `STATUS=generation ${grace.generation}`]);
  emit('ready', { generation: grace.generation });
});
grace.on('drain-end', (result) => emit('drain-end', result));
const server = http.createServer((req, res) => {
  const reply = () => res.end(JSON.stringify({ pid: process.pid, generation: grace.generation }));
  if (req.url.startsWith('/slow')) setTimeout(reply, 2000);
  else reply();
});
await grace.listen(server, { port: Number(process.env.PORT), host: process.env.HOST });
