/**
 * The report's plans: every configuration it measures, made by the studies' own planners
 * from the report's options, so a resumed run, every shard and `reslens merge` derive the same
 * one and a report's `lesion` equals `reslens lesion --json` with the same options. And the
 * sharding: which configurations a shard owns.
 */
import { UserError } from '../errors.js';
import { makePlan, type GradientPlan } from '../studies/gradients.js';
import { parseMode, planLesion, type LesionOptions, type LesionPlan } from '../studies/lesion.js';
import type { NetworkDesc, ReportConfig } from './schema.js';

/** The lesion study's options of the report's main network. */
export function mainLesionOptions(c: ReportConfig): LesionOptions {
  return {
    mode: parseMode(c.mode), single: c.parts.lesion, k: c.parts.lesion ? c.k : [], samples: c.samples, seed: c.seed,
    swaps: c.parts.reorder ? c.swaps : 0, includeDownsampling: c.includeDownsampling,
  };
}

/** The lesion plan of the report's main network. */
export function mainLesionPlan(net: NetworkDesc, c: ReportConfig): LesionPlan {
  return planLesion(net, mainLesionOptions(c));
}

/** The lesion plan of the --compare network: single and k sweeps, no reordering. */
export function compareLesionPlan(net: NetworkDesc, c: ReportConfig): LesionPlan {
  return planLesion(net, { mode: { kind: 'delete' }, single: true, k: c.k, samples: c.samples, seed: c.seed, swaps: 0, includeDownsampling: c.includeDownsampling }, '--compare');
}

export function gradientPlan(n: number, dataSize: number, c: ReportConfig): GradientPlan {
  return makePlan(n, dataSize, { ks: c.gradientK, samples: c.gradientSamples, batchSize: c.gradientBatch, seed: c.gradientSeed });
}

// ---------------------------------------------------------------- sharding

/** The configurations of one shard: index i of `total` goes to shard i mod count. */
export function owned(total: number, shard: { index: number; count: number }): number[] {
  const out: number[] = [];
  for (let i = shard.index; i < total; i += shard.count) out.push(i);
  return out;
}

export function parseShard(s: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(s.trim());
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || !(count >= 1) || !(index < count) || count > 1e6) {
    throw new UserError(`--shard: '${s}' is not I/N with 0 <= I < N (e.g. --shard 0/4 … --shard 3/4)`);
  }
  return { index, count };
}
