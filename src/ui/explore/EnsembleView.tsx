/**
 * Error against the number of deleted blocks: mean and min-max over random sets per k, with
 * the plain network's curve when --compare is given, and the current configuration marked.
 */
import { Box, Text } from 'ink';
import { cut, pct, pointChart, sideBySide, type PointSeries } from './charts.js';
import { currentMeasurement, type EnsemblePoint, type ExploreState, type Job } from './state.js';

interface Line {
  text: string;
  style?: 'title' | 'dim' | 'chart';
}

function jobText(job: Job): string {
  if (job.status === 'running') return `measuring in the background, ${job.total ? Math.round((job.done / job.total) * 100) : 0}%`;
  if (job.status === 'failed') return `failed: ${job.message ?? ''}`;
  if (job.status === 'cancelled') return 'cancelled';
  return 'waiting';
}

export function ensembleLines(state: ExploreState, width: number, height: number): Line[] {
  const { info } = state;
  const main = state.ensemble;
  const cmp = state.compareEnsemble;
  const out: Line[] = [];
  const samples = main?.[1]?.samples ?? 3;
  out.push({ text: cut(`error against the number k of deleted blocks (${samples} random sets per k; downsampling blocks stay)`, width), style: 'title' });
  if (!main && !cmp) {
    out.push({ text: cut(`${info.model.name}: ${jobText(state.jobs.ensemble)}`, width), style: 'dim' });
    if (info.compare) out.push({ text: cut(`${info.compare}: ${jobText(state.jobs.compare)}`, width), style: 'dim' });
    return out;
  }
  const kMax = Math.max(main?.[main.length - 1]?.k ?? 0, cmp?.[cmp.length - 1]?.k ?? 0);
  const xs = [...Array(kMax + 1).keys()];
  const at = (pts: EnsemblePoint[] | null) => xs.map((k) => pts?.find((p) => p.k === k) ?? null);
  const mainAt = at(main);
  const cmpAt = at(cmp);
  const cur = currentMeasurement(state);
  const k = state.deleted.length;
  const series: PointSeries[] = [];
  if (main) series.push({ glyph: '●', values: mainAt.map((p) => p?.mean ?? null), range: mainAt.map((p) => (p ? { lo: p.min, hi: p.max } : null)) });
  if (cmp) series.push({ glyph: '○', values: cmpAt.map((p) => p?.mean ?? null), range: cmpAt.map((p) => (p ? { lo: p.min, hi: p.max } : null)), offset: 1 });
  if (cur && k <= kMax) series.push({ glyph: '◆', values: xs.map((x) => (x === k ? cur.error : null)), offset: -1 });
  const legend = [main ? `● ${info.model.name} mean, ┬┴ min–max` : `${info.model.name}: ${jobText(state.jobs.ensemble)}`];
  if (info.compare) legend.push(cmp ? `○ ${info.compare}` : `${info.compare}: ${jobText(state.jobs.compare)}`);
  legend.push(cur ? `◆ now (k = ${k}, ${pct(cur.error, 1)})` : `◆ now (k = ${k})`);
  out.push({ text: cut(legend.join('   '), width), style: 'dim' });
  // The table beside the chart, when there is room for both.
  const tableWidth = width >= 60 ? Math.min(44, 16 + (info.compare ? 11 : 0) + 12) : 0;
  const chartWidth = width - (tableWidth ? tableWidth + 2 : 0);
  const chartHeight = Math.max(3, Math.min(16, height - out.length - 2));
  const chart = pointChart(series, { width: chartWidth, height: chartHeight, xs, format: (v) => pct(v, 1) });
  const table: string[] = [];
  if (tableWidth) {
    const name = cut(info.compare ?? '', 10);
    table.push(`${'k'.padStart(3)} ${'mean'.padStart(7)} ${'min–max'.padStart(15)}${info.compare ? ` ${name.padStart(10)}` : ''}`);
    for (const x of xs) {
      const p = mainAt[x];
      const c = cmpAt[x];
      table.push(`${String(x).padStart(3)} ${(p ? pct(p.mean, 1) : '…').padStart(7)} ${(p ? `${pct(p.min, 1)}–${pct(p.max, 1)}` : '').padStart(15)}${info.compare ? ` ${(c ? pct(c.mean, 1) : '…').padStart(10)}` : ''}`);
    }
  }
  // The table right after the chart as drawn (its cells stop growing on wide terminals).
  const drawn = Math.min(chartWidth, Math.max(...chart.map((l) => [...l].length)));
  for (const l of sideBySide(tableWidth ? [{ lines: chart, width: drawn }, { lines: table, width: tableWidth }] : [{ lines: chart, width: drawn }], 3)) out.push({ text: l, style: 'chart' });
  return out.slice(0, height);
}

export function EnsembleView({ state, width, height }: { state: ExploreState; width: number; height: number }) {
  const lines = ensembleLines(state, width, height);
  return (
    <Box flexDirection="column" width={width} height={height}>
      {lines.map((l, i) => (
        <Text key={i} wrap="truncate" bold={l.style === 'title'} dimColor={l.style === 'dim'}>
          {l.text || ' '}
        </Text>
      ))}
    </Box>
  );
}
