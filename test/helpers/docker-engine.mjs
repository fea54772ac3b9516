// A real Docker engine for the Docker tests (test/docker.test.mjs): dockerd started by the test
// with its own data and exec roots and socket (vfs storage, no iptables, no bridge: containers
// run with --network host), and a base image built with no registry: a Debian tree from
// debootstrap, imported, with this test's own Node binary and npm copied in, tagged as the
// image the docs' Dockerfile names (`FROM node:20-slim`).
import { spawn, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { run as exec } from './consumer.mjs';
import { waitFor } from './process.mjs';

const onPath = async (name) => (await exec('sh', ['-c', `command -v ${name}`])).code === 0;

/** Why no Docker engine can start here, or undefined when one can. */
export async function whyNoEngine() {
  if (process.platform !== 'linux') return 'not Linux';
  if (process.getuid?.() !== 0) return 'dockerd needs root';
  for (const tool of ['dockerd', 'docker', 'debootstrap'])
    if (!(await onPath(tool))) return `${tool} is not installed (apt-get install docker.io debootstrap)`;
  return undefined;
}

/**
 * Starts dockerd for this test file; stopped and its roots removed after it. Resolves with
 * `docker(args, options)`, which runs the client against it.
 */
export async function startEngine(t) {
  // Short: containerd's sockets live under the exec root, and unix socket paths are short.
  const root = mkdtempSync(join('/tmp', 'gdk-'));
  const socket = join(root, 'docker.sock');
  const daemon = spawn(
    'dockerd',
    [
      '--storage-driver=vfs',
      '--iptables=false',
      '--bridge=none',
      '--data-root',
      join(root, 'data'),
      '--exec-root',
      join(root, 'exec'),
      '--pidfile',
      join(root, 'dockerd.pid'),
      '-H',
      `unix://${socket}`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  daemon.stderr.on('data', (d) => (log = (log + d).slice(-20_000)));
  const exited = new Promise((resolve) => daemon.once('exit', resolve));
  t.after(async () => {
    daemon.kill('SIGTERM');
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 20_000).unref())]);
    daemon.kill('SIGKILL');
    unmountUnder(root);
    rmSync(root, { recursive: true, force: true });
  });
  const docker = (args, options = {}) => exec('docker', args, { timeout: 300_000, ...options, env: { DOCKER_HOST: `unix://${socket}` } });
  await waitFor(async () => (await docker(['version'], { timeout: 10_000 })).code === 0 || daemon.exitCode !== null, {
    timeout: 60_000,
    interval: 250,
    what: 'dockerd to answer',
  });
  if (daemon.exitCode !== null) throw new Error(`dockerd exited (${daemon.exitCode}):\n${log}`);
  return { docker, log: () => log };
}

/** Lazily unmounts what dockerd left mounted under `root` (its network namespace file), deepest first. */
function unmountUnder(root) {
  const mounts = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[1] ?? '')
    .filter((point) => point.startsWith(`${root}/`));
  for (const point of mounts.sort((a, b) => b.length - a.length)) spawnSync('umount', ['-l', point]);
}

/** A Debian bookworm tree (debootstrap, minbase), as a tarball kept across runs in the temp dir. */
async function debianTarball() {
  const tarball = join(tmpdir(), 'grace-restart-debian-bookworm-minbase.tar');
  if (existsSync(tarball)) return tarball;
  const work = mkdtempSync(join(tmpdir(), 'grace-debootstrap-'));
  try {
    const tree = join(work, 'rootfs');
    const made = await exec('debootstrap', ['--variant=minbase', 'bookworm', tree, 'http://deb.debian.org/debian'], { timeout: 900_000 });
    if (made.code !== 0) throw new Error(`debootstrap failed:\n${made.stdout.slice(-3000)}\n${made.stderr.slice(-3000)}`);
    // What a slim image leaves out: documentation and apt's caches.
    for (const dir of ['usr/share/doc', 'usr/share/man', 'usr/share/locale', 'var/cache/apt', 'var/lib/apt/lists'])
      rmSync(join(tree, dir), { recursive: true, force: true });
    const packed = await exec('tar', ['-C', tree, '-cf', join(work, 'rootfs.tar'), '.']);
    if (packed.code !== 0) throw new Error(`tar failed: ${packed.stderr}`);
    renameSync(join(work, 'rootfs.tar'), tarball);
    return tarball;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * Builds `tag` (e.g. `node:20-slim`): the Debian tree with this process's Node binary and npm
 * in /usr/local, as the official image has them.
 */
export async function buildNodeImage(docker, tag) {
  const tarball = await debianTarball();
  const imported = await docker(['import', tarball, 'grace-restart-test/debian:bookworm']);
  if (imported.code !== 0) throw new Error(`docker import failed: ${imported.stderr}`);
  const context = mkdtempSync(join(tmpdir(), 'grace-node-image-'));
  try {
    copyFileSync(process.execPath, join(context, 'node'));
    const npmRoot = (await exec('npm', ['root', '-g'])).stdout.trim();
    cpSync(realpathSync(join(npmRoot, 'npm')), join(context, 'npm'), { recursive: true });
    writeFileSync(
      join(context, 'Dockerfile'),
      [
        'FROM grace-restart-test/debian:bookworm',
        'COPY node /usr/local/bin/node',
        'COPY npm /usr/local/lib/node_modules/npm',
        'RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx',
        'CMD ["node"]',
        '',
      ].join('\n'),
    );
    const built = await docker(['build', '--network', 'host', '-q', '-t', tag, context]);
    if (built.code !== 0) throw new Error(`docker build of ${tag} failed: ${built.stderr}`);
  } finally {
    rmSync(context, { recursive: true, force: true });
  }
}

/** Writes `files` ({ relative path: content }) under `dir`. */
export function writeTree(dir, files) {
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
}
