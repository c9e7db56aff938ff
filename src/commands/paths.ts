/** reslens paths: the unraveled view, path-length distributions (exact) of a model or of n blocks. */
import type { Command } from 'commander';
import { Option } from 'commander';
import { parseBlockList } from '../blocklist.js';
import { openNetwork } from '../engine/network.js';
import { UserError } from '../errors.js';
import { linearDecaySurvival, pathLengthDistribution, poissonBinomial, rangeMass, shortestRange, summarize } from '../paths/distribution.js';
import { renderPathHistogram } from '../paths/render.js';
import { addJsonOptions, addRuntimeOptions, positiveInt, withRuntime } from './common.js';
import { emitJson, useColor } from './output.js';

export interface PathsReport {
  n: number;
  source: string;
  deleted: number[];
  distribution: { k: number; count: string; probability: number }[];
  totalPaths: string;
  summary: { mean: number; sd: number; mode: number };
  shortestRanges: { mass: number; lo: number; hi: number; held: number }[];
  ranges: { lo: number; hi: number; mass: number }[];
  stochasticDepth: null | { survival: number[]; source: string; distribution: number[]; summary: { mean: number; sd: number; mode: number }; shortestRange95: { lo: number; hi: number; held: number } };
}

/** Parses "19-35,5-17" into ranges. */
function parseRanges(s: string, n: number): { lo: number; hi: number }[] {
  return s.split(',').map((part) => {
    const m = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(part);
    if (!m) throw new UserError(`--range: '${part}' is not a range like 19-35`);
    const [lo, hi] = [Number(m[1]), Number(m[2])];
    if (lo > hi || hi > n) throw new UserError(`--range: '${part}' must satisfy lo <= hi <= ${n}`);
    return { lo, hi };
  });
}

export function pathsReport(n: number, source: string, deleted: number[], ranges: string | undefined, survival: { p: number[]; source: string } | null): PathsReport {
  const d = pathLengthDistribution(n);
  const sr = (mass: number) => {
    const r = shortestRange(d.probability, mass);
    return { mass, lo: r.lo, hi: r.hi, held: r.mass };
  };
  let sd: PathsReport['stochasticDepth'] = null;
  if (survival) {
    const dist = poissonBinomial(survival.p);
    const r = shortestRange(dist, 0.95);
    sd = { survival: survival.p, source: survival.source, distribution: dist, summary: summarize(dist), shortestRange95: { lo: r.lo, hi: r.hi, held: r.mass } };
  }
  return {
    n, source, deleted,
    distribution: d.counts.map((c, k) => ({ k, count: c.toString(), probability: d.probability[k]! })),
    totalPaths: d.total.toString(),
    summary: summarize(d.probability),
    shortestRanges: [sr(0.9), sr(0.95), sr(0.99)],
    ranges: ranges ? parseRanges(ranges, n).map((r) => ({ ...r, mass: rangeMass(d.probability, r.lo, r.hi) })) : [],
    stochasticDepth: sd,
  };
}

export function renderPaths(r: PathsReport, color: boolean, width: number): string {
  const d = pathLengthDistribution(r.n);
  const out: string[] = [];
  out.push(`${r.source}: ${r.n} residual blocks${r.deleted.length ? ` (${r.deleted.length} deleted: ${r.deleted.join(',')})` : ''} → 2^${r.n} paths; a path's length is the number of residual branches it passes`);
  out.push(renderPathHistogram(d, { width, color, mass: 0.95, title: 'path length distribution (Binomial(n, 1/2))' }));
  out.push(`mean ${r.summary.mean.toFixed(2)}, sd ${r.summary.sd.toFixed(2)}`);
  for (const s of r.shortestRanges) out.push(`lengths ${s.lo} to ${s.hi} hold ${(s.held * 100).toFixed(2)}% of paths (shortest range holding ${s.mass * 100}%)`);
  for (const x of r.ranges) out.push(`lengths ${x.lo} to ${x.hi} hold ${fmtShare(x.mass)} of paths`);
  if (r.stochasticDepth) {
    const s = r.stochasticDepth;
    out.push('');
    out.push(renderPathHistogram({ n: r.n, probability: s.distribution }, { width, color, mass: 0.95, title: `lengths of paths sampled in training with stochastic depth (${s.source})` }));
    out.push(`mean ${s.summary.mean.toFixed(2)}, sd ${s.summary.sd.toFixed(2)}; lengths ${s.shortestRange95.lo} to ${s.shortestRange95.hi} hold ${(s.shortestRange95.held * 100).toFixed(2)}%`);
  }
  return out.join('\n') + '\n';
}

