// nginx and HAProxy in front of an app, configured the way a production setup usually is (one
// upstream server, keep-alive to it), started in the foreground so the run owns them, and their
// logs read back afterwards: a proxy retries some upstream failures itself, which the client never
// sees but which still cost latency, and answers 502 for the others.
//
// Only the abnormal requests are logged (nginx: any upstream status other than a single 200;
// HAProxy: `option dontlog-normal`), so a run at tens of thousands of req/s writes a short log.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';
import { isAlive, killQuietly, sleep, track, waitGone } from './procs.mjs';

const BINARIES = { nginx: '/usr/sbin/nginx', haproxy: '/usr/sbin/haproxy' };

/** Why a proxy cannot run here (binary missing), or undefined. */
export function proxyUnavailable(kind) {
  const bin = BINARIES[kind];
  if (!existsSync(bin)) return `skipped: ${kind} not installed (apt-get install ${kind})`;
  return spawnSync(bin, ['-v'], { stdio: 'ignore' }).status === 0 ? undefined : `skipped: ${bin} -v failed`;
}

/** nginx with an upstream keepalive pool, as its docs recommend for proxying to an app server. */
function nginxConfig({ dir, port, upstreamPort, keepaliveRequests }) {
  return `user root;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log error;
events { worker_connections 4096; }
http {
  client_body_temp_path ${dir}/tmp-body;
  proxy_temp_path ${dir}/tmp-proxy;
  fastcgi_temp_path ${dir}/tmp-fastcgi;
  uwsgi_temp_path ${dir}/tmp-uwsgi;
  scgi_temp_path ${dir}/tmp-scgi;
  # Log a request only when the upstream did not answer it with one plain 200: retries show as
  # "502, 200" (or "-, 200"), failures as a 5xx nginx made up.
  map $upstream_status $abnormal { "200" 0; default 1; }
  log_format upstream '$status|$upstream_status|$request_time';
  access_log ${dir}/access.log upstream if=$abnormal;
  upstream app {
    server 127.0.0.1:${upstreamPort};
    keepalive 64;${
      keepaliveRequests
        ? `
    keepalive_requests ${keepaliveRequests};`
        : ''
    }
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`;
}

/** HAProxy 2.x defaults: keep-alive both sides, idle server connections reused ("safe"), 3 retries on connect failure. */
function haproxyConfig({ port, upstreamPort }) {
  return `global
  maxconn 4096
  log stdout format raw local0 info
defaults
  mode http
  log global
  option dontlog-normal
  log-format "%ST|%rc|%tsc|%Tt"
  timeout connect 4s
  timeout client 30s
  timeout server 30s
  retries 3
frontend web
  bind 127.0.0.1:${port}
  default_backend app
backend app
  server app1 127.0.0.1:${upstreamPort}
`;
}

const START = {
  nginx: ({ dir, conf }) => [BINARIES.nginx, ['-p', dir, '-c', conf, '-g', 'daemon off;']],
  haproxy: ({ conf }) => [BINARIES.haproxy, ['-db', '-f', conf]],
};

/** Resolves once something accepts TCP connections on `port`; fails when `exited` settles first. */
async function waitListening(port, exited, what, logFile) {
  const deadline = Date.now() + 10_000;
  let gone;
  exited.then((e) => (gone = e));
  for (;;) {
    const ok = await new Promise((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port }, () => socket.end(() => resolve(true)));
      socket.on('error', () => resolve(false));
    });
    if (ok) return;
    const log = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8').trim().slice(-600) : '');
    if (gone) throw new Error(`${what} exited (${JSON.stringify(gone)}) before listening: ${log()}`);
    if (Date.now() > deadline) throw new Error(`${what} did not listen on ${port} within 10 s: ${log()}`);
    await sleep(25);
  }
}

/**
 * Starts `kind` listening on `port` and forwarding to `upstreamPort`; resolves once it listens
 * (the app need not be up yet: until it is, the proxy answers 502). `keepaliveRequests` sets nginx's
 * upstream `keepalive_requests` (default 1000: nginx closes an upstream connection after that
 * many requests). Returns { kind, stop(), summary() }.
 */
