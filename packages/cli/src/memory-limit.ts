/**
 * `--max-memory SIZE` (issue #28; pm2's `max_memory_restart`): a worker whose resident memory
 * stays above the limit is replaced, by the same lossless path as an upgrade's (a new worker
 * for its slot, then the old one retired, its idle connections moved). "Stays": three samples
 * in a row, a second apart, so a burst that the garbage collector gives back does not count.
 * RSS is read from /proc/<pid>/status (Linux); elsewhere the flag is refused at start.
 */
import { existsSync, readFileSync } from 'node:fs';

/** How often worker memory is sampled (ms): reading /proc for a few pids is cheap. */
export const MEMORY_SAMPLE_MS = 1_000;
/** Consecutive samples above the limit that make a worker's memory too high. */
export const MEMORY_SAMPLES_OVER = 3;

const UNITS: Readonly<Record<string, number>> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

/** `512M`, `1G`, `300MB`, `1.5G` or a number of bytes, as bytes; undefined when it is none of these. */
export function parseSize(text: string): number | undefined {
  const match = /^([0-9]+(?:\.[0-9]+)?)\s*([KMG]?)(?:i?B)?$/i.exec(text.trim());
  if (match === null) return undefined;
  const bytes = Math.round(Number(match[1]) * (UNITS[(match[2] ?? '').toUpperCase()] ?? 1));
  return Number.isSafeInteger(bytes) && bytes > 0 ? bytes : undefined;
}

/** Whether this platform lets the supervisor read its workers' RSS. */
export function canReadRss(): boolean {
  return existsSync(`/proc/${process.pid}/status`);
}

/** The resident set size of `pid` in bytes, or undefined when it cannot be read (the process is gone). */
export function rssBytes(pid: number): number | undefined {
  try {
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match === null ? undefined : Number(match[1]) * 1024;
  } catch {
    return undefined;
  }
}

/** A worker as the memory watch sees it. */
export interface WatchedWorker {
  pid: number;
}

/**
 * Samples the workers `serving()` returns and calls `over(worker, rss)` once for a worker whose
 * RSS stayed above `limit` for MEMORY_SAMPLES_OVER samples; its count then starts again, so a
 * replacement that fails is tried again later rather than at every sample.
 */
export class MemoryWatch<W extends WatchedWorker> {
  readonly #over = new Map<number, number>();
  readonly #timer: NodeJS.Timeout;

  constructor(limit: number, serving: () => readonly W[], over: (worker: W, rss: number) => void, read = rssBytes) {
    this.#timer = setInterval(() => {
      const workers = serving();
      for (const pid of this.#over.keys()) if (!workers.some((w) => w.pid === pid)) this.#over.delete(pid);
      for (const worker of workers) {
        const rss = read(worker.pid);
        const samples = rss !== undefined && rss > limit ? (this.#over.get(worker.pid) ?? 0) + 1 : 0;
        this.#over.set(worker.pid, samples === MEMORY_SAMPLES_OVER ? 0 : samples);
        if (samples === MEMORY_SAMPLES_OVER && rss !== undefined) over(worker, rss);
      }
    }, MEMORY_SAMPLE_MS);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
