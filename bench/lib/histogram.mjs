// A fixed-size log-linear latency histogram (HDR-like, no dependency).
// Values are integer microseconds. Below 256 µs every value has its own bucket; above, each
// power of two is split into 128 linear sub-buckets, so any recorded value is off by at most
// 1/128 (< 0.8 %) — plenty for p50/p99 — and merging two histograms is adding arrays, which
// lets the load generator keep one small histogram per time slot and a report pick any window.

const SUB = 128; // sub-buckets per power of two
const LINEAR = 2 * SUB; // values below this are exact
const MAX_SHIFT = 26; // covers up to 2^33 µs (~2.4 h): far beyond any request timeout
export const BUCKETS = (MAX_SHIFT + 2) * SUB;

function indexOf(us) {
  const v = us < 0 ? 0 : Math.round(us);
  if (v < LINEAR) return v;
  const magnitude = Math.floor(Math.log2(v)); // 8, 9, ...
  const shift = Math.min(magnitude - 7, MAX_SHIFT);
  const idx = (shift + 1) * SUB + (Math.min(v >> shift, 2 * SUB - 1) - SUB);
  return Math.min(idx, BUCKETS - 1);
}

/** The representative value (bucket midpoint) of a bucket, in microseconds. */
function bucketValue(idx) {
  if (idx < LINEAR) return idx;
  const shift = Math.floor(idx / SUB) - 1;
  const lower = ((idx % SUB) + SUB) * 2 ** shift;
  return lower + 2 ** shift / 2;
}

export class Histogram {
  constructor() {
    this.counts = new Uint32Array(BUCKETS);
    this.total = 0;
    this.max = 0;
  }

  /** Records one latency in milliseconds (fractional ok). */
  recordMs(ms) {
    const us = ms * 1000;
    this.counts[indexOf(us)] += 1;
    this.total += 1;
    if (us > this.max) this.max = us;
  }

  /** Adds another histogram's counts to this one. */
  add(other) {
    for (let i = 0; i < BUCKETS; i++) this.counts[i] += other.counts[i];
    this.total += other.total;
    if (other.max > this.max) this.max = other.max;
    return this;
  }

  /** The q-th percentile (0–100) in milliseconds; undefined when empty. */
  percentileMs(q) {
    if (this.total === 0) return undefined;
    if (q >= 100) return this.max / 1000;
    const rank = Math.max(1, Math.ceil((q / 100) * this.total));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i];
      if (seen >= rank) return Math.min(bucketValue(i), this.max) / 1000;
    }
    return this.max / 1000;
  }

  static merge(list) {
    const h = new Histogram();
    for (const x of list) h.add(x);
    return h;
  }
}
