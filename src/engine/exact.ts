/**
 * The exact decomposition of the gradient by path length (docs/science.md): G = Σ_k G_k at
 * the first block's input, G_k the sum of the path-restricted gradients of all C(n, k) paths
 * of length k. One forward per batch, then one stacked backward per block from the last to
 * the first (surgery/stack.ts): c'[k] = M S c[k] + M R c[k-1], n(n+1)/2 residual-branch VJPs
 * for all lengths at once. The full gradient G comes from its own backward, so that
 * ‖Σ_k G_k − G‖ checks the whole recursion on every batch.
 */
import { Interrupted } from '../errors.js';
import { stackedChainBackward, MAX_ABS, SCALE_IN, SCALE_R, type ChainStep } from '../surgery/stack.js';
import { buildSoftmaxCrossEntropyGrad, buildVjp, GRAD_IN, GRAD_OUT, withSavedOutputs } from '../surgery/vjp.js';
import type { Network } from './network.js';
import { probeShapes } from './probe.js';
import type { Runtime, Session, Tensor } from './session.js';

/**
 * Rows (images × lengths) of the largest stack one backward call holds; past it a batch's
 * backward runs on slices of its images (each image's gradient is independent of the others'
 * once the loss gradient is known). Big stacks are slow, not only large: measured on resnet56
 * at batch 32 (2-core x86, 2026-12-01, CPU time per batch) the whole batch at once (up to
 * 896 rows of 16×28×28) took 4.6 s, slices of 8 images (224 rows) 2.0 s; every intermediate
 * of a stack that size is a fresh allocation onnxruntime faults in on each run.
 */
export const DEFAULT_MAX_ROWS = 256;

/** What one batch contributes, in float64. */
export interface ExactBatch {
  images: number;
  loss: number;
  /** ‖G_k‖ for k = 0..n (Frobenius over the batch tensor). */
  norms: Float64Array;
  /** ⟨G_k, G⟩ for k = 0..n. */
  dots: Float64Array;
  /** ⟨G, G⟩. */
  gg: number;
  /** ‖Σ_k G_k − G‖². */
  residual2: number;
  /** With keepGradients: G_k for every k, and G. */
  gradients?: Float64Array[];
  full?: Float64Array;
}

/** Consecutive blocks (and the glue between them) whose backward is one onnxruntime call. */
interface Chain {
  session: Session;
  saved: string[];
  /** Blocks in the chain (lengths it adds). */
  blocks: number;
  /** Dims of one image of the gradient the chain reads. */
  inDims: number[];
}

/**
 * Blocks per backward call. One call per run of blocks keeps onnxruntime's arena and blocked
 * layout across them and skips the trip through JavaScript; lengths are brought back near 1
 * between calls; within 9 blocks a length's stored magnitude moves far less than float32's
 * range allows (measured: at most 2^±37 on resnet110, against 2^±126). Measured on resnet56
 * at batch 32, one thread (2-core x86, 2026-12-01): 1.5 s CPU per batch, against 8.0 s with
 * one call and a fresh allocation of every intermediate per block.
 */
export const CHAIN_BLOCKS = 9;

/** 2^-round(log2 m): brings a stored length's largest magnitude near 1 (1 for 0 or non-finite). */
function exponentFor(m: number): number {
  return m > 0 && Number.isFinite(m) ? -Math.round(Math.log2(m)) : 0;
}

/** The largest of each length's R rows. */
function perLength(rows: Float32Array, R: number): number[] {
  const out: number[] = [];
  for (let k = 0; k * R < rows.length; k++) {
    let m = 0;
    for (let i = k * R; i < (k + 1) * R; i++) m = Math.max(m, rows[i]!);
    out.push(m);
  }
  return out;
}

export class ExactGradients {
  private forward!: Session;
  private lossGrad!: Session;
  private head!: { session: Session; saved: string[] } | null;
  private full!: { session: Session; saved: string[] };
  /** From the last block to the first. */
  private chains: Chain[] = [];
  readonly n: number;

  private constructor(
    readonly rt: Runtime,
    readonly net: Network,
    readonly batchSize: number,
    readonly maxRows: number,
  ) {
    this.n = net.structure.blocks.length;
  }

  static async create(rt: Runtime, net: Network, batchSize: number, classes: number, o: { maxRows?: number } = {}): Promise<ExactGradients> {
    const eg = new ExactGradients(rt, net, batchSize, o.maxRows ?? DEFAULT_MAX_ROWS);
    await eg.build(classes);
    return eg;
  }

