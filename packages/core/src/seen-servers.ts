/**
 * The servers of a miswired app (issue #26): once the process is seen listening through a server
 * grace-restart never saw (foreign-listeners.ts), the servers answering HTTP requests are learnt
 * from Node's public `http.server.request.start` diagnostics channel, so that a stop can drain
 * them as it drains its own: no new connections, every request in flight answered, each
 * connection closed after its answer (`Connection: close`). Without this the stop would exit
 * under them, as Node's default SIGTERM does. Nothing is subscribed until the miswiring is seen:
 * a correctly wired app has no code of this on its request path.
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import net from 'node:net';

const CHANNEL = 'http.server.request.start';

/** What Node publishes on `http.server.request.start`. */
interface RequestStart {
  request: IncomingMessage;
  response: ServerResponse;
  server: Server;
}

/** Figures of one drain, for the log. */
export interface SeenServersDrain {
  servers: number;
  /** Requests still unanswered when the drain began. */
  inFlight: number;
  /** Connections destroyed at the deadline. */
  forced: number;
}

export class SeenServers {
  readonly #servers = new Set<Server>();
  readonly #inFlight = new Set<ServerResponse>();
  #subscribed = false;
  #closing = false;
  #settled: (() => void) | undefined;

  /** Starts learning the servers from the requests they answer. Idempotent. */
  watch(): void {
    if (this.#subscribed) return;
    this.#subscribed = true;
    diagnosticsChannel.subscribe(CHANNEL, this.#onRequest);
  }

  /** Stops learning (the app is wired after all, or the process ends). */
  dispose(): void {
    if (this.#subscribed) diagnosticsChannel.unsubscribe(CHANNEL, this.#onRequest);
    this.#subscribed = false;
  }

  /** Servers that answered a request since {@link watch}. */
  get size(): number {
    return this.#servers.size;
  }

  readonly #onRequest = (message: unknown): void => {
    const { response, server } = message as RequestStart;
    this.#servers.add(server);
    this.#inFlight.add(response);
    // Answered from here on with Connection: close: the client reconnects, to the next process.
    if (this.#closing) response.shouldKeepAlive = false;
    response.once('close', () => {
      this.#inFlight.delete(response);
      if (this.#inFlight.size === 0) this.#settled?.();
    });
  };

  /**
   * Drains every seen server as drain.ts drains grace-restart's own: it stops accepting (net's
   * close: http's would also close the idle keep-alive connections at once, under a request the
   * client may be sending that instant); every request from now on is answered with
   * `Connection: close`; connections that send nothing for `idleGrace` ms are closed; requests
   * in flight get until `timeoutMs`, then the rest are destroyed.
   */
  async drain({ idleGrace, timeoutMs }: { idleGrace: number; timeoutMs: number }): Promise<SeenServersDrain> {
    this.#closing = true;
    const inFlight = this.#inFlight.size;
    for (const response of this.#inFlight) if (!response.headersSent) response.shouldKeepAlive = false;
    for (const server of this.#servers) net.Server.prototype.close.call(server);
    await new Promise((resolve) => setTimeout(resolve, Math.min(idleGrace, timeoutMs)));
    for (const server of this.#servers) server.closeIdleConnections();
    const answered = this.#inFlight.size === 0 || (await this.#allAnswered(Math.max(0, timeoutMs - idleGrace)));
    const forced = answered ? 0 : this.#inFlight.size;
    for (const server of this.#servers) {
      if (answered) server.closeIdleConnections();
      else server.closeAllConnections();
    }
    this.dispose();
    return { servers: this.#servers.size, inFlight, forced };
  }

  #allAnswered(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.#settled = () => {
        clearTimeout(timer);
        resolve(true);
      };
    });
  }
}
