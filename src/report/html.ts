/**
 * `--html FILE`: the report as one self-contained page. The plots are vega-lite specs
 * rendered to SVG here in Node and written inline, so the page needs no script and no network.
 */
import path from 'node:path';
import type { Report } from './schema.js';

type Spec = Record<string, unknown>;

export const PLOTS = ['single', 'k', 'tau', 'paths', 'gradients', 'contribution', 'exact'] as const;
export type PlotName = (typeof PLOTS)[number];

const W = 560;
const H = 240;

/**
 * One colour per concept on every chart: the measured model, the --compare network, downsampling
 * blocks, means over random samples, stochastic depth, the effective paths, the sampled estimate
 * beside the exact decomposition. Counts that are only
 * labels (the swap counts) take a categorical scheme that avoids these.
 */
export const COLORS = {
  model: '#4c78a8',
  compare: '#f58518',
  downsampling: '#b279a2',
  mean: '#222222',
  stochasticDepth: '#e45756',
  effective: '#54a24b',
  baseline: '#666666',
  sampled: '#9d755d',
  top5: '#72b7b2',
} as const;

/** Top-5 error as a second series (teal squares on a dashed line): models of more than 10 classes. */
function top5Layers(rows: { x: number; top5: number }[], x: string): Spec[] {
  if (!rows.length) return [];
  const enc = { x: { field: x, type: 'quantitative' }, y: { field: 'top5', type: 'quantitative' } };
  return [
    { data: { values: rows.map((r) => ({ [x]: r.x, top5: r.top5 })) }, mark: { type: 'line', strokeDash: [4, 3], color: COLORS.top5 }, encoding: enc },
    { data: { values: rows.map((r) => ({ [x]: r.x, top5: r.top5 })) }, mark: { type: 'square', size: 40, color: COLORS.top5, opacity: 1 }, encoding: enc },
  ];
}
const SWAP_COLORS = ['#1b9e77', '#d95f02', '#7570b3', '#e7298a', '#66a61e', '#e6ab02', '#a6761d', '#17becf', '#bcbd22', '#8c564b'];

/** Room (pixels) at each end of a continuous axis, so no point at the extremes is cut by the frame. */
const PAD = 10;

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

