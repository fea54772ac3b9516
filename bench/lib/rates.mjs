// Throughput over time as rates over whole windows, from an upgrades run's timeline.
//
// Why a module of its own: runs up to 2026-11-23 stored a timeline of 250 ms buckets summed over
// 100 ms slots with fractional slot indices, so bucket 2k held slots 5k..5k+2 (300 ms of answers
// reported as if 250 ms) and bucket 2k+1 held nothing: drawn as is, it reads as "throughput drops
// to zero twice a second". The data in the even buckets is sound, so it is decoded here into what
// it is: one 300 ms window every 500 ms. Newer runs store one bucket per 100 ms slot
// (`timelineMs`), and are summed into windows of RATE_WINDOW_MS.

export const RATE_WINDOW_MS = 200;

/** True for a timeline written before `timelineMs` existed (the skipping 250 ms buckets). */
export const isLegacyTimeline = (r) => r.timelineMs === undefined;

/** [{ t (s, window midpoint), rate (answers/s), failed, connects? }] for one upgrades run. */
export function ratePoints(r) {
  return isLegacyTimeline(r) ? legacyPoints(r.timeline) : windowPoints(r.timeline, r.timelineMs, RATE_WINDOW_MS);
}

/** How the points were sampled, for a chart's subtitle. */
export function samplingNote(r) {
  return isLegacyTimeline(r)
    ? 'rate over 300 ms windows, one every 500 ms (this run recorded 3 of every 5 slots of 100 ms)'
    : `rate over consecutive ${RATE_WINDOW_MS} ms windows`;
}

function legacyPoints(timeline) {
  const out = [];
  for (let i = 0; i < timeline.length; i += 2) {
    const p = timeline[i];
    // rps was ok * 1000 / 250 over 300 ms of answers: ok = rps / 4, rate = ok / 0.3 s.
    out.push({ t: p.t + 0.15, rate: Math.round(p.rps / 4 / 0.3), failed: p.failed });
  }
  return out;
}

function windowPoints(timeline, slotMs, windowMs) {
  const per = Math.max(1, Math.round(windowMs / slotMs));
  const out = [];
  // Only whole windows: a partial last window would read as a drop at the end of the run.
  for (let i = 0; i + per <= timeline.length; i += per) {
    const slice = timeline.slice(i, i + per);
    const ok = slice.reduce((a, p) => a + (p.rps * slotMs) / 1000, 0);
    out.push({
      t: timeline[i].t + (per * slotMs) / 2000,
      rate: Math.round((ok * 1000) / (per * slotMs)),
      failed: slice.reduce((a, p) => a + p.failed, 0),
      connects: slice.reduce((a, p) => a + (p.connects ?? 0), 0),
    });
  }
  return out;
}
