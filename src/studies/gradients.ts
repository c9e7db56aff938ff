/**
 * The path-restricted gradient study (docs/science.md, "Path-restricted gradients"; Veit et al.
 * 2016, section 6): for each path length k, samples of k blocks whose residual branches carry
 * the gradient, each on a random batch. The plan (batches and block subsets from the seed),
 * the runner (the batches a run owns through the engine's PathGradients, with a per-batch
 * hook) and the document (`reslens gradients --json`, a report's `gradients`).
 */
import { OptionError, UserError } from '../errors.js';
import type { Dataset } from '../loader/data/dataset.js';
import { Random } from '../random.js';
import { effectivePaths, type EffectivePaths } from '../paths/distribution.js';
import { PathGradients } from '../engine/gradients.js';
import type { Network } from '../engine/network.js';
import type { Runtime } from '../engine/session.js';
import type { DocHead } from './document.js';
import { classCount, requireResidual } from './network.js';

export interface GradientSample {
  k: number;
  /** Blocks whose residual branch carries the gradient (sorted). */
  blocks: number[];
  /** Index into `batches`. */
  batch: number;
  norm: number;
}

export interface GradientPlan {
  batchSize: number;
  /** Image indices of each batch. */
  batches: number[][];
  samples: Omit<GradientSample, 'norm'>[];
}

export interface GradientOptions {
  ks: number[];
  /** Samples per k; each on its own random batch, as in the paper. */
  samples: number;
  batchSize: number;
  seed: number;
}

/** The random stream of the plan: batches and block subsets, interleaved, from one seed. */
export function gradientStream(seed: number): Random {
  return new Random(seed);
}

/** The sampling plan: `samples` random batches, on each one sample for every k. */
export function makePlan(n: number, dataSize: number, o: GradientOptions): GradientPlan {
  if (o.batchSize > dataSize) throw new OptionError('batchSize', (f) => `${f('batchSize')} ${o.batchSize}: the data set has only ${dataSize} samples; pass ${f('batchSize')} ${dataSize} or less, or more data`);
  for (const k of o.ks) if (k < 0 || k > n) throw new OptionError('ks', (f) => `${f('ks')}: ${k} is outside 0-${n} (the network has ${n} blocks)`);
  const rng = gradientStream(o.seed);
  const all = [...Array(dataSize).keys()];
  const blocks = [...Array(n).keys()];
  const batches: number[][] = [];
  const samples: GradientPlan['samples'] = [];
  for (let b = 0; b < o.samples; b++) {
    batches.push(rng.sample(all, o.batchSize));
    for (const k of o.ks) samples.push({ k, blocks: rng.sample(blocks, k), batch: b });
  }
  return { batchSize: o.batchSize, batches, samples };
}

/** Checks a plan read from an earlier JSON output against this network and data. */
export function checkPlan(plan: GradientPlan, n: number, dataSize: number, file: string): void {
  const bad = (why: string) => new UserError(`${file}: the gradient plan does not fit (${why}); was it made for another model or data set?`);
  if (!Array.isArray(plan.batches) || !Array.isArray(plan.samples)) throw bad('no batches or samples');
  for (const b of plan.batches) if (!Array.isArray(b) || b.some((i) => !Number.isInteger(i) || i < 0 || i >= dataSize)) throw bad(`an image index outside 0-${dataSize - 1}`);
  for (const s of plan.samples) {
    if (!Number.isInteger(s.batch) || !plan.batches[s.batch]) throw bad(`sample batch ${s.batch}`);
    if (!Array.isArray(s.blocks) || s.blocks.some((i) => !Number.isInteger(i) || i < 0 || i >= n) || s.blocks.length !== s.k) throw bad(`blocks ${s.blocks}`);
  }
}

/** The samples of each batch that has any, in batch order: [batch, sample indices]. */
export function samplesByBatch(plan: GradientPlan): [number, number[]][] {
  const byBatch = new Map<number, number[]>();
  plan.samples.forEach((s, i) => byBatch.set(s.batch, [...(byBatch.get(s.batch) ?? []), i]));
  return [...byBatch.entries()].sort((a, c) => a[0] - c[0]);
}

// ---------------------------------------------------------------- setup and runner

/** The network's block count, once it is known to have residual blocks. */
export function gradientBlocks(net: Network): number {
  requireResidual(net, 'so no paths to restrict gradients to');
  return net.structure.blocks.length;
}

/** The engine's backward machinery for this network at the plan's batch size. */
export async function gradientSession(rt: Runtime, net: Network, data: Pick<Dataset, 'classes'>, batchSize: number): Promise<PathGradients> {
  gradientBlocks(net);
  return PathGradients.create(rt, net, batchSize, classCount(net, data));
}

