/**
 * One slice of a batch's images through the exact decomposition (engine/exact.ts): its
 * forward with the saved tensors, the loss gradient, G from its own backward, every G_k
 * through the stacked chains, and the slice's float64 sums. Apart from exact.ts so that a
 * worker thread (exact-worker.ts) runs the same code on its own sessions, without the graph
 * surgery, and takes only the slice's images in.
 */
import { Interrupted } from '../errors.js';
import { MAX_ABS, SCALE_IN, SCALE_R } from '../surgery/stack.js';
import { GRAD_IN, GRAD_OUT } from '../surgery/vjp.js';
import type { Runtime, Session, Tensor } from './session.js';

/** A backward model and the forward tensors it reads. */
export interface BackwardModel {
  model: Uint8Array;
  saved: string[];
  label: string;
}

/** Consecutive blocks (and the glue between them) whose backward is one onnxruntime call. */
export interface ChainModel extends BackwardModel {
  /** Blocks in the chain (lengths it adds). */
  blocks: number;
  /** Dims of one image of the gradient the chain reads. */
  inDims: number[];
}

/** Everything a slice needs, as plain data (it crosses to worker threads). */
export interface LaneSpec {
  /** Blocks (the longest length is n). */
  n: number;
  /** The network's input and output (logits) names, and one image's dims. */
  input: string;
  output: string;
  inputDims: number[];
  /** The network, with the tensors the backwards read as extra outputs. */
  forward: BackwardModel;
  /** Softmax cross-entropy: grad_logits and loss, both as means over the images fed. */
  lossGrad: BackwardModel;
  /** From the logits back to the last block's output, when there is a head. */
  head: BackwardModel | null;
  /** The full gradient G, from the last block's output to the first block's input. */
  full: BackwardModel;
  /** From the last block to the first. */
  chains: ChainModel[];
}

type Opened<T> = Omit<T, 'model'> & { session: Session };

/** A lane's sessions: slices run one after another on them. */
export interface Lane {
  n: number;
  input: string;
  output: string;
  inputDims: number[];
  forward: Session;
  lossGrad: Session;
  head: Opened<BackwardModel> | null;
  full: Opened<BackwardModel>;
  chains: Opened<ChainModel>[];
}

export async function openLane(rt: Runtime, spec: LaneSpec): Promise<Lane> {
  const open = async <T extends BackwardModel>(m: T, arena = false): Promise<Opened<T>> => {
    const { model, ...rest } = m;
    // onnxruntime takes no shared memory: a copy for this session alone, garbage once it is open.
    const own = model.buffer instanceof SharedArrayBuffer ? model.slice() : model;
    return { ...rest, session: await rt.create(own, m.label, { arena }) };
  };
  const chains: Opened<ChainModel>[] = [];
  // Chains are big sessions run many times: arenas (Runtime.create).
  for (const c of spec.chains) chains.push(await open(c, true));
  return {
    n: spec.n,
    input: spec.input,
    output: spec.output,
    inputDims: spec.inputDims,
    forward: (await open(spec.forward)).session,
    lossGrad: (await open(spec.lossGrad)).session,
    head: spec.head && (await open(spec.head)),
    full: await open(spec.full),
    chains,
  };
}

/** What one slice of images contributes, in float64; the caller adds slices in their order. */
export interface SliceSums {
  /** The slice's part of the batch's mean cross-entropy. */
  loss: number;
  /** ‖G_k‖² for k = 0..n. */
  norms2: Float64Array;
  /** ⟨G_k, G⟩ for k = 0..n. */
  dots: Float64Array;
  gg: number;
  residual2: number;
  /** With keep: G_k for every k, and G, on the slice. */
  gradients?: Float64Array[];
  full?: Float64Array;
}

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

/**
 * One slice: `images` and `labels` of R images out of a batch of `batch`. The loss is the
 * batch's mean, so the slice's mean-loss gradient is scaled by R / batch (in float64, with the
 * rest of the unscaling: the whole recursion is linear in it).
 */
export async function runSlice(lane: Lane, images: Float32Array, labels: Int32Array, batch: number, keep: boolean, signal?: AbortSignal): Promise<SliceSums> {
  const n = lane.n;
  const R = labels.length;
  const x: Tensor = { data: images, dims: [R, ...lane.inputDims] };
  const fwd = await lane.forward.run({ [lane.input]: x });
  const lg = await lane.lossGrad.run({ logits: fwd[lane.output]!, labels: { data: Float32Array.from(labels), dims: [R] } });
  const share = R / batch;
  const feeds = (names: string[], extra: Record<string, Tensor>) => {
    const f: Record<string, Tensor> = { ...extra };
    for (const t of names) f[t] = t === lane.input ? x : fwd[t]!;
    return f;
  };
  let g = lg.grad_logits!;
  if (lane.head) g = (await lane.head.session.run(feeds(lane.head.saved, { [GRAD_OUT]: g })))[GRAD_IN]!;
  const G = (await lane.full.session.run(feeds(lane.full.saved, { [GRAD_OUT]: g })))[GRAD_IN]!.data as Float32Array;
  // The stack c̃[k] = G_k·2^e[k]: each length keeps its own power-of-two scale, since the
  // lengths span tens of orders of magnitude (float32 would underflow past k ≈ 50).
  let m = 0;
  for (const v of g.data as Float32Array) m = Math.max(m, Math.abs(v));
  let stack = g.data as Float32Array;
  let exps = [0];
  let maxes = [m];
  for (const ch of lane.chains) {
    if (signal?.aborted) throw new Interrupted();
    const L = exps.length;
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
  const out: SliceSums = { loss: (lg.loss!.data as Float32Array)[0]! * share, norms2: new Float64Array(n + 1), dots: new Float64Array(n + 1), gg: 0, residual2: 0 };
  const Gs = Float64Array.from(G, (v) => v * share);
  if (keep) (out.gradients = []), (out.full = Gs);
  const sum = new Float64Array(D);
  for (let k = 0; k <= n; k++) {
    const f = 2 ** -exps[k]! * share;
    let s2 = 0;
    let dot = 0;
    const base = k * D;
    const gk = keep ? new Float64Array(D) : null;
    for (let i = 0; i < D; i++) {
      const v = stack[base + i]! * f;
      s2 += v * v;
      dot += v * Gs[i]!;
      sum[i]! += v;
      if (gk) gk[i] = v;
    }
    out.norms2[k] = s2;
    out.dots[k] = dot;
    if (gk) out.gradients!.push(gk);
  }
  for (let i = 0; i < D; i++) {
    out.gg += Gs[i]! * Gs[i]!;
    out.residual2 += (sum[i]! - Gs[i]!) ** 2;
  }
  return out;
}
