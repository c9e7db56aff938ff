/**
 * Plain-text rendering of path-length distributions for the terminal (no Ink): a vertical
 * bar histogram in unicode block characters and a compact table. Every line fits in
 * opts.width columns; with color off the output holds no ANSI escape at all.
 */
import Table from 'cli-table3';
import { shortestRange, summarize } from './distribution.js';

/** What the histogram needs; a PathLengthDistribution fits, and so does a stochastic-depth one. */
export interface LengthDistributionInput {
  n: number;
  /** probability[k] for k = 0..n. */
  probability: number[];
  /** Exact path counts C(n, k), when the distribution counts paths (the unraveled view). */
  counts?: bigint[];
  /** Number of paths, 2^n. */
  total?: bigint;
}

export interface HistogramOptions {
  /** Terminal columns; no line of the output is wider. Default 80. */
  width?: number;
  /** Rows of the bar chart. Default 10. */
  height?: number;
  /** ANSI colours; default false. */
  color?: boolean;
  /** Mass of the highlighted shortest range of lengths (the paper's "95% of paths"). Default 0.95. */
  mass?: number;
  /** First line; default describes the unraveled view. */
  title?: string;
  /** Widest column one length's bar may take (gap included). Default 4; explore widens it to fill a wide terminal. */
  maxCell?: number;
}

/** At most this many table rows; longer tables group lengths. */
const MAX_ROWS = 40;
/** Histogram and table show the shortest range holding this mass when all lengths do not fit. */
const SHOWN_MASS = 0.999;
/** Counts longer than this many digits are abbreviated. */
const MAX_COUNT_DIGITS = 20;
const BLOCKS = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
const ANSI = /\x1b\[[0-9;]*m/g;
const CYAN = '\x1b[36m';
const DIM = '\x1b[2m';
const RESET = '\x1b[0m';

/** Visible width: ANSI codes take none, and every character used here takes one column. */
export function visibleWidth(s: string): number {
  return [...s.replace(ANSI, '')].length;
}

/** Exact count as digits, or like 2.7e299 when longer than 20 digits. */
export function formatCount(c: bigint, maxDigits = MAX_COUNT_DIGITS): string {
  const s = c.toString();
  if (s.length <= maxDigits) return s;
  let lead = Math.round(Number(s.slice(0, 3)) / 10); // two significant digits
  let exp = s.length - 1;
  if (lead >= 100) { lead = 10; exp += 1; }
  return `${Math.floor(lead / 10)}.${lead % 10}e${exp}`;
}

/** A share as a percentage: two decimals, or two significant digits for tiny shares. */
export function formatPercent(x: number): string {
  if (x === 0) return '0%';
  const p = x * 100;
  if (p >= 0.01) return `${p.toFixed(2)}%`;
  return `${p.toExponential(1)}%`;
}

/** Short label for the y axis (at most 6 characters). */
function axisPercent(x: number): string {
  const p = x * 100;
  if (p === 0) return '0%';
  if (p >= 10) return `${p.toFixed(1)}%`;
  if (p >= 1) return `${p.toFixed(2)}%`;
  if (p >= 0.1) return `${p.toFixed(3)}%`;
  return `${p.toExponential(0)}%`;
}

/** A requested mass like 95% or 99.9% (no trailing zeros). */
function massLabel(mass: number): string {
  return `${+(mass * 100).toFixed(3)}%`;
}

function span(lo: number, hi: number): string {
  return lo === hi ? `${lo}` : `${lo}–${hi}`;
}

/** Word-wrap plain text to width (words longer than width are cut). */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    let w = word;
    while ([...w].length > width) {
      if (line) { lines.push(line); line = ''; }
      lines.push([...w].slice(0, width).join(''));
      w = [...w].slice(width).join('');
    }
    if (!w) continue;
    if (!line) line = w;
    else if (visibleWidth(line) + 1 + [...w].length <= width) line += ` ${w}`;
    else { lines.push(line); line = w; }
  }
  if (line) lines.push(line);
  return lines;
}

/** Last resort for pathological widths: cut a line to width (dropping colour if cutting). */
function clip(line: string, width: number): string {
  if (visibleWidth(line) <= width) return line;
  return [...line.replace(ANSI, '')].slice(0, width).join('');
}

/** The lengths shown: all of them when they fit, else the shortest range holding 99.9%. */
function shownRange(probability: number[], fits: number): { lo: number; hi: number; all: boolean } {
  if (probability.length <= fits) return { lo: 0, hi: probability.length - 1, all: true };
  const r = shortestRange(probability, SHOWN_MASS);
  return { lo: r.lo, hi: r.hi, all: false };
}

/** Smallest 1-2-5 step ≥ min. */
function niceStep(min: number): number {
  for (let p = 1; ; p *= 10) for (const m of [1, 2, 5]) if (m * p >= min) return m * p;
}