function fmtShare(x: number): string {
  const p = x * 100;
  return p >= 10 ? `${p.toFixed(1)}%` : p >= 0.1 ? `${p.toFixed(2)}%` : `${p.toPrecision(2)}%`;
}

export function registerPaths(program: Command): void {
  const cmd = program
    .command('paths')
    .description('path-length distribution of the unraveled network (exact counts), with stochastic depth when known')
    .argument('[model]', 'an ONNX file (or use --blocks)')
    .addOption(new Option('--blocks <n>', 'number of residual blocks, without a model').argParser(positiveInt('--blocks', 100000)))
    .addOption(new Option('--delete <blocks>', 'with a model: blocks deleted (they leave the paths)'))
    .addOption(new Option('--pL <p>', 'stochastic depth: survival probability of the last block (linear decay)').argParser((v) => {
      const p = Number(v);
      if (!(p > 0 && p <= 1)) throw new UserError(`--pL: '${v}' must be a probability in (0, 1]`);
      return p;
    }))
    .addOption(new Option('--range <ranges>', 'report the share of paths in these length ranges, e.g. 19-35,5-17'))
    .addHelpText('after', `
Examples:
  reslens paths --blocks 54 --range 19-35,5-17   # ResNet-110 for CIFAR-10, as in the paper
  reslens paths fixtures/models/sd56.onnx         # with the survival probabilities in its metadata
  reslens paths --blocks 500 --pL 0.5 --json`);
  addJsonOptions(addRuntimeOptions(cmd));
  cmd.action(async (modelPath: string | undefined, o: Record<string, any>) => {
    let n: number;
    let source: string;
    let deleted: number[] = [];
    let survival: { p: number[]; source: string } | null = null;
    if (modelPath && o.blocks) throw new UserError('paths: give a model or --blocks, not both');
    if (modelPath) {
      const net = await withRuntime(o, (rt) => openNetwork(rt, modelPath));
      if (net.structure.kind !== 'residual') throw new UserError(`${modelPath}: a ${net.structure.kind} network has no residual blocks, so no paths to count`);
      const total = net.structure.blocks.length;
      deleted = o.delete ? parseBlockList(o.delete, '--delete', total - 1) : [];
      n = total - deleted.length;
      source = modelPath;
      const kept = [...Array(total).keys()].filter((i) => !deleted.includes(i));
      if (o.pL !== undefined) survival = { p: linearDecaySurvival(total, o.pL).filter((_, i) => kept.includes(i)), source: `linear decay to pL = ${o.pL}` };
      else if (net.preprocessing.survival) survival = { p: net.preprocessing.survival.filter((_, i) => kept.includes(i)), source: 'reslens.survival in the model' };
    } else if (o.blocks) {
      if (o.delete) throw new UserError('--delete needs a model');
      n = o.blocks;
      source = `${n} blocks`;
      if (o.pL !== undefined) survival = { p: linearDecaySurvival(n, o.pL), source: `linear decay to pL = ${o.pL}` };
    } else {
      throw new UserError('paths: give a model (reslens paths model.onnx) or a block count (--blocks 54)');
    }
    const report = pathsReport(n, source, deleted, o.range, survival);
    if (!emitJson({ command: 'paths', ...report }, o.json, !!o.force)) {
      process.stdout.write(renderPaths(report, useColor(), Math.min(process.stdout.columns ?? 100, 120)));
    }
  });
}
