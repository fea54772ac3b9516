// What the steady-state overhead measurement can resolve on this machine: the A/A control (the
// bare node:http app measured against itself, the same way) gives the difference two identical
// processes show; a figure is called real only beyond it.

/** { rpsPct, cpuPct } from the run's A/A control row, or undefined when the run has none. */
export function noiseFloor(overhead = []) {
  const control = overhead.find((o) => o.control && !o.skipped);
  if (!control) return undefined;
  return {
    rpsPct: Math.abs(control.overheadPct),
    cpuPct: control.cpuOverheadPct === undefined ? undefined : Math.abs(control.cpuOverheadPct),
  };
}

/**
 * 'within' (indistinguishable from zero), 'real' (an overhead beyond the floor) or 'favour' (beyond
 * the floor in grace-restart's favour: it cannot be faster than the bare app, so such a figure
 * says the one A/A pair understated the noise).
 */
export function judge(pct, floorPct) {
  if (pct === undefined || floorPct === undefined) return undefined;
  if (Math.abs(pct) <= floorPct) return 'within';
  return pct > 0 ? 'real' : 'favour';
}
