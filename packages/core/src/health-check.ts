/**
 * The health check a new process passes before it reports ready (the `healthCheck` option):
 * a path requested in process, or a function. A path's request goes to the app's own HTTP
 * server over an in-memory connection (`server.emit('connection', duplex)`, which Node
 * documents for this: "any Duplex stream can be passed"), so it runs the app's whole stack
 * (router, middleware, error handler) and never reaches the network: on an inherited socket
 * a request to the port could land on the old process instead.
 */
import { Server as HttpServer } from 'node:http';
import type { Server } from 'node:net';
import { Duplex } from 'node:stream';

/** What the option takes: a path (`'/healthz'`) or a function that throws or rejects when unhealthy. */
export type HealthCheck = string | (() => unknown);

/** Runs `check` within `timeoutMs`; resolves with why it failed, or undefined when it passed. */
export async function runHealthCheck(check: HealthCheck, servers: readonly Server[], timeoutMs: number): Promise<string | undefined> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<string>((resolve) => {
    timer = setTimeout(() => {
      controller.abort();
      resolve(`no answer within ${timeoutMs} ms`);
    }, timeoutMs);
  });
  try {
    return await Promise.race([checkOnce(check, servers, controller.signal), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

async function checkOnce(check: HealthCheck, servers: readonly Server[], signal: AbortSignal): Promise<string | undefined> {
  if (typeof check === 'function') {
    try {
      await check();
      return undefined;
    } catch (error) {
      return `the healthCheck function failed: ${error instanceof Error ? error.message : String(error)}`;
    }
  }
  // https and http2 servers are not http.Server: a plain request cannot reach them in memory.
  const server = servers.find((s): s is HttpServer => s.listening && s instanceof HttpServer);
  if (server === undefined)
    return `no plain HTTP/1 server listens to request ${check} from (give healthCheck a function for HTTPS or HTTP/2)`;
  const status = await requestInMemory(server, check, signal);
  if (typeof status === 'string') return status;
  return status >= 200 && status < 300 ? undefined : `GET ${check} answered ${status}`;
}

/** GET `path` from `server` over an in-memory connection: the status code, or why there was none. */
function requestInMemory(server: HttpServer, path: string, signal: AbortSignal): Promise<number | string> {
  const [client, serverSide] = duplexPair();
  return new Promise<number | string>((resolve) => {
    let head = '';
    const finish = (result: number | string): void => {
      resolve(result);
      client.destroy();
      serverSide.destroy();
    };
    signal.addEventListener('abort', () => finish('aborted'), { once: true });
    client.setEncoding('latin1');
    client.on('data', (chunk: string) => {
      head += chunk;
      const line = head.indexOf('\r\n');
      if (line === -1) return;
      const match = /^HTTP\/1\.[01] (\d{3})/.exec(head.slice(0, line));
      finish(match === null ? `GET ${path} answered something that is not HTTP` : Number(match[1]));
    });
    client.on('end', () => finish(`GET ${path} closed the connection without an answer`));
    client.on('error', (error) => finish(`GET ${path} failed: ${error.message}`));
    server.emit('connection', serverSide);
    client.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: grace-restart-health-check\r\nConnection: close\r\n\r\n`);
  });
}

/** Two connected in-memory streams: what one writes, the other reads (stream.duplexPair is Node ≥ 22.6). */
function duplexPair(): [Duplex, Duplex] {
  const ends: Duplex[] = [];
  const end = (other: () => Duplex): Duplex =>
    new Duplex({
      read() {
        // Data is pushed by the other end's writes.
      },
      write(chunk: Buffer, _encoding, callback) {
        other().push(chunk);
        callback();
      },
      final(callback) {
        other().push(null);
        callback();
      },
    });
  ends.push(
    end(() => ends[1] as Duplex),
    end(() => ends[0] as Duplex),
  );
  return [ends[0] as Duplex, ends[1] as Duplex];
}