export async function startProxy(kind, { dir, port, upstreamPort, keepaliveRequests }) {
  mkdirSync(dir, { recursive: true });
  const conf = join(dir, `${kind}.conf`);
  writeFileSync(
    conf,
    kind === 'nginx' ? nginxConfig({ dir, port, upstreamPort, keepaliveRequests }) : haproxyConfig({ port, upstreamPort }),
  );
  // HAProxy logs to stdout: straight into a file, no pipe for the runner to drain under load.
  const out = openSync(join(dir, 'stdout.log'), 'w');
  const [bin, args] = START[kind]({ dir, conf });
  const child = spawn(bin, args, { stdio: ['ignore', out, out] });
  closeSync(out);
  track(child.pid);
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  await waitListening(port, exited, kind, join(dir, kind === 'nginx' ? 'error.log' : 'stdout.log'));
  return {
    kind,
    async stop() {
      // Both exit at once on SIGTERM (nginx: fast shutdown), which flushes the logs.
      if (isAlive(child.pid)) killQuietly(child.pid, 'SIGTERM');
      await waitGone(child.pid, 5000);
      if (isAlive(child.pid)) killQuietly(child.pid, 'SIGKILL');
    },
    summary: () => (kind === 'nginx' ? nginxSummary(dir) : haproxySummary(dir)),
  };
}

const readLines = (file) => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : []);
const bump = (o, k) => (o[k] = (o[k] ?? 0) + 1);

/**
 * What nginx saw: upstream errors from error.log (by message), requests it retried and then
 * answered, and answers it made up (5xx) because the upstream failed.
 */
function nginxSummary(dir) {
  const upstreamErrors = {};
  for (const line of readLines(join(dir, 'error.log'))) {
    // 2026/11/23 20:01:02 [error] 12#12: *345 connect() failed (111: Connection refused) while connecting to upstream, client: …
    const m = /\[(?:error|crit|alert|warn)\] \d+#\d+: (?:\*\d+ )?(.*?)(?:, client: |$)/.exec(line);
    if (m) bump(upstreamErrors, m[1].replace(/\d+\.\d+\.\d+\.\d+:\d+/g, 'ADDR'));
  }
  let retried = 0;
  let proxyErrors = 0;
  const statuses = {};
  for (const line of readLines(join(dir, 'access.log'))) {
    const [status, upstream] = line.split('|');
    const attempts = upstream.split(/,\s*|\s*:\s*/).length;
    if (Number(status) >= 500) proxyErrors += 1;
    else if (attempts > 1) retried += 1;
    bump(statuses, `${status} (upstream: ${upstream})`);
  }
  return { upstreamErrors: total(upstreamErrors), byMessage: upstreamErrors, retried, proxyErrors, logged: statuses };
}

/** What HAProxy saw: abnormal requests by termination state (e.g. "SH": server aborted), retries. */
function haproxySummary(dir) {
  const byState = {};
  let retried = 0;
  let proxyErrors = 0;
  let upstreamErrors = 0;
  for (const line of readLines(join(dir, 'stdout.log'))) {
    const parts = line.split('|');
    if (parts.length !== 4) continue;
    const [status, retries, state] = parts;
    // A connection closed before any request: the runner's own "is it listening yet" probe.
    if (state.startsWith('CR')) continue;
    const n = Number(String(retries).replace('+', '')) || 0;
    if (Number(status) >= 500 || Number(status) < 0) proxyErrors += 1;
    else if (n > 0) retried += 1;
    // A termination state starting with S: the server side aborted or errored.
    if (state.startsWith('S') || n > 0) upstreamErrors += 1;
    bump(byState, `${status} ${state}${n ? ` after ${n} retries` : ''}`);
  }
  return { upstreamErrors, byMessage: byState, retried, proxyErrors };
}

const total = (o) => Object.values(o).reduce((a, b) => a + b, 0);
