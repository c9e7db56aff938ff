/**
 * Text pictures for explore's views, as plain lines that fit a given width and height:
 * horizontal bars, the path-length histogram (from paths/render.ts) and a small chart of
 * points with min-max bars. No ANSI codes: the components colour whole lines.
 */
import { renderPathHistogram } from '../../paths/render.js';

const EIGHTHS = ['', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];

/** A bar of `fraction` (0..1) of `width` columns, in eighths of a column. */
export function hbar(fraction: number, width: number): string {
  const f = Math.max(0, Math.min(1, Number.isFinite(fraction) ? fraction : 0));
  const eighths = Math.round(f * width * 8);
  const full = Math.floor(eighths / 8);
  return ('█'.repeat(full) + EIGHTHS[eighths % 8]!).slice(0, Math.max(0, width));
}

/** Cuts or pads a line to exactly `width` columns. */
export function fit(line: string, width: number): string {
  const chars = [...line];
  if (chars.length > width) return width > 1 ? chars.slice(0, width - 1).join('') + '…' : chars.slice(0, width).join('');
  return line + ' '.repeat(width - chars.length);
}

export function cut(line: string, width: number): string {
  const chars = [...line];
  return chars.length > width ? (width > 1 ? chars.slice(0, width - 1).join('') + '…' : chars.slice(0, width).join('')) : line;
}

/**
 * The bar chart of a distribution over lengths k = 0..n, as drawn by `reslens paths`
 * (the shortest range holding `mass` is the one coloured there): `height` rows of bars
 * plus the axis and its labels.
 */
export function histogramChart(probability: number[], width: number, height: number, mass = 0.95): string[] {
  // Bars widen with the room, so a wide terminal is filled (reslens paths keeps its narrow bars).
  const text = renderPathHistogram({ n: probability.length - 1, probability }, { width, height, color: false, mass, title: '-', maxCell: 24 });
  const lines = text.split('\n');
  const start = lines.indexOf('') + 1;
  return lines.slice(start, start + height + 2);
}

export interface PointSeries {
  glyph: string;
  /** One value per x position (null: none). */
  values: (number | null)[];
  /** Vertical min-max bars drawn behind the points. */
  range?: ({ lo: number; hi: number } | null)[];
  /** Horizontal offset within an x cell, so series side by side stay apart. */
  offset?: number;
}

export interface PointChartOptions {
  width: number;
  height: number;
  /** Labels of the x positions. */
  xs: number[];
  format: (v: number) => string;
  min?: number;
  max?: number;
  /** What the values can be at all (errors: 0 and 1): a flat series is padded within these. */
  floor?: number;
  ceil?: number;
}

/**
 * Points over discrete x positions with optional min-max bars: the ensemble curve and the
 * gradient magnitude against path length. Returns `height` rows plus axis and labels.
 */
export function pointChart(series: PointSeries[], o: PointChartOptions): string[] {
  const all: number[] = [];
  for (const s of series) {
    for (const v of s.values) if (v !== null && Number.isFinite(v)) all.push(v);
    for (const r of s.range ?? []) if (r) all.push(r.lo, r.hi);
  }
  let lo = o.min ?? (all.length ? Math.min(...all) : 0);
  let hi = o.max ?? (all.length ? Math.max(...all) : 1);
  if (hi - lo < 1e-12) {
    // Flat: half a unit each way, but never past what the values can be (no error of 150%).
    hi = Math.min(hi + 0.5, o.ceil ?? Infinity);
    lo = Math.max(lo - 0.5, o.floor ?? -Infinity);
    if (hi - lo < 1e-12) hi = lo + 1;
  }
  const height = Math.max(2, o.height);
  const labels = [o.format(hi), o.format((hi + lo) / 2), o.format(lo)];
  const gutter = Math.max(...labels.map((l) => l.length)) + 2;
  const plotWidth = Math.max(o.xs.length, o.width - gutter);
  const cell = Math.max(1, Math.floor(plotWidth / Math.max(1, o.xs.length)));
  const cols = cell * o.xs.length;
  const grid: string[][] = Array.from({ length: height }, () => Array(cols).fill(' '));
  const row = (v: number) => Math.round(((hi - v) / (hi - lo)) * (height - 1));
  const center = (i: number, off = 0) => Math.min(cols - 1, i * cell + Math.floor((cell - 1) / 2) + off);
  for (const s of series) {
    s.range?.forEach((r, i) => {
      if (!r) return;
      const c = center(i, s.offset);
      const [top, bottom] = [row(r.hi), row(r.lo)];
      for (let y = top; y <= bottom; y++) grid[y]![c] = top === bottom ? '─' : y === top ? '┬' : y === bottom ? '┴' : '│';
    });
  }
  for (const s of series) {
    s.values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) return;
      grid[row(v)]![center(i, s.offset)] = s.glyph;
    });
  }
  const mid = Math.floor((height - 1) / 2);
  const out = grid.map((cells, y) => {
    const label = y === 0 ? labels[0]! : y === height - 1 ? labels[2]! : y === mid ? labels[1]! : '';
    return `${label.padStart(gutter - 2)} ${label ? '┤' : '│'}${cells.join('')}`.replace(/ +$/, '');
  });
  const axis = [...'─'.repeat(cols)];
  let ticks = '';
  const step = Math.max(1, Math.ceil((String(o.xs[o.xs.length - 1] ?? 0).length + 1) / cell));
  o.xs.forEach((x, i) => {
    if (i % step) return;
    const c = center(i);
    const t = String(x);
    if (c < ticks.length + (ticks.length ? 1 : 0) || c + t.length > cols + 1) return;
    ticks = ticks.padEnd(c) + t;
    axis[c] = '┬';
  });
  out.push(`${' '.repeat(gutter - 1)}└${axis.join('')}`);
  out.push(`${' '.repeat(gutter)}${ticks}`);
  return out;
}

/** Places blocks of lines side by side, each padded to its width, separated by `gap` spaces. */
export function sideBySide(blocks: { lines: string[]; width: number }[], gap = 2): string[] {
  const h = Math.max(0, ...blocks.map((b) => b.lines.length));
  const out: string[] = [];
  for (let y = 0; y < h; y++) {
    out.push(blocks.map((b, i) => (i === blocks.length - 1 ? cut(b.lines[y] ?? '', b.width) : fit(b.lines[y] ?? '', b.width))).join(' '.repeat(gap)).replace(/ +$/, ''));
  }
  return out;
}

export function pct(e: number, digits = 2): string {
  return `${(e * 100).toFixed(digits)}%`;
}

export function signedPts(d: number, digits = 2): string {
  return `${d >= 0 ? '+' : '−'}${Math.abs(d * 100).toFixed(digits)}`;
}
