/**
 * Normalises the many signatures of `server.listen()` into options and a callback, so a
 * framework's own `app.listen(...)` can be routed through grace-restart unchanged.
 */
import type { ListenOptions } from './address.js';
import { GraceError } from './errors.js';

export interface ParsedListenArgs {
  options: ListenOptions;
  callback: (() => void) | undefined;
}

/** Accepts (options, cb), (port, host?, backlog?, cb?), (path, backlog?, cb?) and (cb). */
export function parseListenArgs(args: readonly unknown[]): ParsedListenArgs {
  const rest = [...args];
  const callback = typeof rest.at(-1) === 'function' ? (rest.pop() as () => void) : undefined;
  const [first, second, third] = rest;
  if (first === undefined || first === null) return { options: {}, callback };
  if (typeof first === 'object') {
    const { signal: _signal, ...options } = first as ListenOptions & { signal?: unknown };
    if ('fd' in options || 'handle' in options || '_handle' in options) {
      throw new GraceError('GRACE_ERR_OPTIONS', 'grace-restart: listen() with a handle or fd is not supported; pass port/host or path');
    }
    return { options, callback };
  }
  if (typeof first === 'string' && !/^[0-9]+$/.test(first)) {
    return { options: typeof second === 'number' ? { path: first, backlog: second } : { path: first }, callback };
  }
  const port = Number(first);
  const options: ListenOptions = { port };
  if (typeof second === 'string') options.host = second;
  const backlog = typeof second === 'number' ? second : third;
  if (typeof backlog === 'number') options.backlog = backlog;
  return { options, callback };
}
