/**
 * The unraveled view of the current network: path lengths for n = blocks left (Binomial(n, 1/2)),
 * the lengths stochastic depth samples in training when survival probabilities are known, the
 * exact share of the gradient carried by each length in the network as it stands, and, once
 * measured, the sampled gradient magnitude of the intact network against path length.
 */
import { Box, Text } from 'ink';
import { pathLengthDistribution, poissonBinomial, shortestRange, summarize } from '../../paths/distribution.js';
import { formatCount } from '../../paths/render.js';
import { cut, histogramChart, pointChart, sideBySide } from './charts.js';
import { Spinner } from './Spinner.js';
import { currentKey, keptBlocks, keptSurvival, type ExploreState } from './state.js';

interface Line {
  text: string;
  style?: 'title' | 'dim' | 'chart';
}

const lenRange = (lo: number, hi: number) => (lo === hi ? `${lo}` : `${lo}–${hi}`);

function distributionTitle(label: string, probability: number[]): string {
  const s = summarize(probability);
  const r = shortestRange(probability, 0.95);
  return `${label}: mean ${s.mean.toFixed(2)}, sd ${s.sd.toFixed(2)}; 95% in lengths ${lenRange(r.lo, r.hi)}`;
}

/** Share of the gradient the exact effective range holds (as reslens gradients --exact's default). */
const EXACT_MASS = 0.9;

/**
 * The exact shares of the current network: its own once computed, else (while they are
 * computed) the last ones computed, labelled with their network.
 */
function exactChart(state: ExploreState, width: number, h: number): { title: string; chart: string[] } {
  const key = currentKey(state);
  const failed = state.exactFailed?.key === key ? state.exactFailed.message : null;
  const own = state.exact[key];
  const last = state.exactLast !== null ? state.exact[state.exactLast] : undefined;
  const x = own ?? last;
  const status = own ? '' : failed ? `failed: ${failed}` : state.exactRunning === key ? 'computing…' : '';
  if (!x) return { title: `exact gradient share by path length: ${status || 'not computed'}`, chart: Array(h + 2).fill('') };
  const [lo, hi] = x.effectiveRange;
  const held = x.share.slice(lo, hi + 1).reduce((a, v) => a + v, 0);
  const peak = x.share.reduce((a, v, k) => (v > x.share[a]! ? k : a), 0);
  const of = own ? '' : `, shown for ${state.exactLast ? `blocks ${state.exactLast} deleted` : 'the intact network'}`;
  // What the user waits for first, so a narrow terminal cuts the numbers rather than the state.
  const title = `exact gradient share by path length k = 0–${x.n} (${x.images} images${of}${status ? `; ${status}` : ''}): ${lenRange(lo, hi)} hold ${(held * 100).toFixed(0)}%, peak k = ${peak} (${(x.share[peak]! * 100).toFixed(1)}%)`;
  // Shares are projections on G: a length can carry a little against it; those bars are drawn empty.
  return { title, chart: histogramChart(x.share.map((v) => Math.max(0, v)), width, h, EXACT_MASS) };
}

