/**
 * One way to stop: `fastify.close()` goes through grace-restart's drain, so a stop signal,
 * a handoff to a successor and `fastify.close()` (called by the app, by close-with-grace or
 * by `await using`) all end the same way — stop accepting, keep-alive-first drain, then
 * Fastify's own close, whose `onClose` hooks run once, after the connections are gone.
 *
 * Fastify's close on its own fails requests under keep-alive load: it flags the router as
 * closing at once, so with `return503OnClosing` (the default) a request still arriving on
 * an open keep-alive socket gets a 503, and `server.close()` destroys idle keep-alive
 * sockets while a client may be sending on them. Run after the drain, it finds no
 * connection left, so neither can happen.
 */
import type { Grace } from '@grace-restart/core';
import type { FastifyInstance, RawServerBase } from 'fastify';

/** Replaces `fastify.close` with the draining close; Fastify's own runs once, last. */
export function routeCloseThroughDrain(fastify: FastifyInstance<RawServerBase>, grace: Grace): void {
  const fastifyClose = fastify.close.bind(fastify) as () => Promise<unknown>;
  let fastifyClosed: Promise<void> | undefined;
  const closeFastify = (): Promise<void> => (fastifyClosed ??= fastifyClose().then(() => undefined));
  // Every drain, whoever started it, ends in Fastify's close.
  grace.onShutdown(closeFastify);
  // Once the drain is over, a close() comes from an onShutdown hook (NestJS's app.close(), say):
  // waiting for grace.close() there would wait for that very hook, until hookTimeout.
  let drained = false;
  grace.on('drain-end', () => (drained = true));

  const drainThenClose = async (): Promise<void> => {
    if (drained) return closeFastify();
    await settleUpgrade(grace);
    await grace.close();
    await closeFastify();
  };
  function close(): Promise<undefined>;
  function close(listener: (err?: Error) => void): undefined;
  function close(listener?: (err?: Error) => void): Promise<undefined> | undefined {
    const closing = drainThenClose();
    if (typeof listener !== 'function') return closing.then(() => undefined);
    closing.then(
      () => listener(),
      (err: unknown) => listener(err instanceof Error ? err : new Error(String(err))),
    );
    return undefined;
  }
  fastify.close = close;
}

/**
 * When close() is called during an upgrade (close-with-grace answers SIGUSR2 with
 * `app.close()` unless told to skip it), waits for the upgrade's outcome: after a handoff
 * the drain it starts is joined rather than aborting the successor that now serves.
 */
async function settleUpgrade(grace: Grace): Promise<void> {
  // close() may run inside a signal handler: let the other handlers of that signal run
  // first, so an upgrade signal has started its upgrade before we look.
  await new Promise((resolve) => setImmediate(resolve));
  if (grace.state !== 'upgrading') return;
  await new Promise<void>((resolve) => {
    const settled = (): void => {
      grace.off('drain-start', settled);
      grace.off('upgrade-failed', settled);
      resolve();
    };
    grace.on('drain-start', settled);
    grace.on('upgrade-failed', settled);
  });
}
