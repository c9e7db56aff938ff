/**
 * The paths study (docs/science.md, "Path lengths"): the exact distribution of path lengths in
 * the unraveled network of n blocks, share of paths in length ranges, and with stochastic depth
 * the distribution of the lengths trained on. The JSON of `reslens paths`, a report's `paths`.
 */
import { OptionError } from '../errors.js';
import type { Network } from '../engine/network.js';
import { linearDecaySurvival, pathLengthDistribution, poissonBinomial, rangeMass, shortestRange, summarize } from '../paths/distribution.js';
import { requireResidual } from './network.js';

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

export interface PathsOptions {
  /** Blocks left (after `deleted`). */
  n: number;
  /** The model, or "N blocks". */
  source: string;
  deleted: number[];
  /** Length ranges whose share of paths to report. */
  ranges: { lo: number; hi: number }[];
  /** Stochastic depth: survival probability of each block left. */
  survival: { p: number[]; source: string } | null;
}

/**
 * The options for a model's paths: its blocks less `deleted`, and stochastic depth from the
 * last block's survival `pL` (linear decay) or else from the model's reslens.survival.
 */
export function networkPaths(net: Network, source: string, o: { deleted: number[]; pL?: number; ranges: { lo: number; hi: number }[] }): PathsOptions {
  requireResidual(net, 'so no paths to count');
  const total = net.structure.blocks.length;
  const kept = [...Array(total).keys()].filter((i) => !o.deleted.includes(i));
  let survival: PathsOptions['survival'] = null;
  if (o.pL !== undefined) survival = { p: linearDecaySurvival(total, o.pL).filter((_, i) => kept.includes(i)), source: `linear decay to pL = ${o.pL}` };
  else if (net.preprocessing.survival) survival = { p: net.preprocessing.survival.filter((_, i) => kept.includes(i)), source: 'reslens.survival in the model' };
  return { n: total - o.deleted.length, source, deleted: o.deleted, ranges: o.ranges, survival };
}

/** The options for n blocks without a model. */
export function blockPaths(n: number, o: { pL?: number; ranges: { lo: number; hi: number }[] }): PathsOptions {
  const survival = o.pL !== undefined ? { p: linearDecaySurvival(n, o.pL), source: `linear decay to pL = ${o.pL}` } : null;
  return { n, source: `${n} blocks`, deleted: [], ranges: o.ranges, survival };
}

export function pathsReport(o: PathsOptions): PathsReport {
  const { n, source, deleted, survival } = o;
  for (const r of o.ranges) {
    if (!(r.lo <= r.hi && r.hi <= n)) throw new OptionError('ranges', (f) => `${f('ranges')}: '${r.lo}-${r.hi}' must satisfy lo <= hi <= ${n}`);
  }
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
    ranges: o.ranges.map((r) => ({ ...r, mass: rangeMass(d.probability, r.lo, r.hi) })),
    stochasticDepth: sd,
  };
}
