// A Kubernetes rolling update rehearsed behind a real nginx, on 127.0.0.1 only.
//
// Two replicas (pods) of bench/apps/grace-node.mjs sit behind nginx, whose upstream plays the
// Service's endpoints (with a keep-alive pool, as ingress-nginx keeps one). The rollout does
// what a Deployment with maxSurge 1 / maxUnavailable 0 does, once per replica: start a new
// pod, add it to the endpoints once ready, then remove the old pod from the endpoints (nginx
// reload) and send it SIGTERM at the same moment — the endpoints controller and the kubelet
// act independently, so nothing orders the two — or with the endpoint removal `lagMs` later,
// as when kube-proxy or the ingress controller is slow to notice. wrk loads nginx throughout.
//
// Each case is run with and without grace-restart's `shutdownDelay`, and with nginx retrying
// a failed upstream (its default, `proxy_next_upstream error timeout`) or not (`off`, what a
// Service's kube-proxy rules give: no retry, every refused or reset connection is an error).
//
//   node bench/scenarios/k8s-rollout.mjs [--quick]   (needs nginx and wrk on PATH)
//   npm run bench -- --only k8s-rollout
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { adapterApp } from '../lib/apps.mjs';
import { cleanupAll, freePort, installExitHandlers, isAlive, killQuietly, sleep, startProcess, track, waitGone } from '../lib/procs.mjs';

const APP = adapterApp('node');

/** The cases of a full run: every combination worth showing, one rollout each. */
export const CASES = [
  // Control: the same four nginx reloads, no pod replaced: what reloads alone cost the client.
  { retries: false, lagMs: 0, shutdownDelay: 0, control: true },
  { retries: false, lagMs: 0, shutdownDelay: 0 },
  { retries: false, lagMs: 0, shutdownDelay: 5000 },
  { retries: false, lagMs: 1000, shutdownDelay: 0 },
  { retries: false, lagMs: 1000, shutdownDelay: 5000 },
  { retries: true, lagMs: 0, shutdownDelay: 0 },
  { retries: true, lagMs: 1000, shutdownDelay: 0 },
];

