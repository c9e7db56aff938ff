/**
 * Error against the number of deleted blocks: mean and min-max over random sets per k, with
 * the plain network's curve when --compare is given, and the current configuration marked;
 * beside it a table with each k's mean, standard deviation and min-max.
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

/** The table's rows: k, mean, ±sd, min–max (and the --compare network's mean). */
export function ensembleTable(main: (EnsemblePoint | null)[], cmp: (EnsemblePoint | null)[] | null, compareName: string | null): string[] {
  const name = cut(compareName ?? '', 10);
  const out = [`${'k'.padStart(3)} ${'mean'.padStart(7)} ${'±sd'.padStart(6)} ${'min–max'.padStart(13)}${compareName ? ` ${name.padStart(10)}` : ''}`];
  main.forEach((p, x) => {
    const c = cmp?.[x] ?? null;
    const spread = p && p.samples > 1 ? [`±${(p.sd * 100).toFixed(1)}`, `${(p.min * 100).toFixed(1)}–${(p.max * 100).toFixed(1)}`] : ['', ''];
    out.push(`${String(x).padStart(3)} ${(p ? pct(p.mean, 1) : '…').padStart(7)} ${spread[0]!.padStart(6)} ${spread[1]!.padStart(13)}${compareName ? ` ${(c ? pct(c.mean, 1) : '…').padStart(10)}` : ''}`);
  });
  return out;
}

export function ensembleLines(state: ExploreState, width: number, height: number): Line[] {
  const { info } = state;
  const main = state.ensemble;
  const cmp = state.compareEnsemble;
  const out: Line[] = [];
  const samples = main?.[1]?.samples;
  out.push({ text: cut(`error against the number k of deleted blocks (${samples ? `${samples} random sets per k` : 'random sets per k'}; downsampling blocks stay)`, width), style: 'title' });
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
  // The table beside the chart when there is room for both; the chart takes the rest, in both directions.
  const table = ensembleTable(mainAt, cmp ? cmpAt : null, info.compare);
  const tableWidth = Math.max(...table.map((l) => [...l].length));
  const withTable = width - tableWidth - 3 >= 30;
  const chartWidth = withTable ? width - tableWidth - 3 : width;
  const chartHeight = Math.max(3, height - out.length - 2);
  const chart = pointChart(series, { width: chartWidth, height: chartHeight, xs, format: (v) => pct(v, 1), floor: 0, ceil: 1 });
  // The table right after the chart as drawn.
  const drawn = Math.min(chartWidth, Math.max(...chart.map((l) => [...l].length)));
  const blocks = withTable ? [{ lines: chart, width: drawn }, { lines: table, width: tableWidth }] : [{ lines: chart, width: drawn }];
  for (const l of sideBySide(blocks, 3)) out.push({ text: l, style: 'chart' });
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
