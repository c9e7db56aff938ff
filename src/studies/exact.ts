/**
 * The exact decomposition of the gradient by path length (docs/science.md): for consecutive
 * batches of the data, G = Σ_k G_k at the first block's input, with loss = mean cross-entropy
 * over the batch. The plan (the batches), the runner (the batches a run owns, through the
 * engine's ExactGradients, with a per-batch hook) and the document (`exact: {...}`).
 */
import { OptionError } from '../errors.js';
import type { Dataset } from '../loader/data/dataset.js';
import { ExactGradients, type ExactBatch } from '../engine/exact.js';
import type { Network } from '../engine/network.js';
import { describeExact } from '../engine/memory.js';
import type { Runtime } from '../engine/session.js';
import { Random } from '../random.js';
import { classCount, requireResidual } from './network.js';
import type { GradientPlan } from './gradients.js';
import type { DocHead } from './document.js';

export interface ExactOptions {
  batchSize: number;
  /** Images from the start of the data set; all when absent. */
  limit?: number;
}

export interface ExactPlan {
  batchSize: number;
  /** [first image, end) of each batch, consecutive. */
  batches: [number, number][];
}

export function makeExactPlan(dataSize: number, o: ExactOptions): ExactPlan {
  if (!Number.isInteger(o.batchSize) || o.batchSize < 1) throw new OptionError('batchSize', (f) => `${f('batchSize')} ${o.batchSize}: must be a positive integer`);
  const images = Math.min(dataSize, o.limit ?? dataSize);
  const batches: [number, number][] = [];
  for (let lo = 0; lo < images; lo += o.batchSize) batches.push([lo, Math.min(images, lo + o.batchSize)]);
  return { batchSize: o.batchSize, batches };
}

/** What one batch keeps (plain numbers, so that it can be stored and merged). */
export interface ExactBatchSums {
  images: number;
  loss: number;
  norms: number[];
  dots: number[];
  gg: number;
  residual2: number;
}

export function batchSums(b: ExactBatch): ExactBatchSums {
  return { images: b.images, loss: b.loss, norms: [...b.norms], dots: [...b.dots], gg: b.gg, residual2: b.residual2 };
}

/**
 * The engine's exact decomposition for this network, once it is known to have residual blocks.
 * `memory`: the budget its slices and lanes must fit (default: memory.ts's defaultBudget); when
 * it cuts them, `onCut` gets the line that says so.
 */
export async function exactSession(rt: Runtime, net: Network, data: Pick<Dataset, 'classes'>, batchSize: number, o: { memory?: number; onCut?: (line: string) => void } = {}): Promise<ExactGradients> {
  requireResidual(net, 'so no paths to split the gradient by');
  const eg = await ExactGradients.create(rt, net, batchSize, classCount(net, data), { memory: o.memory });
  if (eg.choice && (eg.choice.cut || eg.choice.over)) o.onCut?.(describeExact(eg.choice, eg.n));
  return eg;
}

/**
 * Runs the batches `own` (indices into plan.batches) in order; `onBatch` sees each finished.
 * Stops between batches once `signal` is aborted and says so.
 */
export async function runExactBatches(
  eg: ExactGradients,
  data: Dataset,
  plan: ExactPlan,
  own: number[],
  o: { signal?: AbortSignal; onBatch?: (batch: number, got: ExactBatchSums) => void | Promise<void> } = {},
): Promise<{ finished: Map<number, ExactBatchSums>; interrupted: boolean }> {
  const finished = new Map<number, ExactBatchSums>();
  for (const b of own) {
    if (o.signal?.aborted) return { finished, interrupted: true };
    const [lo, hi] = plan.batches[b]!;
    const batch = await data.batch(range(lo, hi));
    const got = batchSums(await eg.runBatch(batch.images, batch.labels, o.signal));
    finished.set(b, got);
    await o.onBatch?.(b, got);
  }
  return { finished, interrupted: false };
}

function range(lo: number, hi: number): number[] {
  return Array.from({ length: hi - lo }, (_, i) => lo + i);
}

// ---------------------------------------------------------------- summary

export interface ExactSummary {
  batches: number;
  images: number;
  /** Mean over batches of ‖G‖. */
  fullNorm: number;
  /** ‖Σ_k G_k − G‖ / ‖G‖ over all batches together. */
  identityError: number;
  /** norm: mean over batches of ‖G_k‖; share: Σ_b ⟨G_k, G⟩ / Σ_b ⟨G, G⟩. */
  perLength: { k: number; norm: number; share: number }[];
  /** Shortest range of lengths whose shares sum to at least the mass. */
  effectiveRange: [number, number];
}

