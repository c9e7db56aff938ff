/**
 * The report's plans: every configuration it measures, made by the studies' own planners
 * from the report's options, so a resumed run, every shard and `reslens merge` derive the same
 * one and a report's `lesion` equals `reslens lesion --json` with the same options. And the
 * sharding: which configurations a shard owns.
 */
import { makeExactPlan, type ExactPlan } from '../studies/exact.js';
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

/** The exact part's consecutive batches of the data (after --limit). */
export function exactPlan(dataSize: number, c: ReportConfig): ExactPlan {
  return makeExactPlan(dataSize, { batchSize: c.exactBatch });
}

// ---------------------------------------------------------------- sharding

/** The configurations of one shard: index i of `total` goes to shard i mod count. */
export function owned(total: number, shard: { index: number; count: number }): number[] {
  const out: number[] = [];
  for (let i = shard.index; i < total; i += shard.count) out.push(i);
  return out;
}
