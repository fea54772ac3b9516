// mulberry32: a small seeded PRNG, enough to replay a run from its seed. One copy for the move
// fuzzer, the lifecycle driver and the in-process random walks.

/** `next()` in [0, 1); `int(min, max)` inclusive; `pick(list)`; `chance(p)`. */
export function randomSource(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (min, max) => min + Math.floor(next() * (max - min + 1));
  return { next, int, pick: (list) => list[int(0, list.length - 1)], chance: (p) => next() < p };
}