async function toSvg(spec: Spec): Promise<string> {
  const vega = await import('vega');
  const vl = await import('vega-lite');
  const full = { $schema: 'https://vega.github.io/schema/vega-lite/v5.json', width: W, height: H, config: { font: 'sans-serif', legend: { orient: 'right' } }, ...spec };
  const view = new vega.View(vega.parse(vl.compile(full as never).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

const pctAxis = { format: '.1%' };
const intAxis = { format: 'd', tickMinStep: 1 };
/** Whole-number ticks: every value when there are few, else vega's choice (whole numbers only). */
function ints(lo: number, hi: number): Spec {
  return hi - lo <= 20 ? { format: 'd', values: [...Array(Math.max(0, Math.floor(hi) - Math.ceil(lo) + 1)).keys()].map((i) => i + Math.ceil(lo)) } : intAxis;
}

function singleSpec(r: Report): Spec | null {
  const l = r.lesion;
  if (!l || !l.single.length) return null;
  const rows = l.single.map((x) => ({ unit: x.unit, error: x.error, kind: x.downsampling ? 'downsampling' : 'same shape' }));
  const errScale = { zero: false, nice: true, padding: PAD };
  const top5 = l.baseline.top5Error === undefined ? [] : l.single.filter((x) => x.top5Error !== undefined).map((x) => ({ x: x.unit, top5: x.top5Error! }));
  return {
    layer: [
      ...top5Layers(top5, 'unit'),
      {
        data: { values: [{ error: l.baseline.error }] },
        mark: { type: 'rule', strokeDash: [5, 4], color: COLORS.baseline },
        encoding: { y: { field: 'error', type: 'quantitative', scale: errScale } },
      },
      {
        data: { values: rows },
        mark: { type: 'line', color: '#999' },
        encoding: { x: { field: 'unit', type: 'quantitative', scale: { padding: PAD, nice: false } }, y: { field: 'error', type: 'quantitative', scale: errScale } },
      },
      {
        data: { values: rows },
        mark: { type: 'circle', size: 60, opacity: 1 },
        encoding: {
          x: { field: 'unit', type: 'quantitative', title: `deleted ${l.unit}`, axis: ints(0, l.units - 1), scale: { padding: PAD, nice: false } },
          y: { field: 'error', type: 'quantitative', title: 'test error', axis: pctAxis, scale: errScale },
          color: { field: 'kind', type: 'nominal', title: null, scale: { domain: ['same shape', 'downsampling'], range: [COLORS.model, COLORS.downsampling] }, legend: { orient: 'bottom' } },
        },
      },
    ],
  };
}

function kRows(l: NonNullable<Report['lesion']>, network: string) {
  const means = [{ k: 0, error: l.baseline.error, network }, ...l.k.map((x) => ({ k: x.k, error: x.mean, network }))];
  const samples = l.k.flatMap((x) => x.samples.map((s) => ({ k: x.k, error: s.error, network })));
  return { means, samples };
}

function kSpec(r: Report): Spec | null {
  const l = r.lesion;
  if (!l || !l.k.length) return null;
  const aName = `${l.network} (${path.basename(r.model.path)})`;
  const a = kRows(l, aName);
  const bName = r.compare && r.compare.k.length ? `${r.compare.network} (${path.basename(r.compare.model.path)})` : null;
  const b = r.compare && bName ? kRows(r.compare, bName) : { means: [], samples: [] };
  // The measured model first and in its colour, whatever the names sort as.
  const scale = bName ? { domain: [aName, bName], range: [COLORS.model, COLORS.compare] } : { domain: [aName], range: [COLORS.model] };
  const color = { field: 'network', type: 'nominal', title: null, scale, legend: { orient: 'bottom', labelLimit: 400 } };
  const y = { field: 'error', type: 'quantitative', scale: { zero: false, padding: PAD } };
  const top5 = l.baseline.top5Error === undefined ? [] : [{ x: 0, top5: l.baseline.top5Error }, ...l.k.map((g) => ({ x: g.k, top5: g.samples.reduce((t, s) => t + (s.top5Error ?? 0), 0) / g.samples.length }))];
  return {
    layer: [
      ...top5Layers(top5, 'k'),
      {
        data: { values: [...a.samples, ...b.samples] },
        mark: { type: 'circle', opacity: 0.35, size: 30 },
        encoding: { x: { field: 'k', type: 'quantitative', scale: { padding: PAD, nice: false } }, y, color },
      },
      {
        data: { values: [...a.means, ...b.means] },
        mark: { type: 'line', point: true },
        encoding: {
          x: { field: 'k', type: 'quantitative', title: 'blocks deleted at random (k)', axis: ints(0, Math.max(...a.means.map((m) => m.k), ...b.means.map((m) => m.k))), scale: { padding: PAD, nice: false } },
          y: { ...y, title: 'test error', axis: pctAxis },
          color,
        },
      },
    ],
  };
}

function tauSpec(r: Report): Spec | null {
  const l = r.lesion;
  if (!l || !l.reorder.length) return null;
  const ORDER = 'one random order';
  const MEAN = 'mean of a swap count';
  const samples = l.reorder.flatMap((x) => x.samples.map((s) => ({ tau: s.kendallTau, error: s.error, swaps: x.swaps, what: ORDER })));
  const means = l.reorder.map((x) => ({ tau: x.meanTau, error: x.meanError, swaps: x.swaps, what: MEAN }));
  const swaps = l.reorder.map((x) => x.swaps);
  // Each swap count its own colour (a categorical scheme: five shades of one hue read as one); the
  // means as diamonds, not a line: means of different swap counts can share a τ, and a line
  // through them in τ order jumps up and down there.
  const color = { field: 'swaps', type: 'ordinal', title: 'swaps', scale: { domain: swaps, range: swaps.map((_, i) => SWAP_COLORS[i % SWAP_COLORS.length]) }, legend: { orient: 'bottom' } };
  const shape = { field: 'what', type: 'nominal', title: null, scale: { domain: [ORDER, MEAN], range: ['circle', 'diamond'] }, legend: { orient: 'bottom', labelLimit: 300 } };
  const x = { field: 'tau', type: 'quantitative', title: "Kendall's τ of the block order", scale: { zero: false, reverse: true, padding: PAD, nice: false } };
  const y = { field: 'error', type: 'quantitative', title: 'test error', axis: pctAxis, scale: { zero: false, padding: PAD } };
  return {
    layer: [
      {
        data: { values: [{ error: l.baseline.error }] },
        mark: { type: 'rule', strokeDash: [5, 4], color: COLORS.baseline },
        encoding: { y: { field: 'error', type: 'quantitative' } },
      },
      { data: { values: samples }, mark: { type: 'point', filled: true, opacity: 0.6, size: 30 }, encoding: { x, y, color, shape } },
      { data: { values: means }, mark: { type: 'point', filled: true, opacity: 1, size: 140, stroke: COLORS.mean, strokeWidth: 1 }, encoding: { x, y, color, shape } },
    ],
  };
}

function pathsSpec(r: Report): Spec | null {
  const p = r.paths;
  if (!p) return null;
  // One bar per length, from k - 0.5 to k + 0.5, so bars fill the axis for any n.
  const rows = p.distribution.map((d) => ({ lo: d.k - 0.5, hi: d.k + 0.5, probability: d.probability }));
  const layer: Spec[] = [
    {
      data: { values: rows },
      mark: { type: 'rect', color: COLORS.model, stroke: 'white', strokeWidth: p.n > 100 ? 0 : 0.5 },
      encoding: {
        x: { field: 'lo', type: 'quantitative', title: 'path length (residual branches passed)', axis: ints(0, p.n), scale: { nice: false } },
        x2: { field: 'hi' },
        y: { field: 'probability', type: 'quantitative', title: 'share of paths', scale: { padding: PAD } },
        y2: { datum: 0 },
      },
    },
  ];
  if (p.stochasticDepth) {
    layer.push({
      data: { values: p.stochasticDepth.distribution.map((v, k) => ({ k, probability: v })) },
      mark: { type: 'line', color: COLORS.stochasticDepth, strokeWidth: 2 },
      encoding: { x: { field: 'k', type: 'quantitative' }, y: { field: 'probability', type: 'quantitative' } },
    });
  }
  return { layer };
}

/** Ticks at whole powers of ten only (vega's log axis adds 2x and 5x ticks, each with a gridline), at most about eight. */
export function decades(lo: number, hi: number): number[] {
  const a = Math.floor(Math.log10(lo));
  const b = Math.ceil(Math.log10(hi));
  const step = Math.max(1, Math.ceil((b - a) / 8));
  const out: number[] = [];
  for (let e = a; e <= b; e += step) out.push(10 ** e);
  return out;
}

function gradientSpec(r: Report): Spec | null {
  const g = r.gradients;
  if (!g) return null;
  const samples = g.samples.filter((s) => s.norm !== null && s.norm > 0).map((s) => ({ k: s.k, norm: s.norm! }));
  const means = g.meanNorm.map((m, k) => ({ k, norm: m })).filter((x) => x.norm !== null && x.norm > 0);
  if (!samples.length) return null;
  const norms = samples.map((s) => s.norm);
  const ticks = decades(Math.min(...norms), Math.max(...norms));
  const y = { field: 'norm', type: 'quantitative', scale: { type: 'log', domain: [ticks[0], ticks[ticks.length - 1]], nice: false } };
  const x = { field: 'k', type: 'quantitative', scale: { padding: PAD, nice: false } };
  const what = { field: 'what', type: 'nominal', title: null, scale: { domain: ['one sample', 'mean per length'], range: [COLORS.model, COLORS.mean] }, legend: { orient: 'bottom' } };
  return {
    layer: [
      {
        data: { values: samples.map((s) => ({ ...s, what: 'one sample' })) },
        mark: { type: 'circle', opacity: 0.4, size: 20 },
        encoding: {
          x: { ...x, title: 'path length k', axis: ints(0, g.n) },
          y: { ...y, title: 'gradient norm at the first block (log)', axis: { values: ticks, format: '.0e' } },
          color: what,
        },
      },
      {
        data: { values: means.map((m) => ({ ...m, what: 'mean per length' })) },
        mark: { type: 'line', point: true },
        encoding: { x, y, color: what },
      },
    ],
  };
}

function contributionSpec(r: Report): Spec | null {
  const g = r.gradients;
  if (!g) return null;
  const rows = g.effective.share.map((s, k) => ({ k, share: s }));
  const layer: Spec[] = [];
  const range = g.effective.range;
  if (range) {
    layer.push({
      data: { values: [{ lo: range.lo, hi: range.hi }] },
      mark: { type: 'rect', opacity: 0.15, color: COLORS.effective },
      encoding: { x: { field: 'lo', type: 'quantitative' }, x2: { field: 'hi' } },
    });
  }
  layer.push({
    data: { values: rows },
    mark: { type: 'line', point: true, color: COLORS.model },
    encoding: {
      x: { field: 'k', type: 'quantitative', title: 'path length k', axis: ints(0, g.n), scale: { padding: PAD, nice: false } },
      y: { field: 'share', type: 'quantitative', title: 'share of the total gradient (C(n,k)·E|g_k|)', axis: pctAxis, scale: { padding: PAD } },
    },
  });
  return { layer };
}

const EXACT = 'exact (every path)';
const SAMPLED = 'sampled estimate';

/**
 * The exact shares against k and, when the report also sampled path-restricted gradients, the
 * sampled shares C(n,k)·E|g_k| over the sampled lengths: both sum to 1 over k.
 */
function exactSpec(r: Report): Spec | null {
  const x = r.exact;
  if (!x) return null;
  const rows = x.exact.perLength.map((p) => ({ k: p.k, share: p.share, what: EXACT }));
  const g = r.gradients;
  const sampled = g ? g.effective.share.map((share, k) => ({ k, share, what: SAMPLED })).filter((p) => g.meanNorm[p.k] !== null && g.meanNorm[p.k] !== undefined) : [];
  const [lo, hi] = x.exact.effectiveRange;
  const domain = sampled.length ? [EXACT, SAMPLED] : [EXACT];
  const color = { field: 'what', type: 'nominal', title: null, scale: { domain, range: [COLORS.model, COLORS.sampled].slice(0, domain.length) }, legend: { orient: 'bottom', labelLimit: 300 } };
  const xEnc = { field: 'k', type: 'quantitative', title: 'path length k', axis: ints(0, x.n), scale: { padding: PAD, nice: false } };
  const y = { field: 'share', type: 'quantitative', title: 'share of the gradient', axis: pctAxis, scale: { padding: PAD } };
  return {
    layer: [
      {
        data: { values: [{ lo, hi }] },
        mark: { type: 'rect', opacity: 0.15, color: COLORS.effective },
        encoding: { x: { field: 'lo', type: 'quantitative' }, x2: { field: 'hi' } },
      },
      { data: { values: [...rows, ...sampled] }, mark: { type: 'line', point: true }, encoding: { x: xEnc, y, color } },
    ],
  };
}

/** Each plot's caption, naming only the series the report has. */
export function captions(r: Report): Record<PlotName, { title: string; missing: string }> {
  const sd = r.paths?.stochasticDepth ? ' (red line: lengths sampled in training with stochastic depth)' : '';
  const top5 = r.lesion?.baseline.top5Error !== undefined ? '; teal squares: top-5 error' : '';
  const range = r.gradients?.effective.range ? ' (green band: the effective paths)' : '';
  const x = r.exact;
  const sampled = x && r.gradients
    ? `; brown, the sampled estimate of the gradients study: C(n,k)·E|g_k| from ${r.gradients.samples.length / Math.max(1, r.gradients.ks.length)} random paths per length on random batches of ${r.gradients.batchSize}, normalised like the exact shares to sum to 1 over k`
    : '';
  const exactTitle = x
    ? `Share of the gradient carried by paths of each length: blue, exact (every path: Σ⟨G_k, G⟩ / Σ⟨G, G⟩ over ${x.exact.images} images in batches of ${x.batchSize}, summing to 1 over k)${sampled} (green band: lengths ${x.exact.effectiveRange[0]}–${x.exact.effectiveRange[1]}, the shortest range holding ${x.mass * 100}%)`
    : '';
  return {
    single: { title: `Test error when one block is deleted (dashed: the intact network${top5})`, missing: 'no single-block sweep (--no-lesion)' },
    k: { title: `Test error against the number of blocks deleted at random (k = 0: intact; line: mean, dots: each random set${top5 && '; teal squares: the mean top-5 error'})`, missing: 'no k-block sweep (--no-lesion)' },
    tau: { title: "Test error against Kendall's τ of the reordered blocks (τ = 1: original order; dashed: the intact network)", missing: 'no reordering (--no-reorder)' },
    paths: { title: `Path-length distribution of the unraveled network${sd}`, missing: 'no path distribution (--no-paths)' },
    gradients: { title: 'Gradient magnitude against path length (log scale)', missing: 'no gradients (--no-gradients)' },
    contribution: { title: `Total gradient magnitude contributed by paths of each length${range}`, missing: 'no gradients (--no-gradients)' },
    exact: { title: exactTitle || 'Exact share of the gradient by path length', missing: 'no exact decomposition (report --exact adds it)' },
  };
}

export async function renderHtml(r: Report): Promise<string> {
  const specs: Record<PlotName, Spec | null> = {
    single: singleSpec(r), k: kSpec(r), tau: tauSpec(r), paths: pathsSpec(r), gradients: gradientSpec(r), contribution: contributionSpec(r),
    exact: exactSpec(r),
  };
  const figures: string[] = [];
  const CAPTIONS = captions(r);
  for (const name of PLOTS) {
    const spec = specs[name];
    const body = spec ? await toSvg(spec) : `<p class="missing">${esc(CAPTIONS[name].missing)}</p>`;
    figures.push(`<figure id="plot-${name}" class="plot"><figcaption>${esc(CAPTIONS[name].title)}</figcaption>\n${body}\n</figure>`);
  }
  const pct = (e: number) => `${(e * 100).toFixed(2)}%`;
  const facts: [string, string][] = [
    ['model', `${r.model.path} (sha256 ${r.model.sha256.slice(0, 16)}…)`],
    ['data', `${r.data.description} (sha256 ${r.data.sha256.slice(0, 16)}…)`],
    ['versions', `reslens ${r.reslens}, onnxruntime ${r.onnxruntime}, device ${r.device}`],
    ['seeds', `lesion ${r.seeds.lesion}, gradients ${r.seeds.gradients}`],
  ];
  if (r.inspect) {
    const t = r.inspect.totals;
    facts.push(['structure', `${r.inspect.kind}, ${r.inspect.kind === 'residual' ? `${t.blocks} blocks` : `${t.layers} layers`} in ${t.stages} stages, ${t.params} parameters`]);
  }
  if (r.lesion) facts.push(['baseline error', pct(r.lesion.baseline.error)]);
  if (r.lesion?.baseline.top5Error !== undefined) facts.push(['baseline top-5 error', pct(r.lesion.baseline.top5Error)]);
  if (r.compare) facts.push(['compared with', `${r.compare.model.path}: baseline error ${pct(r.compare.baseline.error)}`]);
  const eff = r.gradients?.effective.range;
  if (eff) facts.push(['effective paths', `lengths ${eff.lo}–${eff.hi} carry ${(eff.mass * 100).toFixed(1)}% of the gradient`]);
  if (r.exact) {
    const [lo, hi] = r.exact.exact.effectiveRange;
    const held = r.exact.exact.perLength.slice(lo, hi + 1).reduce((a, p) => a + p.share, 0);
    facts.push(['exact decomposition', `lengths ${lo}–${hi} hold ${(held * 100).toFixed(1)}% of the gradient (${r.exact.exact.images} images; |Σ_k G_k − G| / |G| = ${r.exact.exact.identityError.toExponential(1)})`]);
  }
  facts.push(['time', `${r.timings.seconds.toFixed(1)} s (${Object.entries(r.timings.parts).filter(([, v]) => v !== null).map(([k, v]) => `${k} ${v!.toFixed(1)} s`).join(', ')})`]);
  for (const n of r.notes) facts.push(['note', n]);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>reslens report: ${esc(r.model.path)}</title>
<style>
body { font-family: sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; }
table.facts td { padding: 2px 12px 2px 0; vertical-align: top; }
table.facts { margin-bottom: 1.5em; }
table.facts td:first-child { color: #666; white-space: nowrap; }
.plots { display: flex; flex-wrap: wrap; gap: 24px; }
figure.plot { margin: 0; max-width: 660px; }
figcaption { font-size: 0.9em; margin-bottom: 6px; }
p.missing { color: #888; font-style: italic; height: 60px; }
</style>
</head>
<body>
<h1>reslens report</h1>
<table class="facts">
${facts.map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(v)}</td></tr>`).join('\n')}
</table>
<div class="plots">
${figures.join('\n')}
</div>
</body>
</html>
`;
}
