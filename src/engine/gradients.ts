/**
 * Path-restricted gradients (docs/science.md; Veit et al. 2016, section 6). A batch goes forward
 * once through the intact network; each sample then runs a backward pass in which the
 * gradient flows through the residual branch of k chosen blocks and through the shortcut of
 * all others, and the L2 norm of the gradient at the first block's input is recorded.
 * Samples that make the same choices for the last blocks share that part of the backward.
 */
import { Interrupted } from '../errors.js';
import { buildSoftmaxCrossEntropyGrad, buildVjp, GRAD_IN, GRAD_OUT, withSavedOutputs } from '../surgery/vjp.js';
import type { ResidualBlock, Segment } from '../surgery/blocks.js';
import type { Network } from './network.js';
import { probeShapes } from './probe.js';
import { isHost, type Runtime, type Session, type Tensor, type Value } from './session.js';

type BackKernel = { session: Session; saved: string[] } | { js: (g: Float32Array) => Float32Array };

interface Trie {
  children: Map<string, Trie>;
  samples: number[];
}

/** Consecutive blocks whose backward runs as one onnxruntime call, one kernel per routing. */
interface Group {
  /** Indices into blockSegs. */
  first: number;
  last: number;
}

/**
 * Blocks per backward call. Measured on resnet56 at batch 32 (2 threads): one stage-1
 * residual backward alone takes 2.10 ms, 1.63 ms a block inside a chain of 3 and 1.55 in a
 * chain of 8; a shortcut step 0.54, 0.28 and 0.17 ms. A chain keeps onnxruntime's blocked
 * layout between blocks and saves the round trip through JavaScript; 2^G routings per group
 * bound the number of sessions (72 for resnet56 at G = 3).
 */
export const DEFAULT_GROUP = 3;

function l2(x: Float32Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]! * x[i]!;
  return Math.sqrt(s);
}

/** Largest magnitudes kept in the cotangent: outside [2^-LIMIT, 2^LIMIT] it is rescaled. */
const LIMIT = 16;

/**
 * The cotangent rescaled by a power of two so that its largest magnitude is near 1, with the
 * exponent: `{ g: g·2^shift, shift }`. Path gradients fall by ~5x per residual branch; on
 * resnet110 they reach 1e-41 at k = 54, below float32's smallest normal number (1.2e-38),
 * where values lose their precision and arithmetic on them is many times slower. Every
 * backward rule is linear in the cotangent and scaling by 2^shift is exact, so a norm comes
 * out bit for bit the same wherever float32 would not have underflowed. Returns `g` itself
 * when it is in range.
 */
export function rescale(g: Float32Array): { g: Float32Array; shift: number } {
  let m = 0;
  for (let i = 0; i < g.length; i++) {
    const a = Math.abs(g[i]!);
    if (a > m) m = a;
  }
  if (m === 0 || !Number.isFinite(m) || (m >= 2 ** -LIMIT && m <= 2 ** LIMIT)) return { g, shift: 0 };
  const shift = -Math.round(Math.log2(m));
  const f = 2 ** shift;
  const out = new Float32Array(g.length);
  for (let i = 0; i < g.length; i++) out[i] = g[i]! * f;
  return { g: out, shift };
}

export class PathGradients {
  private forward!: Session;
  private lossGrad!: Session;
  /** Backward kernels of the non-block segments (index into structure.segments). */
  private other = new Map<number, BackKernel>();
  /** Group kernels by `${group}:${routing}` (routing: 'f' residual branch, 's' shortcut, per block). */
  private kernels = new Map<string, Promise<BackKernel>>();
  private savedNames = new Set<string>();
  private shapes!: Map<string, number[]>;
  private blockSegs: { seg: Segment; block: ResidualBlock; index: number }[] = [];
  private groups: Group[] = [];

  private constructor(
    readonly rt: Runtime,
    readonly net: Network,
    readonly batchSize: number,
    readonly groupSize: number,
  ) {}

  /** `group`: blocks per backward call (1 = one call per block, the way before groups). */
  static async create(rt: Runtime, net: Network, batchSize: number, classes: number, o: { group?: number } = {}): Promise<PathGradients> {
    const group = o.group ?? DEFAULT_GROUP;
    if (!Number.isInteger(group) || group < 1 || group > 8) throw new Error(`PathGradients: group ${group} is outside 1-8`);
    const pg = new PathGradients(rt, net, batchSize, group);
    await pg.build(classes);
    return pg;
  }

