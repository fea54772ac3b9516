// Vega-Lite spec -> SVG text, in Node, without a browser: compile the Vega-Lite spec to Vega,
// then let a headless Vega view (renderer 'none') write the SVG. Shared chart styling lives here
// so every chart in the report looks the same.
import * as vega from 'vega';
import { compile } from 'vega-lite';

const FONT = 'DejaVu Sans, Helvetica, Arial, sans-serif';

// Without node-canvas, Vega guesses every character at 0.8 em, so long labels and titles make
// the SVG ~40 % wider than what is drawn. A per-class estimate for DejaVu Sans (slightly generous,
// so nothing overlaps when another sans font renders it) keeps the charts tight.
const NARROW = new Set("ijlft.,:;|!'()[]{} -");
const WIDE = new Set('mwMW%@');
function estimateWidth(item, text) {
  const s = String(text ?? item.text ?? '');
  const size = item.fontSize ?? 11;
  let em = 0;
  for (const c of s) em += NARROW.has(c) ? 0.36 : WIDE.has(c) ? 0.9 : c >= 'A' && c <= 'Z' ? 0.72 : 0.62;
  const bold = item.fontWeight === 'bold' || Number(item.fontWeight) >= 600;
  return Math.ceil(em * size * (bold ? 1.1 : 1));
}
vega.textMetrics.width = estimateWidth;

/** Base config: white background, readable sizes, titles left-aligned above the plot. */
export const CONFIG = {
  background: 'white',
  padding: 12,
  font: FONT,
  title: { anchor: 'start', fontSize: 15, subtitleFontSize: 12, subtitleColor: '#444', offset: 12 },
  axis: { labelFontSize: 11, titleFontSize: 12, titleFontWeight: 'normal', gridColor: '#e5e7eb' },
  header: { labelFontSize: 12, titleFontSize: 12 },
  legend: { labelFontSize: 11, titleFontSize: 12, labelLimit: 0 },
  view: { stroke: '#d1d5db' },
};

/** Renders a Vega-Lite spec (config merged over CONFIG) to an SVG string. */
export async function renderSvg(spec) {
  const full = { $schema: 'https://vega.github.io/schema/vega-lite/v6.json', ...spec, config: { ...CONFIG, ...spec.config } };
  const { spec: vgSpec } = compile(full);
  const view = new vega.View(vega.parse(vgSpec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