/** The batches finished so far, summarized (in batch order, so that a merge gives the same sums). */
export function summarizeExact(n: number, finished: Map<number, ExactBatchSums>, mass: number): ExactSummary {
  const order = [...finished.keys()].sort((a, b) => a - b);
  const norm = new Array<number>(n + 1).fill(0);
  const dot = new Array<number>(n + 1).fill(0);
  let gg = 0;
  let r2 = 0;
  let full = 0;
  let images = 0;
  for (const b of order) {
    const s = finished.get(b)!;
    for (let k = 0; k <= n; k++) {
      norm[k]! += s.norms[k]!;
      dot[k]! += s.dots[k]!;
    }
    gg += s.gg;
    r2 += s.residual2;
    full += Math.sqrt(s.gg);
    images += s.images;
  }
  const B = Math.max(1, order.length);
  const perLength = norm.map((v, k) => ({ k, norm: v / B, share: gg > 0 ? dot[k]! / gg : 0 }));
  return {
    batches: order.length,
    images,
    fullNorm: full / B,
    identityError: gg > 0 ? Math.sqrt(r2 / gg) : 0,
    perLength,
    effectiveRange: effectiveRange(perLength.map((p) => p.share), mass),
  };
}

/**
 * The shortest range [lo, hi] of lengths whose shares sum to at least `mass` (among equally
 * short ones, the one holding most). Shares can be negative, so every range is tried.
 */
export function effectiveRange(shares: number[], mass: number): [number, number] {
  let best: [number, number] = [0, shares.length - 1];
  let bestHeld = -Infinity;
  for (let lo = 0; lo < shares.length; lo++) {
    let held = 0;
    for (let hi = lo; hi < shares.length; hi++) {
      held += shares[hi]!;
      // 1e-12: shares that sum to the mass up to rounding count as reaching it.
      if (held < mass - 1e-12) continue;
      const w = hi - lo;
      if (w < best[1] - best[0] || (w === best[1] - best[0] && held > bestHeld)) {
        best = [lo, hi];
        bestHeld = held;
      }
      break;
    }
  }
  return best;
}

/** The length with the largest share. */
export function peakLength(s: ExactSummary): number {
  return s.perLength.reduce((a, p) => (p.share > s.perLength[a]!.share ? p.k : a), 0);
}

// ---------------------------------------------------------------- the sampled estimate beside it

/**
 * The paper's sampled estimate on the same batches: `samples` paths of each length in `ks`,
 * sample i of a length on batch i mod (number of batches), blocks drawn from `seed`.
 */
export function sampledPlanOn(plan: ExactPlan, n: number, ks: number[], samples: number, seed: number): GradientPlan {
  const rng = new Random(seed);
  const blocks = [...Array(n).keys()];
  const batches = plan.batches.map(([lo, hi]) => range(lo, hi));
  const out: GradientPlan['samples'] = [];
  for (let i = 0; i < samples; i++) for (const k of ks) out.push({ k, blocks: rng.sample(blocks, k).sort((a, b) => a - b), batch: i % batches.length });
  return { batchSize: plan.batchSize, batches, samples: out };
}

// ---------------------------------------------------------------- the whole study

export async function runExact(
  eg: ExactGradients,
  data: Dataset,
  plan: ExactPlan,
  mass: number,
  opts: { onProgress?: (done: number, total: number) => void; signal?: AbortSignal } = {},
): Promise<{ summary: ExactSummary; finished: Map<number, ExactBatchSums>; interrupted: boolean }> {
  let done = 0;
  const { finished, interrupted } = await runExactBatches(eg, data, plan, plan.batches.map((_, i) => i), {
    signal: opts.signal,
    onBatch: (_b, got) => {
      done += got.images;
      opts.onProgress?.(done, plan.batches.reduce((a, [lo, hi]) => a + hi - lo, 0));
    },
  });
  return { summary: summarizeExact(eg.n, finished, mass), finished, interrupted };
}

/** The sampled estimate as the exact document carries it. */
export interface SampledPart {
  samples: number;
  seed: number;
  ks: number[];
  /** E‖g_k‖ per k (null where k was not sampled). */
  meanNorm: (number | null)[];
  /** C(n,k)·E‖g_k‖ normalised over the sampled lengths. */
  share: number[];
  seconds: number;
}

/** `reslens gradients --exact --json`. */
export function exactDoc(head: DocHead, n: number, batchSize: number, mass: number, exact: ExactSummary, sampled: SampledPart | null) {
  return {
    command: 'gradients' as const,
    mode: 'exact' as const,
    ...head,
    n,
    batchSize,
    mass,
    imagesPerSecond: head.seconds > 0 ? exact.images / head.seconds : null,
    exact,
    ...(sampled ? { sampled } : {}),
  };
}
