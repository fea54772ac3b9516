// Tiny dependency-free SVG charts for the markdown report: a multi-series line chart (with
// vertical markers, for upgrade triggers) and a horizontal bar chart. Plain SVG 1.1 with inline
// styles, so GitHub renders it from the .md via an <img>/markdown image link.

const PALETTE = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#4b5563'];
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
const fmt = (v) => (v >= 10_000 ? `${Math.round(v / 1000)}k` : v >= 1000 ? `${(v / 1000).toFixed(1)}k` : String(Math.round(v * 10) / 10));

/** A "nice" axis maximum: 1, 2 or 5 times a power of ten, at least `max`. */
function niceMax(max) {
  if (max <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  return [1, 2, 5, 10].map((m) => m * p).find((v) => v >= max);
}

function frame(width, height, title, body) {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="11">
<rect width="100%" height="100%" fill="#fff"/>
<text x="${width / 2}" y="16" text-anchor="middle" font-size="13" font-weight="600">${esc(title)}</text>
${body}
</svg>
`;
}

/**
 * series: [{ name, points: [[x, y], …], markers?: [x, …] }]; markers are drawn as dashed
 * vertical lines in the series' colour.
 */
export function lineChart({ title, series, xLabel = '', yLabel = '', width = 760, height = 300 }) {
  const m = { top: 28, right: 16, bottom: 58, left: 56 };
  const w = width - m.left - m.right;
  const h = height - m.top - m.bottom;
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const xMax = Math.max(1, ...xs);
  const yMax = niceMax(Math.max(0, ...series.flatMap((s) => s.points.map((p) => p[1]))));
  const X = (x) => m.left + (x / xMax) * w;
  const Y = (y) => m.top + h - (y / yMax) * h;
  const parts = [];
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    parts.push(`<line x1="${m.left}" x2="${m.left + w}" y1="${Y(v)}" y2="${Y(v)}" stroke="#e5e7eb"/>`);
    parts.push(`<text x="${m.left - 6}" y="${Y(v) + 4}" text-anchor="end" fill="#374151">${fmt(v)}</text>`);
  }
  const xStep = niceMax(xMax / 8);
  for (let x = 0; x <= xMax; x += xStep) parts.push(`<text x="${X(x)}" y="${m.top + h + 14}" text-anchor="middle" fill="#374151">${fmt(x)}</text>`);
  parts.push(`<line x1="${m.left}" x2="${m.left}" y1="${m.top}" y2="${m.top + h}" stroke="#9ca3af"/><line x1="${m.left}" x2="${m.left + w}" y1="${m.top + h}" y2="${m.top + h}" stroke="#9ca3af"/>`);
  series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    for (const x of s.markers ?? []) parts.push(`<line x1="${X(x)}" x2="${X(x)}" y1="${m.top}" y2="${m.top + h}" stroke="${color}" stroke-dasharray="3 3" stroke-opacity="0.6"/>`);
    const d = s.points.map(([x, y], j) => `${j === 0 ? 'M' : 'L'}${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join('');
    parts.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.5"/>`);
  });
  // Legend under the axis label, wrapped in rows of 4.
  series.forEach((s, i) => {
    const lx = m.left + (i % 4) * (w / 4);
    const ly = height - 22 + Math.floor(i / 4) * 13 - (series.length > 4 ? 6 : 0);
    parts.push(`<rect x="${lx}" y="${ly - 8}" width="10" height="3" fill="${PALETTE[i % PALETTE.length]}"/><text x="${lx + 14}" y="${ly - 4}" fill="#111827">${esc(s.name)}</text>`);
  });
  parts.push(`<text x="${m.left + w / 2}" y="${m.top + h + 28}" text-anchor="middle" fill="#6b7280">${esc(xLabel)}</text>`);
  parts.push(`<text transform="translate(14 ${m.top + h / 2}) rotate(-90)" text-anchor="middle" fill="#6b7280">${esc(yLabel)}</text>`);
  return frame(width, height, title, parts.join('\n'));
}

/** bars: [{ label, value, color? }]; horizontal bars with the value printed at the end. */
export function barChart({ title, bars, unit = '', width = 760 }) {
  const rowH = 22;
  const m = { top: 30, right: 70, bottom: 10, left: 300 };
  const height = m.top + m.bottom + bars.length * rowH;
  const w = width - m.left - m.right;
  const vMax = niceMax(Math.max(0, ...bars.map((b) => b.value)));
  const parts = bars.map((b, i) => {
    const y = m.top + i * rowH;
    const bw = (b.value / vMax) * w;
    const color = b.color ?? (b.value === 0 ? '#16a34a' : '#dc2626');
    return `<text x="${m.left - 8}" y="${y + 15}" text-anchor="end" fill="#111827">${esc(b.label)}</text>
<rect x="${m.left}" y="${y + 4}" width="${Math.max(bw, b.value > 0 ? 1 : 0)}" height="${rowH - 8}" fill="${color}"/>
<text x="${m.left + bw + 6}" y="${y + 15}" fill="#111827">${esc(`${fmt(b.value)}${unit}`)}</text>`;
  });
  return frame(width, height, title, parts.join('\n'));
}