/** Runs every case; resolves one result per case (or { skipped } when nginx or wrk is missing). */
export async function runK8sRollout({ dir, log, cases = CASES, connections = 32 }) {
  const missing = ['nginx', 'wrk'].filter((tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0);
  if (missing.length) {
    log(`  skipped: ${missing.join(' and ')} not installed (apt-get install nginx wrk)`);
    return [{ skipped: `${missing.join(', ')} missing` }];
  }
  if (APP.missing) return [{ skipped: APP.missing }];
  const results = [];
  for (const c of cases) {
    const r = await rollout({ ...c, dir: mkdtempSync(join(dir, 'k8s-')), connections });
    log(
      `  ${label(c)}: ${r.failed} failed of ${r.requests} (${r.non2xx} non-2xx, socket errors ${JSON.stringify(r.socketErrors)}), old pods exited ${r.oldExit.join('/')}, ${r.rps} req/s; nginx: ${JSON.stringify(r.nginxErrors)}`,
    );
    results.push({ ...c, ...r });
  }
  return results;
}

const label = (c) =>
  c.control
    ? 'control (nginx reloads only, no pod replaced)'
    : `nginx ${c.retries ? 'retries' : 'no retry'}, endpoint removed ${c.lagMs ? `${c.lagMs} ms after` : 'with'} SIGTERM, shutdownDelay ${c.shutdownDelay}`;

/** One rolling update of two replicas under wrk load; returns what wrk counted. */
async function rollout({ dir, retries, lagMs, shutdownDelay, connections, control = false }) {
  const pods = [];
  let nginx;
  const startPod = async () => {
    const port = await freePort();
    const pod = startProcess(process.execPath, [APP.path], {
      env: { PORT: String(port), HOST: '127.0.0.1', SHUTDOWN_DELAY: String(shutdownDelay) },
    });
    await waitEvent(pod, 'ready');
    pods.push(pod);
    return { port, pod };
  };
  try {
    const old = [await startPod(), await startPod()];
    let endpoints = old.map((p) => p.port);
    nginx = await startNginx(dir, retries, endpoints);
    // Long enough for both replacements, each old pod's shutdownDelay and drain, and a tail.
    const seconds = 8 + Math.ceil((2 * (lagMs + shutdownDelay)) / 1000);
    const wrk = runWrk(nginx.port, connections, seconds);
    await sleep(1500);
    for (const replaced of old) {
      if (control) {
        for (let i = 0; i < 2; i++) {
          await nginx.setEndpoints(endpoints);
          await sleep(1000 + lagMs);
        }
        continue;
      }
      const fresh = await startPod();
      endpoints = [...endpoints, fresh.port];
      await nginx.setEndpoints(endpoints);
      // The new pod passes its readiness probe and serves a while before the old one goes.
      await sleep(1000);
      endpoints = endpoints.filter((p) => p !== replaced.port);
      replaced.sigtermAt = Date.now();
      killQuietly(replaced.pod.pid, 'SIGTERM');
      if (lagMs > 0) await sleep(lagMs);
      await nginx.setEndpoints(endpoints);
      await sleep(1000);
    }
    const result = parseWrk(await wrk);
    if (control) return { ...result, oldExit: ['-', '-'], nginxErrors: nginx.errors(), drains: [] };
    const oldExit = await Promise.all(
      old.map(async ({ pod }) => {
        const { code, signal } = await pod.exited;
        return signal ?? code;
      }),
    );
    return {
      ...result,
      oldExit,
      nginxErrors: nginx.errors(),
      drains: old.map(({ pod }) => pod.events.find((e) => e.event === 'drain-end')),
    };
  } finally {
    for (const pod of pods) killQuietly(pod.pid);
    await nginx?.stop();
  }
}

function waitEvent(proc, name, timeout = 20_000) {
  const deadline = Date.now() + timeout;
  return (async () => {
    while (!proc.events.some((e) => e.event === name)) {
      if (Date.now() > deadline) throw new Error(`no ${name} from pid ${proc.pid}: ${proc.stderr}`);
      await sleep(20);
    }
  })();
}

/**
 * nginx in the foreground with its own prefix and config under `dir`, listening on
 * 127.0.0.1 only. `setEndpoints` rewrites the upstream and reloads (SIGHUP), resolving
 * once the new workers run.
 */
async function startNginx(dir, retries, initial) {
  mkdirSync(join(dir, 'logs'), { recursive: true });
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  const write = (endpoints) => writeFileSync(conf, nginxConf({ dir, port, retries, endpoints }));
  write(initial);
  const child = spawn('nginx', ['-p', dir, '-c', conf, '-e', join(dir, 'logs', 'error.log'), '-g', 'daemon off;'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  track(child.pid);
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const workers = () =>
    spawnSync('pgrep', ['-P', String(child.pid)], { encoding: 'utf8' })
      .stdout.split('\n')
      .filter(Boolean);
  const deadline = Date.now() + 10_000;
  while (workers().length === 0) {
    if (Date.now() > deadline || !isAlive(child.pid)) throw new Error(`nginx did not start: ${stderr}`);
    await sleep(20);
  }
  return {
    port,
    /** nginx's error log, counted by message with addresses and ids left out. */
    errors() {
      const counts = {};
      for (const line of readFileSync(join(dir, 'logs', 'error.log'), 'utf8').split('\n')) {
        const m = /\[(error|warn|crit|alert)\] \d+#\d+: (?:\*\d+ )?([^,]+)/.exec(line);
        if (m) counts[m[2].trim()] = (counts[m[2].trim()] ?? 0) + 1;
      }
      return counts;
    },
    async setEndpoints(endpoints) {
      const before = new Set(workers());
      write(endpoints);
      child.kill('SIGHUP');
      // Reloaded once the workers of the old configuration are gone (the old ones finish
      // their requests in flight, close their keep-alive client connections and exit).
      const until = Date.now() + 10_000;
      for (;;) {
        const now = workers();
        if (now.length > 0 && now.every((w) => !before.has(w))) break;
        if (Date.now() > until) throw new Error(`nginx did not reload: ${stderr}`);
        await sleep(5);
      }
    },
    async stop() {
      child.kill('SIGQUIT');
      const done = await Promise.race([exited.then(() => true), sleep(5000).then(() => false)]);
      if (!done) child.kill('SIGKILL');
      await waitGone(child.pid, 5000);
    },
  };
}

function nginxConf({ dir, port, retries, endpoints }) {
  const temp = (name) => join(dir, `${name}-temp`);
  return `worker_processes 1;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'logs', 'error.log')} warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${temp('body')};
  proxy_temp_path ${temp('proxy')};
  fastcgi_temp_path ${temp('fastcgi')};
  uwsgi_temp_path ${temp('uwsgi')};
  scgi_temp_path ${temp('scgi')};
  upstream endpoints {
${endpoints.map((p) => `    server 127.0.0.1:${p}${retries ? '' : ' max_fails=0'};`).join('\n')}
    keepalive 64;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://endpoints;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_next_upstream ${retries ? 'error timeout' : 'off'};
    }
  }
}
`;
}

/** wrk for `seconds` against nginx; resolves its stdout. */
function runWrk(port, connections, seconds) {
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, '--timeout', '5s', `http://127.0.0.1:${port}/`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    track(child.pid);
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`wrk exited ${code}: ${out}`))));
  });
}

