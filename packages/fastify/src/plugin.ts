/**
 * The Fastify plugin: one grace-restart instance for the process, wired into Fastify's
 * server, logger and close lifecycle. Process plumbing (signals, handoff, drain) stays in
 * @grace-restart/core.
 */
import { createGrace, type GraceOptions } from '@grace-restart/core';
import type { FastifyPluginAsync, RawServerBase } from 'fastify';
import fp from 'fastify-plugin';
import { routeCloseThroughDrain } from './close.js';
import { createHandle } from './handle.js';
import { keepConnectionsWhileDraining, watchSecondaryServers } from './secondary.js';

/**
 * Options of the plugin: those of `createGrace()` from @grace-restart/core. Every field is
 * optional; `logger` defaults to a child of `fastify.log`.
 */
export type GraceRestartOptions = { [K in keyof GraceOptions]?: GraceOptions[K] };

// Typed over every raw server (http, https, http2) so any Fastify instance can register it.
const graceRestartPlugin: FastifyPluginAsync<GraceRestartOptions, RawServerBase> = async (fastify, options) => {
  // A Fastify without a logger (its default, and NestJS's FastifyAdapter) or with one that
  // drops errors would drop grace-restart's too: core's own logger speaks then.
  const logger = options.logger ?? (dropsErrors(fastify.log) ? undefined : fastify.log.child({ name: 'grace-restart' }));
  const grace = createGrace({ ...options, logger });
  // `fastify.listen()` ends in `fastify.server.listen()`: adopting the server makes that
  // call take the inherited socket (FastifyListenOptions has no `fd`).
  grace.adopt(fastify.server);
  const stopWatching = watchSecondaryServers(fastify.server, fastify.routing, (server) => {
    grace.adopt(server);
    keepConnectionsWhileDraining(server, () => grace.state === 'draining');
  });
  fastify.addHook('onListen', async () => stopWatching());
  fastify.addHook('onClose', async () => stopWatching());
  routeCloseThroughDrain(fastify, grace);
  fastify.decorate('graceRestart', createHandle(grace));
};

/**
 * Whether `log` drops error lines: pino's level is above `error` (50: `fatal`, `silent`), or
 * it has no level at all (Fastify's no-op logger when `logger` is off).
 */
function dropsErrors(log: { level?: unknown; levelVal?: unknown }): boolean {
  if (typeof log.levelVal === 'number') return log.levelVal > 50;
  return typeof log.level !== 'string' || log.level === 'silent' || log.level === 'fatal';
}

/**
 * Zero-downtime restarts and hot upgrades for a Fastify app. Register it on the root
 * instance, then listen as usual:
 *
 * @example
 * await app.register(graceRestart, { pidFile: 'app.pid' })
 * await app.listen({ port: 3000 })   // `kill -USR2 $(cat app.pid)` upgrades
 */
export const graceRestart = fp(graceRestartPlugin, { name: '@grace-restart/fastify', fastify: '5.x' });
