// The move fuzzer's client: raw HTTP/1.1 over keep-alive TCP connections, so that it can send
// what Node's own client never does (pipelined requests, heads split at any byte, bodies
// trickled over seconds, `Expect: 100-continue`) and check every answer byte-exact against the
// echo the fuzz apps send back (apps/echo.mjs). Seeded: the same seed sends the same requests.
import { createHash } from 'node:crypto';
import net from 'node:net';

const EMPTY_SHA = createHash('sha256').digest('hex');
/** How long a request may wait for its answer before it counts as failed (ms): longer than any drain here. */
const ANSWER_TIMEOUT_MS = 30_000;
/** How long a client waits for `100 Continue` before it sends the body anyway (curl's default). */
const CONTINUE_WAIT_MS = 1_000;

/** A body size: mostly small, some up to 1 MiB. */
function bodySize(rng) {
  const r = rng.next();
  if (r < 0.15) return 0;
  if (r < 0.6) return rng.int(1, 2_048);
  if (r < 0.9) return rng.int(2_049, 128 * 1024);
  return rng.int(128 * 1024 + 1, 1024 * 1024);
}

/**
 * One random request. `simple` requests can be pipelined: no trickle, no 100-continue, bodies
 * of at most 16 KiB. Returns what to send and the echo line the answer must carry.
 */
export function randomRequest(rng, id, { simple = false } = {}) {
  const method = rng.pick(simple ? ['GET', 'GET', 'HEAD', 'POST'] : ['GET', 'HEAD', 'POST', 'POST', 'POST', 'PUT']);
  const hasBody = method === 'POST' || method === 'PUT';
  const size = hasBody ? (simple ? rng.int(0, 16 * 1024) : bodySize(rng)) : 0;
  const body = Buffer.alloc(size);
  // Random bytes, so that a body cut or shifted anywhere changes its digest.
  let i = 0;
  for (; i + 4 <= size; i += 4) body.writeUInt32LE((rng.next() * 2 ** 32) >>> 0, i);
  for (; i < size; i++) body[i] = rng.int(0, 255);
  const chunked = hasBody && rng.chance(0.35);
  const expect = hasBody && !simple && size > 0 && rng.chance(0.2);
  const trickleMs = hasBody && !simple && size > 0 && rng.chance(0.08) ? rng.int(1_000, 2_000) : 0;
  const headPieces = simple ? 1 : rng.chance(0.25) ? rng.int(2, 4) : 1;
  const sha = hasBody ? createHash('sha256').update(body).digest('hex') : EMPTY_SHA;
  const lines = [`${method} /fuzz/${id} HTTP/1.1`, 'Host: fuzz', 'User-Agent: grace-restart-move-fuzzer'];
  if (hasBody) lines.push('Content-Type: application/octet-stream', chunked ? 'Transfer-Encoding: chunked' : `Content-Length: ${size}`);
  if (expect) lines.push('Expect: 100-continue');
  const head = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
  return { id, method, head, body, chunked, expect, trickleMs, headPieces, echo: `${id} ${size} ${sha}`, shape: describe() };

  function describe() {
    const parts = [method];
    if (hasBody) parts.push(`${size}B`, chunked ? 'chunked' : 'length');
    if (expect) parts.push('100-continue');
    if (trickleMs) parts.push(`trickle ${trickleMs}ms`);
    if (headPieces > 1) parts.push(`head in ${headPieces}`);
    return parts.join(' ');
  }
}

/** The body of `request` as it goes on the wire, cut in `pieces` (chunked framing per piece). */
function bodyPieces(request, pieces) {
  const { body, chunked } = request;
  const out = [];
  const step = Math.max(1, Math.ceil(body.length / pieces));
  for (let i = 0; i < body.length; i += step) {
    const part = body.subarray(i, i + step);
    out.push(chunked ? Buffer.concat([Buffer.from(`${part.length.toString(16)}\r\n`), part, Buffer.from('\r\n')]) : part);
  }
  if (chunked) out.push(Buffer.from('0\r\n\r\n'));
  return out;
}

/** `head` cut at random byte boundaries into `pieces`. */
function splitAt(rng, head, pieces) {
  const cuts = new Set();
  while (cuts.size < pieces - 1) cuts.add(rng.int(1, head.length - 1));
  const points = [0, ...[...cuts].sort((a, b) => a - b), head.length];
  return points.slice(1).map((end, i) => head.subarray(points[i], end));
}

/**
 * An incremental HTTP/1.1 response parser for one connection. `expectHeadFor()` says whether
 * the next final answer is to a HEAD. Calls `onInterim(status)` for 1xx and `onAnswer(answer)`
 * for each final one ({ status, headers, body }). Throws on a malformed answer.
 */
export class ResponseReader {
  #buffer = Buffer.alloc(0);
  #pending;
  constructor({ isHead, onInterim, onAnswer }) {
    this.isHead = isHead;
    this.onInterim = onInterim;
    this.onAnswer = onAnswer;
  }

