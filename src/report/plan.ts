/**
 * The report's plan: every configuration it measures, determined by the network's units, the
 * options and the seeds alone, so a resumed run, every shard and `reslens merge` derive the
 * same one. The lesion plan is runLesion's own (engine/lesion.ts), so a report's `lesion`
 * equals `reslens lesion --json` with the same options; its documents are assembled here the
 * way the commands build them.
 */
import { UserError } from '../errors.js';
import { kendallTau, kGroup, reorderGroup } from '../engine/lesion.js';
import type { EvalResult } from '../engine/engine.js';
import type { GradientPlan } from '../engine/gradients.js';
import { makePlan } from '../engine/gradients.js';
import { effectivePaths } from '../paths/distribution.js';
import type { GradientsDoc, LesionDoc, NetworkDesc, ReportConfig } from './schema.js';

export { planLesion, type LesionPlan, type LesionPlanOptions, type ProgramSpec } from '../engine/lesion.js';
import { planLesion, type LesionPlan } from '../engine/lesion.js';

/** The lesion plan of the report's main network. */
export function mainLesionPlan(net: NetworkDesc, c: ReportConfig): LesionPlan {
  return planLesion(net, {
    single: c.parts.lesion, k: c.parts.lesion ? c.k : [], samples: c.samples, seed: c.seed,
    swaps: c.parts.reorder ? c.swaps : 0, includeDownsampling: c.includeDownsampling,
  });
}

/** The lesion plan of the --compare network: single and k sweeps, no reordering. */
export function compareLesionPlan(net: NetworkDesc, c: ReportConfig): LesionPlan {
  return planLesion(net, { single: true, k: c.k, samples: c.samples, seed: c.seed, swaps: 0, includeDownsampling: c.includeDownsampling }, '--compare');
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

// ---------------------------------------------------------------- assembly

type Measured = { error: number; correct: number; total: number; nonFinite: number };

function measured(r: EvalResult): Measured {
  return { error: r.error, correct: r.correct, total: r.total, nonFinite: r.nonFinite };
}

function perClassError(r: EvalResult): (number | null)[] {
  return r.perClass.total.map((t, c) => (t ? 1 - r.perClass.correct[c]! / t : null));
}

/** Error from the counts, as Engine.evaluate computes it. */
export function withError(r: EvalResult): EvalResult {
  return { ...r, error: r.total ? 1 - r.correct / r.total : 0 };
}

export interface DocHead {
  model: { path: string; sha256: string };
  data: { description: string; size: number; sha256: string };
  onnxruntime: string;
  device: string;
  seconds: number;
}

/** The lesion document (as `reslens lesion --json` writes it) from the plan and the counts of every program. */
export function lesionDoc(head: DocHead, net: NetworkDesc, mode: string, seed: number, plan: LesionPlan, results: EvalResult[], reorderResults: EvalResult[]): LesionDoc {
  const info = net.units;
  const base = results[0]!;
  let cursor = 1;
  const single = plan.singleUnits.map((u) => {
    const r = results[cursor++]!;
    const i = info[u]!;
    return { unit: u, stage: i.stage, downsampling: i.downsampling, ...measured(r), delta: r.error - base.error, perClassError: perClassError(r) };
  });
  const k = plan.kPlans.map((p) => {
    return kGroup(p.k, plan.eligible, p.subsets.map((blocks) => ({ blocks, ...measured(results[cursor++]!) })));
  });
  let rc = 0;
  const reorder = plan.reorderPlans.map((p) => {
    return reorderGroup(p.swaps, p.orders.map((order) => ({ order, kendallTau: kendallTau(order), ...measured(reorderResults[rc++]!) })));
  });
  return {
    command: 'lesion',
    ...head,
    network: net.kind,
    unit: net.kind === 'residual' ? 'block' : 'layer',
    units: net.n,
    mode,
    seed,
    baseline: { ...measured(base), perClassError: perClassError(base) },
    single,
    notDeletable: info.filter((u) => !u.deletable).map((u) => ({ unit: u.unit, reason: u.reason ?? '' })),
    k,
    explicit: null,
    reorder,
    evaluations: plan.programs.length + plan.reorder.length,
  };
}

/** The gradients document (as `reslens gradients --json` writes it) from the plan and each batch's norms and loss. */
export function gradientsDoc(
  head: DocHead,
  n: number,
  plan: GradientPlan,
  meta: { ks: number[]; seed: number; mass: number },
  batches: Map<number, { loss: number; norms: (number | null)[] }>,
): GradientsDoc {
  const byBatch = new Map<number, number[]>();
  plan.samples.forEach((s, i) => byBatch.set(s.batch, [...(byBatch.get(s.batch) ?? []), i]));
  const norms: number[] = plan.samples.map(() => NaN);
  let lossSum = 0;
  let batchesDone = 0;
  for (const [b, idx] of [...byBatch.entries()].sort((a, c) => a[0] - c[0])) {
    const got = batches.get(b);
    if (!got) continue;
    idx.forEach((i, j) => (norms[i] = got.norms[j] ?? NaN));
    lossSum += got.loss;
    batchesDone++;
  }
  const samples = plan.samples.map((s, i) => ({ ...s, norm: norms[i]! }));
  const meanNorm: (number | null)[] = Array(n + 1).fill(null);
  for (let k = 0; k <= n; k++) {
    const xs = samples.filter((s) => s.k === k && !Number.isNaN(s.norm)).map((s) => s.norm);
    if (xs.length) meanNorm[k] = xs.reduce((a, c) => a + c, 0) / xs.length;
  }
  const eff = effectivePaths(meanNorm, n, meta.mass);
  return {
    command: 'gradients',
    ...head,
    samplesPerSecond: head.seconds > 0 ? samples.length / head.seconds : null,
    n, ks: meta.ks, batchSize: plan.batchSize, seed: meta.seed, batches: plan.batches,
    samples: samples as GradientsDoc['samples'],
    meanNorm,
    meanLoss: lossSum / Math.max(1, batchesDone),
    effective: { mass: meta.mass, range: eff.effective, pathShare: eff.pathShare, share: eff.share, fit: eff.fit },
  };
}