interface BarsLayout {
  lines: string[];
  lo: number;
  hi: number;
  all: boolean;
  /** Lengths per bar. */
  bucket: number;
}

function bars(probability: number[], highlight: { lo: number; hi: number }, width: number, height: number, color: boolean, maxCell = 4): BarsLayout {
  const gutter = 8; // "100.0% ┤"
  const plotWidth = Math.max(1, width - gutter);
  // Same rule as the table: all lengths when few, else the bulk (tails would be empty space).
  const { lo, hi, all } = shownRange(probability, Math.min(MAX_ROWS, plotWidth));
  const nLengths = hi - lo + 1;
  const bucket = Math.ceil(nLengths / plotWidth);
  const nBars = Math.ceil(nLengths / bucket);
  // Few lengths: wider bars (with a one-column gap) read better than hairlines.
  const cell = bucket === 1 ? Math.max(1, Math.min(maxCell, Math.floor(plotWidth / nBars))) : 1;
  const barWidth = cell > 1 ? cell - 1 : 1;
  const values: number[] = [];
  const inRange: boolean[] = [];
  for (let b = 0; b < nBars; b++) {
    const k0 = lo + b * bucket;
    const k1 = Math.min(hi, k0 + bucket - 1);
    let v = 0;
    for (let k = k0; k <= k1; k++) v += probability[k]!;
    values.push(v);
    inRange.push(k1 >= highlight.lo && k0 <= highlight.hi);
  }
  const max = Math.max(...values);
  const eighths = values.map((v) => (max > 0 ? Math.round((v / max) * height * 8) : 0));
  const lines: string[] = [];
  for (let row = 0; row < height; row++) {
    const level = height - 1 - row; // 0 = bottom row
    let label = '';
    if (row === 0) label = axisPercent(max);
    else if (level === 0) label = '0%';
    else if (height >= 6 && level === Math.floor(height / 2)) label = axisPercent((max * level) / height);
    let line = `${label.padStart(gutter - 2)} ${label ? '┤' : '│'}`;
    let current = '';
    for (let b = 0; b < nBars; b++) {
      const e = eighths[b]! - level * 8;
      const ch = BLOCKS[Math.max(0, Math.min(8, e))]!;
      const cellText = ch.repeat(barWidth) + ' '.repeat(cell - barWidth);
      if (color) {
        const want = ch === ' ' ? '' : inRange[b] ? CYAN : DIM;
        if (want !== current) { line += (current ? RESET : '') + want; current = want; }
      }
      line += cellText;
    }
    line = line.replace(/ +$/, '');
    if (current) line += RESET;
    lines.push(line);
  }
  // x axis with ticks at multiples of a 1-2-5 step, labels left-aligned on their tick.
  const labelWidth = String(hi).length;
  const step = niceStep(Math.ceil(((labelWidth + 1) * bucket) / cell));
  const axis = [...'─'.repeat(nBars * cell)];
  let ticks = '';
  for (let m = Math.ceil(lo / step) * step; m <= hi; m += step) {
    const col = Math.floor((m - lo) / bucket) * cell;
    const text = String(m);
    if (col < ticks.length + (ticks.length ? 1 : 0) || col + text.length > plotWidth) continue;
    ticks = ticks.padEnd(col) + text;
    axis[col] = '┬';
  }
  lines.push(`${' '.repeat(gutter - 1)}└${axis.join('')}`);
  lines.push(`${' '.repeat(gutter)}${ticks}`);
  return { lines, lo, hi, all, bucket };
}

interface Row {
  lo: number;
  hi: number;
  count?: bigint;
  share: number;
}

/** Table rows: one per length, or the 99.9% range (grouped if long) plus the two tails. */
function tableRows(dist: LengthDistributionInput): { rows: Row[]; note: string | null } {
  const { probability, counts } = dist;
  const make = (lo: number, hi: number): Row => {
    let share = 0;
    let count = counts ? 0n : undefined;
    for (let k = lo; k <= hi; k++) {
      share += probability[k]!;
      if (counts) count! += counts[k]!;
    }
    return { lo, hi, count, share };
  };
  if (probability.length <= MAX_ROWS) return { rows: probability.map((_, k) => make(k, k)), note: null };
  const r = shortestRange(probability, SHOWN_MASS);
  const rows: Row[] = [];
  const tails = (r.lo > 0 ? 1 : 0) + (r.hi < probability.length - 1 ? 1 : 0);
  const bucket = Math.ceil((r.hi - r.lo + 1) / (MAX_ROWS - tails));
  if (r.lo > 0) rows.push(make(0, r.lo - 1));
  for (let k = r.lo; k <= r.hi; k += bucket) rows.push(make(k, Math.min(r.hi, k + bucket - 1)));
  if (r.hi < probability.length - 1) rows.push(make(r.hi + 1, probability.length - 1));
  const outside = 1 - r.mass;
  let note = `Lengths ${span(r.lo, r.hi)} hold ${formatPercent(r.mass)} of paths; the ${formatPercent(outside)} outside are grouped into the first and last rows.`;
  if (bucket > 1) note += ` Each row in between covers ${bucket} lengths.`;
  return { rows, note };
}

