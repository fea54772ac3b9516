/**
 * The successor's pace of adoption, from its acks: how many sockets the move may have on their
 * way at once (connection-mover.ts). A socket on its way is one whose client waits, unread, and
 * the successor adopts one socket per turn of its event loop (libuv reads one fd-carrying message
 * per turn), which takes milliseconds once it serves. Sent all at once, 50 busy connections
 * waited up to 650 ms for a cold successor while the old process sat idle. So only as many are
 * on their way as the successor adopts within STALL_BUDGET_MS at the pace it has been
 * acknowledging (1 to MOVE_WINDOW); the rest are served by the old process meanwhile.
 */

/**
 * At most this many sockets on their way to the successor at once (when written without Node's
 * one-at-a-time queue, server-internals.ts). The kernel's default socket buffer holds about
 * 200 such small messages; more would only wait in libuv's queue, still the sender's.
 */
export const MOVE_WINDOW = 128;

/**
 * How long the last socket sent may wait for the successor to adopt it, at the pace it has
 * been adopting (ms): the window of sockets in flight is this over the time per adoption.
 * An idle successor adopts one in ~0.1 ms (a full window); a cold one serving load, one in
 * 5–20 ms (one at a time).
 */
const STALL_BUDGET_MS = 5;

/** Sockets on their way before the successor's pace is known. */
const FIRST_WINDOW = 2;

/** Weight of the newest sample in the running time per adoption. */
const PACE_WEIGHT = 0.3;

/** A running time per adopted socket, and the window of sockets in flight it allows. */
export class AdoptionPace {
  #msPerAdoption: number | undefined;
  #lastAnswerAt = 0;

  /** `count` answers arrived at `now`, for sockets the oldest of which was sent at `oldestSentAt` (ms, performance.now()). */
  answered(count: number, oldestSentAt: number, now = performance.now()): void {
    if (count === 0 || !Number.isFinite(oldestSentAt)) return;
    // The successor worked on these since the later of the previous answer and their sending.
    const sample = (now - Math.max(this.#lastAnswerAt, oldestSentAt)) / count;
    this.#lastAnswerAt = now;
    this.#msPerAdoption = this.#msPerAdoption === undefined ? sample : this.#msPerAdoption + PACE_WEIGHT * (sample - this.#msPerAdoption);
  }

  /** How many sockets may be on their way now. */
  window(): number {
    if (this.#msPerAdoption === undefined) return FIRST_WINDOW;
    return Math.max(1, Math.min(MOVE_WINDOW, Math.floor(STALL_BUDGET_MS / Math.max(this.#msPerAdoption, 0.001))));
  }
}
