// The one median of the bench: the lower median of the defined values (a value that was
// measured, never an average of two), undefined when there is none. Does not sort its input.
export function median(xs) {
  const sorted = xs.filter((x) => x !== undefined).sort((a, b) => a - b);
  return sorted.length === 0 ? undefined : sorted[Math.floor((sorted.length - 1) / 2)];
}