  /** Images per backward call: as many as keep the deepest stack within maxRows. */
  get slice(): number {
    return Math.max(1, Math.min(this.batchSize, Math.floor(this.maxRows / (this.n + 1))));
  }

  private async build(classes: number): Promise<void> {
    const { structure: s, graph: g, model } = this.net;
    // The exact study checks this for the user (studies/exact.ts).
    if (s.kind !== 'residual') throw new Error(`ExactGradients: ${model.path} is a ${s.kind} network, without residual blocks`);
    const all = new Set<string>();
    for (const nd of g.nodes) for (const o of nd.output ?? []) if (o && g.computed.has(o)) all.add(o);
    const shapes = await probeShapes(this.rt, model.proto, this.net.input, [1, ...this.net.preprocessing.inputShape], [...all], model.path, this.batchSize);
    shapes.set(this.net.input, [this.batchSize, ...this.net.preprocessing.inputShape]);
    const saved = new Set<string>();
    const masks = new Map<string, string>();
    const collect = (v: { saved: string[]; masks: Map<string, string> }) => {
      for (const t of v.saved) saved.add(t);
      for (const [m, y] of v.masks) masks.set(m, y);
      return v.saved;
    };
    const blocks = s.blocks;
    const n = blocks.length;
    const last = blocks[n - 1]!;
    if (last.output !== this.net.output) {
      const v = buildVjp(model.proto, g, { from: last.output, to: this.net.output, shapes, reluMasks: true });
      this.head = { session: await this.rt.create(v.model, 'exact: backward of the head'), saved: collect(v) };
    } else this.head = null;
    // Chains of up to CHAIN_BLOCKS blocks within a stage, from the last block down; the glue
    // before a block (between it and the previous one) goes with it.
    for (let j = n - 1; j >= 0; ) {
      const steps: ChainStep[] = [];
      const top = j;
      const L0 = n - j;
      do {
        steps.push({ block: blocks[j]! });
        if (j > 0 && blocks[j - 1]!.output !== blocks[j]!.input) steps.push({ glue: { from: blocks[j - 1]!.output, to: blocks[j]!.input } });
        j--;
      } while (j >= 0 && top - j < CHAIN_BLOCKS && blocks[j]!.stage === blocks[top]!.stage);
      const v = stackedChainBackward(model.proto, g, steps, shapes, L0);
      const label = `exact: blocks ${blocks[j + 1]!.index}-${blocks[top]!.index}, ${L0} lengths in`;
      this.chains.push({ session: await this.rt.create(v.model, label, { arena: true }), saved: collect(v), blocks: top - j, inDims: shapes.get(blocks[top]!.output)!.slice(1) });
    }
    const fv = buildVjp(model.proto, g, { from: blocks[0]!.input, to: last.output, shapes, reluMasks: true });
    this.full = { session: await this.rt.create(fv.model, 'exact: full backward of the blocks'), saved: collect(fv) };
    this.forward = await this.rt.create(withSavedOutputs(model.proto, [...saved], masks), 'exact: forward with saved tensors');
    this.lossGrad = await this.rt.create(buildSoftmaxCrossEntropyGrad(classes), 'softmax cross-entropy gradient');
  }