function renderTable(dist: LengthDistributionInput, rows: Row[], color: boolean, width: number): string[] {
  const withCounts = dist.counts !== undefined;
  const attempt = (countDigits: number, borders: boolean): string[] => {
    const head = borders
      ? (withCounts ? ['length k', 'paths', 'share', 'cumulative'] : ['length k', 'share', 'cumulative'])
      : (withCounts ? ['k', 'paths', 'share', 'cum.'] : ['k', 'share', 'cum.']);
    const table = new Table({
      head,
      colAligns: withCounts ? ['right', 'right', 'right', 'right'] : ['right', 'right', 'right'],
      style: { head: color ? ['cyan'] : [], border: color ? ['grey'] : [], compact: true, 'padding-left': borders ? 1 : 0, 'padding-right': 1 },
      ...(borders ? {} : {
        chars: {
          top: '', 'top-mid': '', 'top-left': '', 'top-right': '', bottom: '', 'bottom-mid': '', 'bottom-left': '',
          'bottom-right': '', left: '', 'left-mid': '', mid: '', 'mid-mid': '', right: '', 'right-mid': '', middle: ' ',
        },
      }),
    });
    let cumulative = 0;
    rows.forEach((row, i) => {
      cumulative += row.share;
      // Float sums of the last rows land a hair under 100%; say so rather than print 100.00%.
      const cum = i === rows.length - 1 ? '100.00%' : cumulative >= 0.99995 ? '>99.99%' : formatPercent(cumulative);
      const cells = [span(row.lo, row.hi)];
      if (withCounts) cells.push(formatCount(row.count!, countDigits));
      cells.push(formatPercent(row.share), cum);
      table.push(cells);
    });
    return table.toString().split('\n').map((l) => l.replace(/ +$/, '')).filter((l) => l.replace(ANSI, '').trim() !== '');
  };
  // Narrow terminals: abbreviate counts harder, then drop the borders.
  for (const [digits, borders] of [[MAX_COUNT_DIGITS, true], [7, true], [7, false]] as const) {
    const lines = attempt(digits, borders);
    if (lines.every((l) => visibleWidth(l) <= width) || !borders) return lines;
  }
  return [];
}

/**
 * The path-length distribution as text: a header, a bar histogram of probability against
 * length k with the shortest range holding `mass` highlighted, and a table of k, exact
 * count, share and cumulative share. No line is wider than opts.width.
 */
export function renderPathHistogram(dist: LengthDistributionInput, opts: HistogramOptions = {}): string {
  const width = Math.max(1, Math.floor(opts.width ?? 80));
  const height = Math.max(1, Math.floor(opts.height ?? 10));
  const color = opts.color ?? false;
  const mass = opts.mass ?? 0.95;
  if (dist.probability.length !== dist.n + 1) throw new RangeError(`expected ${dist.n + 1} probabilities for n = ${dist.n}, got ${dist.probability.length}`);
  const total = dist.total ?? (dist.counts ? 1n << BigInt(dist.n) : undefined);
  const title = opts.title
    ?? (total !== undefined
      ? `Path lengths of the unraveled view: n = ${dist.n} blocks, 2^${dist.n} = ${formatCount(total)} paths`
      : `Path lengths: n = ${dist.n} blocks`);
  const { mean, sd, mode } = summarize(dist.probability);
  const range = shortestRange(dist.probability, mass);
  const what = total !== undefined ? 'of paths' : 'of probability';
  const out: string[] = [];
  out.push(...wrap(title, width));
  out.push(...wrap(`mean ${mean.toFixed(2)}, sd ${sd.toFixed(2)}, mode ${mode}; shortest range holding ${massLabel(mass)} ${what}: lengths ${span(range.lo, range.hi)} (${formatPercent(range.mass)}).`, width));
  out.push('');
  const chart = bars(dist.probability, range, width, height, color, opts.maxCell);
  out.push(...chart.lines);
  let caption = 'path length k (residual branches passed)';
  if (!chart.all) caption += `; lengths ${span(chart.lo, chart.hi)} shown (the shortest range holding ${massLabel(SHOWN_MASS)} ${what})`;
  if (chart.bucket > 1) caption += `; each bar sums ${chart.bucket} lengths`;
  out.push(...wrap(caption, width).map((l) => (color ? `${DIM}${l}${RESET}` : l)));
  out.push('');
  const { rows, note } = tableRows(dist);
  out.push(...renderTable(dist, rows, color, width));
  if (note) out.push(...wrap(note, width));
  return out.map((l) => clip(l, width)).join('\n');
}