  private async build(classes: number): Promise<void> {
    const { structure: s, graph: g, model } = this.net;
    // The gradient study checks this for the user (studies/gradients.ts gradientBlocks).
    if (s.kind !== 'residual') throw new Error(`PathGradients: ${model.path} is a ${s.kind} network, without residual blocks`);
    // Static shapes of every tensor at this batch size: the backward rules need them.
    const all = new Set<string>();
    for (const n of g.nodes) for (const o of n.output ?? []) if (o && g.computed.has(o)) all.add(o);
    const shapes = await probeShapes(this.rt, model.proto, this.net.input, [1, ...this.net.preprocessing.inputShape], [...all], model.path, this.batchSize);
    shapes.set(this.net.input, [this.batchSize, ...this.net.preprocessing.inputShape]);
    this.shapes = shapes;
    const saved = this.savedNames;
    const masks = new Map<string, string>();
    const collect = (v: { saved: string[]; masks: Map<string, string> }) => {
      for (const t of v.saved) saved.add(t);
      for (const [m, y] of v.masks) masks.set(m, y);
    };
    const firstBlockSeg = s.segments.findIndex((x) => x.kind === 'block');
    for (let i = s.segments.length - 1; i > firstBlockSeg; i--) {
      const seg = s.segments[i]!;
      if (seg.kind === 'block') continue;
      // ReLU masks come from the one forward per batch; each of the many backwards only multiplies.
      const v = buildVjp(model.proto, g, { from: seg.from, to: seg.to, shapes, reluMasks: true });
      collect(v);
      this.other.set(i, { session: await this.rt.create(v.model, `backward ${seg.kind} ${i}`), saved: v.saved });
    }
    for (let i = firstBlockSeg; i < s.segments.length; i++) {
      const seg = s.segments[i]!;
      if (seg.kind !== 'block') continue;
      const b = s.blocks[seg.unit!]!;
      this.blockSegs.push({ seg, block: b, index: i });
      // Group kernels are built when a routing is first used; what the forward must save is
      // known now, from each block's two parts (a chain's rules are its blocks' rules).
      for (const r of ['f', 's']) collect(this.blockVjp(this.blockSegs.length - 1, this.blockSegs.length - 1, r));
    }
    for (let j = 0; j < this.blockSegs.length; j += this.groupSize) {
      this.groups.push({ first: j, last: Math.min(j + this.groupSize, this.blockSegs.length) - 1 });
    }
    // The saved tensors go only to backward sessions: on a GPU they stay there (the logits,
    // which the loss gradient reads, come back with the rest of the host-side values).
    const keep = [...saved, ...masks.keys()].filter((t) => t !== this.net.output);
    this.forward = await this.rt.create(withSavedOutputs(model.proto, [...saved], masks), 'forward with saved tensors', { keep });
    this.lossGrad = await this.rt.create(buildSoftmaxCrossEntropyGrad(classes), 'softmax cross-entropy gradient');
  }

  /** The backward of blocks first..last (blockSegs indices) with routing r[j - first] per block. */
  private blockVjp(first: number, last: number, r: string) {
    const { graph: g, model } = this.net;
    const cut = [];
    for (let j = first; j <= last; j++) {
      const b = this.blockSegs[j]!.block;
      // 'f': the gradient leaves the Add through the residual branch only, so the shortcut input is cut.
      cut.push({ node: b.addNode, input: r[j - first] === 'f' ? 1 - b.residualSlot : b.residualSlot });
    }
    return buildVjp(model.proto, g, { from: this.blockSegs[first]!.block.input, to: this.blockSegs[last]!.block.output, shapes: this.shapes, cut, reluMasks: true });
  }

  private kernel(gi: number, routing: string): Promise<BackKernel> {
    const key = `${gi}:${routing}`;
    let k = this.kernels.get(key);
    if (!k) {
      const { first, last } = this.groups[gi]!;
      const v = this.blockVjp(first, last, routing);
      const missing = v.saved.find((t) => !this.savedNames.has(t));
      if (missing) throw new Error(`PathGradients: the backward of blocks ${first}-${last} (${routing}) reads '${missing}', which the forward does not save`);
      // Identity shortcuts with nothing after their Adds (pre-activation): the gradient passes unchanged.
      const identity = (v.model.graph!.node ?? []).every((n) => n.opType === 'Identity');
      const label = `backward blocks ${this.blockSegs[first]!.block.index}-${this.blockSegs[last]!.block.index} ${routing}`;
      k = identity ? Promise.resolve({ js: (gr: Float32Array) => gr }) : this.rt.create(v.model, label).then((session) => ({ session, saved: v.saved }));
      this.kernels.set(key, k);
    }
    return k;
  }