/** The paths view as lines of text (at most `height`, each at most `width` columns). */
export function pathsLines(state: ExploreState, width: number, height: number): Line[] {
  const n = keptBlocks(state).length;
  const dist = pathLengthDistribution(n);
  const survival = keptSurvival(state);
  const sd = survival ? poissonBinomial(survival) : null;
  const g = state.gradients;
  const job = state.jobs.gradients;
  const wide = width >= 120;
  // The charts of the current network: path lengths, stochastic depth's lengths, the exact
  // shares; two to a row on a wide terminal. Each row costs a title line and two axis lines
  // besides its bars.
  const charts = sd ? 3 : 2;
  const perRow = wide ? 2 : 1;
  const rows = Math.ceil(charts / perRow);
  const chartRows = rows + (g ? 1 : 0);
  const fixed = chartRows * 3 + 1;
  // Bars as tall as the view allows: a tall terminal gets taller charts, not empty rows.
  const h = Math.max(2, Math.floor((height - fixed) / chartRows));
  const col = perRow === 2 ? Math.floor(width / 2) - 1 : width;
  const out: Line[] = [];
  const deleted = state.deleted.length ? ` (${state.info.blocks.length} − ${state.deleted.length} deleted)` : '';
  const blocks: { title: string; chart: string[] }[] = [
    { title: distributionTitle(`n = ${n}${deleted}, 2^${n} = ${formatCount(dist.total, 12)} paths`, dist.probability), chart: histogramChart(dist.probability, col, h) },
  ];
  if (sd) blocks.push({ title: distributionTitle('stochastic depth, lengths sampled in training', sd), chart: histogramChart(sd, col, h) });
  blocks.push(exactChart(state, col, h));
  for (let i = 0; i < blocks.length; i += perRow) {
    const row = blocks.slice(i, i + perRow);
    out.push({ text: sideBySide(row.map((b) => ({ lines: [cut(b.title, col)], width: col })))[0]!, style: 'title' });
    for (const l of sideBySide(row.map((b) => ({ lines: b.chart, width: col })))) out.push({ text: l, style: 'chart' });
  }
  const total = state.info.blocks.length;
  if (!g) {
    const what = job.status === 'running' ? (job.total ? `${job.done}/${job.total} samples, g cancels` : 'preparing, g cancels')
      : job.status === 'failed' ? `failed: ${job.message ?? ''}` : state.view === 'paths' ? 'press g to measure (5 samples per k)' : 'press 2, then g, to measure';
    out.push({ text: cut(`gradient per path length (intact, n = ${total}): ${what}`, width), style: 'dim' });
  } else {
    const head = `gradient vs path length k (intact, ${g.samplesPerK} per k)`;
    const eff = g.effective ? `lengths ${lenRange(g.effective.lo, g.effective.hi)} carry ${(g.effective.mass * 100).toFixed(0)}% of it, ${((g.pathShare ?? 0) * 100).toPrecision(2)}% of paths` : '';
    const factor = g.factorPerBlock !== null ? `|g| ×${g.factorPerBlock.toFixed(2)} per block` : '';
    const run = job.status === 'running' ? `more: ${job.done}/${job.total}` : 'g adds samples';
    // Narrow screens keep the effective range first, then the decay factor.
    const variants = [[factor, eff, run], [factor, eff], [eff], []].map((parts) => [head, parts.filter(Boolean).join('; ')].filter(Boolean).join(': '));
    out.push({ text: cut(variants.find((v) => [...v].length <= width) ?? variants[variants.length - 1]!, width), style: 'title' });
    const half = Math.floor((width - 2) / 2);
    const xs = [...Array(g.n + 1).keys()];
    const logs = g.meanNorm.map((m) => (m !== null && m > 0 ? Math.log10(m) : null));
    const left = ['log10 mean |g| of a path of length k', ...pointChart([{ glyph: '●', values: logs }], { width: half, height: h, xs, format: (v) => v.toFixed(1) })];
    const right = ['share of all gradient, C(n,k)·|g_k|', ...histogramChart(g.share, half, h, 0.9)];
    for (const l of sideBySide([{ lines: left, width: half }, { lines: right, width: half }])) out.push({ text: l, style: 'chart' });
  }
  return out.slice(0, height);
}

export function PathsView({ state, width, height }: { state: ExploreState; width: number; height: number }) {
  const lines = pathsLines(state, width, height);
  const running = state.jobs.gradients.status === 'running';
  return (
    <Box flexDirection="column" width={width} height={height}>
      {lines.map((l, i) => (
        <Text key={i} wrap="truncate" bold={l.style === 'title'} dimColor={l.style === 'dim'} color={l.style === 'chart' ? 'cyan' : undefined}>
          {running && i === lines.length - 1 && l.style === 'dim' ? <Spinner /> : null}
          {running && i === lines.length - 1 && l.style === 'dim' ? ' ' : ''}
          {l.text || ' '}
        </Text>
      ))}
    </Box>
  );
}