/** What one batch gives: the loss and each of its samples' norm (null where it was not finite, once stored). */
export interface BatchNorms {
  loss: number;
  norms: (number | null)[];
}

/**
 * Runs the batches `own` (indices into plan.batches), in that order; `onBatch` sees each one
 * finished. Stops between batches once `signal` is aborted and says so.
 */
export async function runGradientBatches(
  pg: PathGradients,
  data: Dataset,
  plan: GradientPlan,
  own: number[],
  o: { signal?: AbortSignal; onBatch?: (batch: number, got: BatchNorms, samples: number) => void | Promise<void> } = {},
): Promise<{ finished: Map<number, BatchNorms>; interrupted: boolean }> {
  const members = new Map(samplesByBatch(plan));
  const finished = new Map<number, BatchNorms>();
  for (const b of own) {
    if (o.signal?.aborted) return { finished, interrupted: true };
    const idx = members.get(b) ?? [];
    const batch = await data.batch(plan.batches[b]!);
    const got = await pg.runBatch(batch.images, batch.labels, idx.map((i) => plan.samples[i]!.blocks), o.signal);
    finished.set(b, got);
    await o.onBatch?.(b, got, idx.length);
  }
  return { finished, interrupted: false };
}

// ---------------------------------------------------------------- document

export interface GradientResult {
  n: number;
  ks: number[];
  batchSize: number;
  seed: number;
  batches: number[][];
  samples: GradientSample[];
  /** Mean norm per k (index k), null where k was not sampled. */
  meanNorm: (number | null)[];
  meanLoss: number;
  /** Set when interrupted: samples whose batch did not run keep norm null. */
  interrupted?: { samplesDone: number };
}

/** The result from the plan and the batches finished so far (samples of other batches keep NaN). */
export function gradientResult(n: number, plan: GradientPlan, meta: { ks: number[]; seed: number }, finished: Map<number, BatchNorms>): GradientResult {
  const norms: number[] = plan.samples.map(() => NaN);
  let lossSum = 0;
  let batchesDone = 0;
  for (const [b, idx] of samplesByBatch(plan)) {
    const got = finished.get(b);
    if (!got) continue;
    idx.forEach((i, j) => (norms[i] = got.norms[j] ?? NaN));
    lossSum += got.loss;
    batchesDone++;
  }
  const samples = plan.samples.map((s, i) => ({ ...s, norm: norms[i]! }));
  return {
    n, ks: meta.ks, batchSize: plan.batchSize, seed: meta.seed, batches: plan.batches, samples,
    meanNorm: meanNorms(samples, n),
    meanLoss: lossSum / Math.max(1, batchesDone),
  };
}

/** Mean norm for each k in 0..n over the samples that have one; null where none has. */
export function meanNorms(samples: { k: number; norm: number }[], n: number): (number | null)[] {
  const meanNorm: (number | null)[] = Array(n + 1).fill(null);
  for (let k = 0; k <= n; k++) {
    const xs = samples.filter((s) => s.k === k && !Number.isNaN(s.norm)).map((s) => s.norm);
    if (xs.length) meanNorm[k] = xs.reduce((a, c) => a + c, 0) / xs.length;
  }
  return meanNorm;
}

/** The whole document: head, result and the effective paths that hold `mass` of the gradient. */
export function gradientsDoc(head: DocHead, r: GradientResult, eff: EffectivePaths, mass: number) {
  return {
    command: 'gradients' as const,
    ...head,
    samplesPerSecond: head.seconds > 0 ? r.samples.length / head.seconds : null,
    ...r,
    effective: { mass, range: eff.effective, pathShare: eff.pathShare, share: eff.share, fit: eff.fit },
  };
}

export function effectiveOf(r: GradientResult, mass: number): EffectivePaths {
  return effectivePaths(r.meanNorm, r.n, mass);
}

// ---------------------------------------------------------------- the whole study

/**
 * Every batch of the plan in order. Stopped through `opts.signal` between batches, it returns
 * what is done, marked `interrupted`.
 */
export async function runGradients(
  pg: PathGradients,
  data: Dataset,
  plan: GradientPlan,
  meta: { ks: number[]; seed: number },
  opts: { onProgress?: (done: number, total: number) => void; signal?: AbortSignal } = {},
): Promise<GradientResult> {
  const n = pg.net.structure.blocks.length;
  let done = 0;
  const { finished, interrupted } = await runGradientBatches(pg, data, plan, samplesByBatch(plan).map(([b]) => b), {
    signal: opts.signal,
    onBatch: (_b, _got, samples) => {
      done += samples;
      opts.onProgress?.(done, plan.samples.length);
    },
  });
  const r = gradientResult(n, plan, meta, finished);
  return interrupted ? { ...r, interrupted: { samplesDone: done } } : r;
}
