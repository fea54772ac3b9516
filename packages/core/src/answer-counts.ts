/**
 * How a process answers (issue #28): requests answered, and how many of them with a 5xx, for
 * the servers this process serves; `grace-restart status` shows them per process and, under the
 * supervisor, per generation. Counted from Node's own diagnostics channels
 * (`http.server.request.start`, `http.server.response.finish`, public since Node 16.18), which
 * http publishes to only while someone subscribes: no wrapper around the app's handler, and
 * nothing at all in a process that does not count.
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import type { Server } from 'node:net';

/** What a process answered since it started. */
export interface AnswerCounts {
  /** Responses finished. */
  requests: number;
  /** Of those, answered with a status of 500 or more. */
  errors5xx: number;
  /** Requests started and not (yet) answered: in flight, or abandoned (a client gone, a handler that hangs). */
  unanswered: number;
}

/** No answers yet. Frozen: sum into a copy ({@link addAnswers}). */
export const NO_ANSWERS: Readonly<AnswerCounts> = Object.freeze({ requests: 0, errors5xx: 0, unanswered: 0 });

/** `a` + `b`; without `unanswered` of `b` when those requests died with a process (or were answered after its last report). */
export function addAnswers(a: Readonly<AnswerCounts>, b: Readonly<AnswerCounts>, options: { unanswered: boolean }): AnswerCounts {
  return {
    requests: a.requests + b.requests,
    errors5xx: a.errors5xx + b.errors5xx,
    unanswered: a.unanswered + (options.unanswered ? b.unanswered : 0),
  };
}

const REQUEST_START = 'http.server.request.start';
const RESPONSE_FINISH = 'http.server.response.finish';

/** Counts the answers of the servers `ours` accepts, from `start()` to `stop()`. */
export class AnswerCounter {
  readonly #ours: (server: Server) => boolean;
  #started = 0;
  #finished = 0;
  #errors = 0;

  constructor(ours: (server: Server) => boolean) {
    this.#ours = ours;
  }

  get counts(): AnswerCounts {
    return { requests: this.#finished, errors5xx: this.#errors, unanswered: this.#started - this.#finished };
  }

  start(): void {
    diagnosticsChannel.subscribe(REQUEST_START, this.#onStart);
    diagnosticsChannel.subscribe(RESPONSE_FINISH, this.#onFinish);
  }

  stop(): void {
    diagnosticsChannel.unsubscribe(REQUEST_START, this.#onStart);
    diagnosticsChannel.unsubscribe(RESPONSE_FINISH, this.#onFinish);
  }

  readonly #onStart = (message: unknown): void => {
    if (this.#ours((message as { server: Server }).server)) this.#started += 1;
  };

  readonly #onFinish = (message: unknown): void => {
    const { server, response } = message as { server: Server; response: { statusCode: number } };
    if (!this.#ours(server)) return;
    this.#finished += 1;
    if (response.statusCode >= 500) this.#errors += 1;
  };
}

/** How often a supervised worker reports its counts to the supervisor, while they change (ms). */
export const ANSWERS_REPORT_MS = 1_000;

/**
 * Counts the answers of the servers `serves` accepts until `until` settles; with `report` (a
 * supervised worker), reports them every ANSWERS_REPORT_MS while they change, and once more
 * when `until` settles: a worker's last second of answers would otherwise die with it.
 */
export function countAnswers(
  serves: (server: Server) => boolean,
  report: ((counts: AnswerCounts) => void) | undefined,
  until: Promise<unknown>,
): AnswerCounter {
  const counter = new AnswerCounter(serves);
  counter.start();
  let last = '';
  const reportIfChanged = (): void => {
    const counts = counter.counts;
    const now = JSON.stringify(counts);
    if (now === last) return;
    last = now;
    report?.(counts);
  };
  const timer = report === undefined ? undefined : setInterval(reportIfChanged, ANSWERS_REPORT_MS).unref();
  const end = (): void => {
    clearInterval(timer);
    counter.stop();
    reportIfChanged();
  };
  until.then(end, end);
  return counter;
}