  /**
   * One batch: loss = mean cross-entropy over it, G and every G_k at the first block's input.
   * `keepGradients` returns them (tests).
   */
  async runBatch(images: Float32Array, labels: Int32Array, signal?: AbortSignal, keepGradients = false): Promise<ExactBatch> {
    const N = labels.length;
    const x: Tensor = { data: images, dims: [N, ...this.net.preprocessing.inputShape] };
    const res = await this.forward.run({ [this.net.input]: x });
    const fwd = new Map<string, Tensor>(Object.entries(res));
    fwd.set(this.net.input, x);
    const lg = await this.lossGrad.run({ logits: res[this.net.output]!, labels: { data: Float32Array.from(labels), dims: [N] } });
    const loss = (lg.loss!.data as Float32Array)[0]!;
    const n = this.n;
    const out: ExactBatch = { images: N, loss, norms: new Float64Array(n + 1), dots: new Float64Array(n + 1), gg: 0, residual2: 0 };
    const norms2 = new Float64Array(n + 1);
    const kept: Float64Array[][] = [];
    const keptFull: Float64Array[] = [];
    const step = this.slice;
    for (let lo = 0; lo < N; lo += step) {
      if (signal?.aborted) throw new Interrupted();
      const hi = Math.min(N, lo + step);
      const gl = lg.grad_logits!;
      const rows = (t: Tensor): Tensor => {
        const per = t.data.length / t.dims[0]!;
        return { data: t.data.subarray(lo * per, hi * per) as Float32Array, dims: [hi - lo, ...t.dims.slice(1)] };
      };
      const feeds = (saved: string[], extra: Record<string, Tensor>) => {
        const f: Record<string, Tensor> = { ...extra };
        for (const t of saved) f[t] = rows(fwd.get(t)!);
        return f;
      };
      let g = rows(gl);
      if (this.head) g = (await this.head.session.run(feeds(this.head.saved, { [GRAD_OUT]: g })))[GRAD_IN]!;
      const G = (await this.full.session.run(feeds(this.full.saved, { [GRAD_OUT]: g })))[GRAD_IN]!.data as Float32Array;
      // The stack c̃[k] = G_k·2^e[k]: each length keeps its own power-of-two scale, since the
      // lengths span tens of orders of magnitude (float32 would underflow past k ≈ 50).
      let m = 0;
      for (const v of g.data as Float32Array) m = Math.max(m, Math.abs(v));
      let stack = g.data as Float32Array;
      let exps = [0];
      let maxes = [m];
      for (const ch of this.chains) {
        if (signal?.aborted) throw new Interrupted();
        const L = exps.length;
        const R = hi - lo;
        // Each length brought near 1 on entry; lengths born inside the chain take the
        // exponent of the longest one coming in.
        const a = exps.map((e, k) => e + exponentFor(maxes[k]!));
        const Lr = L + ch.blocks - 1;
        const ext = (k: number) => a[Math.min(k, L - 1)]!;
        const scaleIn = new Float32Array(L * R);
        const scaleR = new Float32Array(Lr * R);
        for (let k = 0; k < L; k++) scaleIn.fill(2 ** (a[k]! - exps[k]!), k * R, (k + 1) * R);
        for (let k = 0; k < Lr; k++) scaleR.fill(2 ** (ext(k + 1) - ext(k)), k * R, (k + 1) * R);
        if (!scaleR.every((v) => v > 0 && Number.isFinite(v))) throw new Error(`ExactGradients: lengths ${a.join(',')} are too far apart for float32 scales`);
        const gradOut: Tensor = { data: stack, dims: [L * R, ...ch.inDims] };
        const r = await ch.session.run(feeds(ch.saved, { [GRAD_OUT]: gradOut, [SCALE_IN]: { data: scaleIn, dims: [L * R] }, [SCALE_R]: { data: scaleR, dims: [Lr * R] } }));
        stack = r[GRAD_IN]!.data as Float32Array;
        maxes = perLength(r[MAX_ABS]!.data as Float32Array, R);
        exps = Array.from({ length: L + ch.blocks }, (_, k) => ext(k));
      }
      // Back to true values in float64, where even 1e-41 is an ordinary number.
      const D = G.length;
      const sum = new Float64Array(D);
      for (let k = 0; k <= n; k++) {
        const f = 2 ** -exps[k]!;
        let s2 = 0;
        let dot = 0;
        const base = k * D;
        const gk = keepGradients ? new Float64Array(D) : null;
        for (let i = 0; i < D; i++) {
          const v = stack[base + i]! * f;
          s2 += v * v;
          dot += v * G[i]!;
          sum[i]! += v;
          if (gk) gk[i] = v;
        }
        norms2[k]! += s2;
        out.dots[k]! += dot;
        if (gk) (kept[k] ??= []).push(gk);
      }
      for (let i = 0; i < D; i++) {
        out.gg += G[i]! * G[i]!;
        out.residual2 += (sum[i]! - G[i]!) ** 2;
      }
      if (keepGradients) keptFull.push(Float64Array.from(G));
    }
    for (let k = 0; k <= n; k++) out.norms[k] = Math.sqrt(norms2[k]!);
    if (keepGradients) {
      const cat = (parts: Float64Array[]) => {
        const r = new Float64Array(parts.reduce((a, p) => a + p.length, 0));
        let o = 0;
        for (const p of parts) (r.set(p, o), (o += p.length));
        return r;
      };
      out.gradients = kept.map(cat);
      out.full = cat(keptFull);
    }
    return out;
  }
}