  private async back(k: BackKernel, g: Float32Array, dims: number[], fwd: Map<string, Value>): Promise<Float32Array> {
    if ('js' in k) return k.js(g);
    const feeds: Record<string, Value> = { [GRAD_OUT]: { data: g, dims } };
    for (const t of k.saved) feeds[t] = fwd.get(t)!;
    const out = await k.session.run(feeds);
    return out[GRAD_IN]!.data as Float32Array;
  }

  /**
   * Runs the samples of one batch. `choices[s]` lists the blocks whose residual branch
   * carries the gradient in sample s. Returns the gradient norm at the first block's input
   * for each sample, and the batch loss.
   */
  async runBatch(
    images: Float32Array,
    labels: Int32Array,
    choices: number[][],
    signal?: AbortSignal,
    keepGradients = false,
  ): Promise<{ norms: number[]; loss: number; gradients?: Float64Array[] }> {
    const n = labels.length;
    const x: Tensor = { data: images, dims: [n, ...this.net.preprocessing.inputShape] };
    const res = await this.forward.runMixed({ [this.net.input]: x });
    const fwd = new Map<string, Value>(Object.entries(res));
    fwd.set(this.net.input, x);
    try {
      return await this.backward(res, fwd, labels, choices, signal, keepGradients);
    } finally {
      for (const v of fwd.values()) if (!isHost(v)) v.dispose();
    }
  }

  private async backward(
    res: Record<string, Value>,
    fwd: Map<string, Value>,
    labels: Int32Array,
    choices: number[][],
    signal: AbortSignal | undefined,
    keepGradients: boolean,
  ): Promise<{ norms: number[]; loss: number; gradients?: Float64Array[] }> {
    const { structure: s } = this.net;
    const n = labels.length;
    const lg = await this.lossGrad.run({ logits: res[this.net.output]!, labels: { data: Float32Array.from(labels), dims: [n] } });
    const loss = (lg.loss!.data as Float32Array)[0]!;
    // Backward through head and glue after the last block (shared by every sample).
    let g = lg.grad_logits!.data as Float32Array;
    const lastBlockSeg = this.blockSegs[this.blockSegs.length - 1]!.index;
    for (let i = s.segments.length - 1; i > lastBlockSeg; i--) {
      g = await this.back(this.other.get(i)!, g, this.shapeAt(s.segments[i]!.to, n), fwd);
    }
    // The samples' routings, group by group from the last block down, form a trie: shared
    // routings, shared work.
    const root: Trie = { children: new Map(), samples: [] };
    choices.forEach((blocks, si) => {
      const set = new Set(blocks);
      let node = root;
      for (let gi = this.groups.length - 1; gi >= 0; gi--) {
        const { first, last } = this.groups[gi]!;
        let key = '';
        for (let j = first; j <= last; j++) key += set.has(this.blockSegs[j]!.block.index) ? 'f' : 's';
        let c = node.children.get(key);
        if (!c) node.children.set(key, (c = { children: new Map(), samples: [] }));
        node = c;
      }
      node.samples.push(si);
    });
    const norms: number[] = Array(choices.length).fill(NaN);
    const gradients: Float64Array[] = [];
    // `grad` holds the gradient times 2^shift (see rescale); norms and kept gradients are
    // scaled back in float64, where even k = 54's 1e-41 is an ordinary number.
    const walk = async (node: Trie, gi: number, grad: Float32Array, shift: number): Promise<void> => {
      if (gi < 0) {
        const back = 2 ** -shift;
        const v = l2(grad) * back;
        for (const si of node.samples) {
          norms[si] = v;
          if (keepGradients) gradients[si] = Float64Array.from(grad, (e) => e * back);
        }
        return;
      }
      if (signal?.aborted) throw new Interrupted();
      const { first, last } = this.groups[gi]!;
      for (const [routing, child] of node.children) {
        const kernel = await this.kernel(gi, routing);
        let gb = await this.back(kernel, grad, this.shapeAt(this.blockSegs[last]!.block.output, n), fwd);
        // Glue between the previous group and this one: every path passes it.
        if (first > 0) {
          for (let i = this.blockSegs[first]!.index - 1; i > this.blockSegs[first - 1]!.index; i--) gb = await this.back(this.other.get(i)!, gb, this.shapeAt(s.segments[i]!.to, n), fwd);
        }
        // An identity kernel changes no magnitude: no need to scan its output.
        const r = 'js' in kernel ? { g: gb, shift: 0 } : rescale(gb);
        await walk(child, gi - 1, r.g, shift + r.shift);
      }
    };
    const start = rescale(g);
    await walk(root, this.groups.length - 1, start.g, start.shift);
    return keepGradients ? { norms, loss, gradients } : { norms, loss };
  }

  private shapeAt(t: string, n: number): number[] {
    return [n, ...this.net.shapes.get(t)!.slice(1)];
  }
}