/** Requests, non-2xx responses and socket errors as wrk prints them. */
export function parseWrk(text) {
  const requests = Number(/(\d+) requests in/.exec(text)?.[1] ?? NaN);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0);
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const socketErrors = errors
    ? { connect: +errors[1], read: +errors[2], write: +errors[3], timeout: +errors[4] }
    : { connect: 0, read: 0, write: 0, timeout: 0 };
  const rps = Math.round(Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1] ?? NaN));
  const failed = non2xx + Object.values(socketErrors).reduce((a, b) => a + b, 0);
  return { requests, failed, non2xx, socketErrors, rps };
}

/** The results as a markdown table, for docs/operations.md. */
export function markdownTable(results) {
  const errors = (r) =>
    Object.entries(r.socketErrors)
      .filter(([, n]) => n)
      .map(([k, n]) => `${k} ${n}`)
      .join(', ') || '–';
  const nginxLog = (r) =>
    Object.entries(r.nginxErrors)
      .map(([k, n]) => `${n}× ${k}`)
      .join('; ') || '–';
  const rows = results
    .filter((r) => !r.skipped)
    .map((r) => {
      const removed = r.control ? 'no pod replaced (4 reloads)' : r.lagMs ? `${r.lagMs} ms after SIGTERM` : 'with SIGTERM';
      return `| ${r.retries ? 'on' : 'off'} | ${removed} | ${r.shutdownDelay ? `${r.shutdownDelay} ms` : '0'} | ${r.requests} | **${r.failed}** | ${r.non2xx} | ${errors(r)} | ${nginxLog(r)} |`;
    });
  return [
    '| nginx retries | old endpoint removed | shutdownDelay | requests | failed | 5xx | wrk socket errors | nginx error log |',
    '|---|---|---|---:|---:|---:|---|---|',
    ...rows,
  ].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  installExitHandlers();
  const dir = mkdtempSync(join(tmpdir(), 'grace-k8s-'));
  try {
    const cases = process.argv.includes('--quick') ? CASES.slice(0, 3) : CASES;
    const results = await runK8sRollout({ dir, log: console.log, cases });
    console.log(`\n${markdownTable(results)}`);
  } finally {
    cleanupAll();
    rmSync(dir, { recursive: true, force: true });
  }
}