  feed(data) {
    this.#buffer = this.#buffer.length === 0 ? data : Buffer.concat([this.#buffer, data]);
    while (this.#step());
  }

  /** Bytes received but not yet a whole answer. */
  get partial() {
    return this.#buffer.length > 0 || this.#pending !== undefined;
  }

  #step() {
    if (this.#pending === undefined) {
      const end = this.#buffer.indexOf('\r\n\r\n');
      if (end === -1) return false;
      const [statusLine, ...lines] = this.#buffer.subarray(0, end).toString('latin1').split('\r\n');
      this.#buffer = this.#buffer.subarray(end + 4);
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
      if (!m) throw new Error(`malformed status line ${JSON.stringify(statusLine.slice(0, 60))}`);
      const status = Number(m[1]);
      const headers = {};
      for (const line of lines) {
        const i = line.indexOf(':');
        headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      if (status >= 100 && status < 200) {
        this.onInterim(status);
        return true;
      }
      const noBody = this.isHead() || status === 204 || status === 304;
      const chunked = !noBody && /chunked/i.test(headers['transfer-encoding'] ?? '');
      // Neither a length nor chunks: the body runs to the close (Node's own 400 answers so).
      const length = noBody ? 0 : chunked ? undefined : Number(headers['content-length'] ?? Infinity);
      this.#pending = { status, headers, chunked, length, parts: [] };
    }
    const p = this.#pending;
    if (p.length === Infinity) return false;
    if (!p.chunked) {
      if (this.#buffer.length < p.length) return false;
      p.parts.push(this.#buffer.subarray(0, p.length));
      this.#buffer = this.#buffer.subarray(p.length);
      return this.#finish();
    }
    const lineEnd = this.#buffer.indexOf('\r\n');
    if (lineEnd === -1) return false;
    const size = parseInt(this.#buffer.subarray(0, lineEnd).toString('latin1'), 16);
    if (!Number.isFinite(size)) throw new Error('malformed chunk size');
    if (size === 0) {
      const trailerEnd = this.#buffer.indexOf('\r\n\r\n', lineEnd - 2);
      if (trailerEnd === -1) return false;
      this.#buffer = this.#buffer.subarray(trailerEnd + 4);
      return this.#finish();
    }
    if (this.#buffer.length < lineEnd + 2 + size + 2) return false;
    p.parts.push(this.#buffer.subarray(lineEnd + 2, lineEnd + 2 + size));
    this.#buffer = this.#buffer.subarray(lineEnd + 2 + size + 2);
    return true;
  }

  /** The connection closed: an answer whose body ran to the close is whole now. */
  end() {
    if (this.#pending?.length !== Infinity) return;
    this.#pending.parts.push(this.#buffer);
    this.#buffer = Buffer.alloc(0);
    this.#finish();
  }

  #finish() {
    const { status, headers, parts } = this.#pending;
    this.#pending = undefined;
    this.onAnswer({ status, headers, body: Buffer.concat(parts).toString('latin1') });
    return true;
  }
}

/** Why an answer is wrong, or undefined when it is the one `request` must get. */
export function checkAnswer(request, answer) {
  if (answer.status !== 200) return `status ${answer.status}`;
  if (answer.headers['x-echo'] !== request.echo)
    return `x-echo ${JSON.stringify(answer.headers['x-echo'])}, expected ${JSON.stringify(request.echo)}`;
  if (request.method !== 'HEAD' && answer.body !== request.echo) return `body ${JSON.stringify(answer.body.slice(0, 80))}`;
  return undefined;
}

/**
 * Runs one keep-alive connection's worth of traffic to `port` until `stop()`: batches of random
 * requests (one, or 2–16 pipelined), each next batch written the moment the last answer ends.
 * Now and then (`reconnectChance` per batch) the client closes its connection and opens a new one.
 * A connection the server closes after announcing it (`Connection: close`) is opened again and
 * what it left unanswered is sent again (`retried`, as RFC 9112 lets a client do); a connection
 * that breaks otherwise, a timeout, or a wrong answer is counted, with the request's shape.
 */
export function startConnection({ port, rng, stats, nextId, pipelineChance = 0.15, reconnectChance = 0.03 }) {
  let running = true;
  /** The connection open now; events of an earlier one are ignored. */
  let socket;
  /** The exchange waiting for answers now: { requests, answers, finish(why), onContinue? }. */
  let current;
  /** The server said `Connection: close` on the connection open now. */
  let closeAnnounced = false;
  /** The shapes this connection sent last, to say what came before a wrong answer. */
  const history = [];

  const onAnswer = (answer) => {
    if (current === undefined) throw new Error('an answer nobody asked for');
    const request = current.requests[current.answers.length];
    current.answers.push(answer);
    if (/close/i.test(answer.headers.connection ?? '')) closeAnnounced = true;
    const wrong = checkAnswer(request, answer);
    if (wrong === undefined) stats.ok += 1;
    else stats.wrong.push({ shape: request.shape, wrong, before: history.slice(-4) });
    history.push(request.shape);
    if (current.answers.length === current.requests.length) current.finish(undefined);
  };

  const open = () =>
    new Promise((resolve, reject) => {
      const conn = net.connect({ port, host: '127.0.0.1' });
      socket = conn;
      closeAnnounced = false;
      conn.setNoDelay(true);
      stats.connections += 1;
      const mine = () => socket === conn;
      const reader = new ResponseReader({
        isHead: () => current?.requests[current.answers.length]?.method === 'HEAD',
        onInterim: () => current?.onContinue?.(),
        onAnswer,
      });
      conn.on('data', (data) => {
        if (!mine()) return;
        try {
          reader.feed(data);
        } catch (error) {
          current?.finish(`unparsable answer: ${error.message}`);
          conn.destroy();
        }
      });
      conn.once('connect', resolve);
      conn.on('error', (error) => {
        if (mine()) current?.finish(error.code ?? error.message);
        reject(error);
      });
      conn.on('close', () => {
        if (!mine()) return;
        reader.end();
        current?.finish(closeAnnounced ? 'closed-announced' : reader.partial ? 'closed mid-answer' : 'closed');
      });
    });

  /** Sends `requests` and resolves once each is answered, or with why the connection broke. */
  const exchange = (requests) =>
    new Promise((resolve) => {
      const ex = {
        requests,
        answers: [],
        finish(why) {
          if (current !== ex) return;
          clearTimeout(timer);
          current = undefined;
          resolve({ why, answered: ex.answers.length });
        },
      };
      const timer = setTimeout(() => ex.finish('timeout'), ANSWER_TIMEOUT_MS);
      current = ex;
      write(requests).catch((error) => ex.finish(`write: ${error.message}`));
    });

  /**
   * Writes `requests` on the connection open now. It keeps that connection: a trickled body
   * still being written when its exchange broke must never go on to the next connection.
   */
  const write = async (requests) => {
    const conn = socket;
    if (requests.length > 1) return void conn.write(Buffer.concat(requests.flatMap((r) => [r.head, ...bodyPieces(r, 1)])));
    const [request] = requests;
    const heads = splitAt(rng, request.head, request.headPieces);
    for (const [i, piece] of heads.entries()) {
      if (conn.destroyed) return;
      conn.write(piece);
      if (i < heads.length - 1) await new Promise((r) => setTimeout(r, rng.int(0, 3)));
    }
    if (request.expect) {
      await new Promise((resolve) => {
        const wait = setTimeout(resolve, CONTINUE_WAIT_MS);
        if (current)
          current.onContinue = () => {
            clearTimeout(wait);
            resolve();
          };
      });
    }
    const pieces = bodyPieces(request, request.trickleMs > 0 ? 10 : 1);
    for (const piece of pieces) {
      if (conn.destroyed) return;
      conn.write(piece);
      if (request.trickleMs > 0) await new Promise((r) => setTimeout(r, request.trickleMs / pieces.length));
    }
  };

  const loop = async () => {
    let requests = [];
    while (running) {
      if (socket === undefined || socket.destroyed) {
        try {
          await open();
        } catch {
          stats.connectErrors += 1;
          await new Promise((r) => setTimeout(r, 50));
          continue;
        }
      }
      if (requests.length === 0) {
        const depth = rng.chance(pipelineChance) ? rng.int(2, 16) : 1;
        requests = Array.from({ length: depth }, () => randomRequest(rng, nextId(), { simple: depth > 1 }));
      }
      stats.sent += requests.length;
      const { why, answered } = await exchange(requests);
      const unanswered = requests.slice(answered);
      requests = [];
      if (why === undefined) {
        // Announced: the server closes it next, and a request sent now would race that close.
        // Now and then a client leaves too: new connections arrive all through an upgrade.
        if (closeAnnounced || rng.chance(reconnectChance)) socket.destroy();
        continue;
      }
      socket.destroy();
      if (why === 'closed-announced' && unanswered.length > 0) {
        // The server said it would close: what it never answered is sent again on a new connection.
        stats.retried += unanswered.length;
        stats.sent -= unanswered.length;
        requests = unanswered;
      } else if (unanswered.length > 0) {
        for (const r of unanswered) stats.failed.push({ shape: r.shape, why });
      }
    }
    socket?.end();
  };
  const done = loop();
  return {
    stop: () => {
      running = false;
      return done;
    },
  };
}

/** Counters shared by a run's connections. */
export function newStats() {
  return { sent: 0, ok: 0, wrong: [], failed: [], retried: 0, connections: 0, connectErrors: 0 };
}
