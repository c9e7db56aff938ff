/**
 * The exact decomposition of the gradient by path length (docs/science.md): G = Σ_k G_k at
 * the first block's input, G_k the sum of the path-restricted gradients of all C(n, k) paths
 * of length k. One forward per batch, then one stacked backward per block from the last to
 * the first (surgery/stack.ts): c'[k] = M S c[k] + M R c[k-1], n(n+1)/2 residual-branch VJPs
 * for all lengths at once. The full gradient G comes from its own backward, so that
 * ‖Σ_k G_k − G‖ checks the whole recursion on every batch. A batch runs as slices of its
 * images (exact-slice.ts), side by side on worker threads (lanes) when the runtime may use
 * more than one thread: onnxruntime's own threads barely help on stacks this small (measured
 * 2026-12-01 on 2 cores: user CPU ≈ wall).
 */
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Interrupted, UserError } from '../errors.js';
import { encodeModel } from '../loader/proto.js';
import { stackedChainBackward, type ChainStep } from '../surgery/stack.js';
import { buildSoftmaxCrossEntropyGrad, buildVjp, withSavedOutputs } from '../surgery/vjp.js';
import { openLane, runSlice, type Lane, type LaneSpec, type ChainModel, type SliceSums } from './exact-slice.js';
import type { SliceJob, WorkerReply } from './exact-worker.js';
import type { Network } from './network.js';
import { probeShapes } from './probe.js';
import type { Runtime } from './session.js';
import { chooseExact, defaultBudget, type ExactChoice, type ExactFootprint } from './memory.js';

/**
 * Rows (images × lengths) of the largest stack one backward call holds; past it a batch runs
 * on slices of its images (each image's gradient is independent of the others' once the loss
 * gradient is known), and slices are what the lanes (worker threads) share out. Big stacks are
 * slow, not only large: on resnet56 at batch 32 (2-core x86, 2026-12-01, one thread, CPU time
 * per batch) the whole batch at once (896 rows) took 4.6 s, slices of 224 rows 2.0 s. Smaller
 * still costs no CPU and holds less in each chain's arena, which every lane keeps for itself.
 * Measured 2026-12-02 (2-core AMD EPYC, load average 14-22 from other jobs, so CPU seconds
 * are ~2.5x an idle machine's; 4 batches of 32, CPU s per batch / peak RSS): resnet56, one
 * lane: 256 rows 3.93 / 518 MB, 128 rows 3.90 / 439 MB, 64 rows 3.69 / 399 MB; two lanes:
 * 128 rows 3.25 / 810 MB, 64 rows 3.38 / 552 MB. resnet110, two lanes, 2 batches: 128 rows
 * 11.4 / 919 MB, 64 rows 11.1 / 860 MB.
 */
export const DEFAULT_MAX_ROWS = 64;

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

/**
 * Blocks per backward call. One call per run of blocks keeps onnxruntime's arena and blocked
 * layout across them and skips the trip through JavaScript; lengths are brought back near 1
 * between calls; within 9 blocks a length's stored magnitude moves far less than float32's
 * range allows (measured: at most 2^±37 on resnet110, against 2^±126). Measured on resnet56
 * at batch 32, one thread (2-core x86, 2026-12-01): 1.5 s CPU per batch, against 8.0 s with
 * one call and a fresh allocation of every intermediate per block.
 */
export const CHAIN_BLOCKS = 9;


/**
 * Worker threads that run slices' backwards side by side, each on its own sessions
 * (exact-worker.ts). A slice goes to the first idle worker; the caller gets one promise per
 * slice and adds the results in slice order, so the sums do not depend on which finished first.
 */
class Lanes {
  private idle: Worker[] = [];
  private queue: { job: SliceJob; done: (r: WorkerReply) => void }[] = [];
  private waiting = new Map<number, (r: WorkerReply) => void>();
  private next = 0;
  private dead: Error | null = null;

  private constructor(private readonly workers: Worker[]) {}

  get size(): number {
    return this.workers.length;
  }

  static async start(spec: LaneSpec, lanes: number, threads: number): Promise<Lanes> {
    const workers = Array.from({ length: lanes }, () => spawnWorker({ spec, threads }));
    const pool = new Lanes(workers);
    try {
      await Promise.all(
        workers.map(
          (w) =>
            new Promise<void>((resolve, reject) => {
              w.once('message', (m: WorkerReply) => ('error' in m ? reject(replyError(m.error)) : resolve()));
              w.once('error', reject);
            }),
        ),
      );
    } catch (e) {
      await pool.close();
      throw e;
    }
    for (const w of workers) {
      w.on('message', (m: WorkerReply) => pool.replied(w, m));
      w.on('error', (e) => pool.fail(e));
      w.on('exit', (code) => pool.fail(new Error(`exited with code ${code}`)));
      // Idle workers do not keep the process alive; one with a slice in hand does.
      w.unref();
      pool.idle.push(w);
    }
    return pool;
  }

  run(job: Omit<SliceJob, 'id'>): Promise<SliceSums> {
    if (this.dead) return Promise.reject(this.dead);
    return new Promise<SliceSums>((resolve, reject) => {
      const done = (r: WorkerReply) => ('sums' in r ? resolve(r.sums) : 'error' in r ? reject(replyError(r.error)) : reject(new Error('exact: a worker replied out of turn')));
      this.queue.push({ job: { ...job, id: this.next++ }, done });
      this.dispatch();
    });
  }

  private dispatch(): void {
    while (this.idle.length && this.queue.length) {
      const w = this.idle.shift()!;
      const { job, done } = this.queue.shift()!;
      this.waiting.set(job.id, done);
      w.ref();
      w.postMessage(job);
    }
  }

  private replied(w: Worker, m: WorkerReply): void {
    if (!('id' in m) || m.id === null) return;
    const done = this.waiting.get(m.id);
    this.waiting.delete(m.id);
    w.unref();
    this.idle.push(w);
    done?.(m);
    this.dispatch();
  }

  private fail(e: Error): void {
    if (this.dead) return;
    this.dead = e;
    const all = [...this.waiting.values(), ...this.queue.map((q) => q.done)];
    this.waiting.clear();
    this.queue = [];
    for (const done of all) done({ id: null, error: { message: `exact: a worker thread failed: ${e.message}`, user: false } });
  }

  async close(): Promise<void> {
    this.dead ??= new Error('exact: the worker threads were closed');
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/**
 * Built, the worker is a .js beside this file. Run from source under tsx (tests, bench), it is
 * a .ts, and a worker thread does not inherit the parent's `--import tsx`: it registers tsx first.
 */
function spawnWorker(workerData: unknown): Worker {
  const here = fileURLToPath(import.meta.url);
  const file = path.join(path.dirname(here), `exact-worker${path.extname(here)}`);
  if (!file.endsWith('.ts')) return new Worker(file, { workerData });
  const boot = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((t) => t.register()).then(() => import(${JSON.stringify(pathToFileURL(file).href)}))`;
  return new Worker(boot, { eval: true, workerData });
}

function sharedSpec(spec: LaneSpec): LaneSpec {
  const share = <T extends { model: Uint8Array }>(m: T): T => {
    const u = new Uint8Array(new SharedArrayBuffer(m.model.length));
    u.set(m.model);
    return { ...m, model: u };
  };
  return { ...spec, forward: share(spec.forward), lossGrad: share(spec.lossGrad), head: spec.head && share(spec.head), full: share(spec.full), chains: spec.chains.map(share) };
}

function replyError(e: { message: string; user: boolean }): Error {
  return e.user ? new UserError(e.message) : new Error(e.message);
}

export class ExactGradients {
  /** The sessions in this thread (one lane), or the workers' (several). */
  private local: Lane | null = null;
  private lanes: Lanes | null = null;
  readonly n: number;

  /** What the sessions hold (memory.ts), and the slices and lanes the memory budget allowed. */
  footprint: ExactFootprint | null = null;
  choice: ExactChoice | null = null;

  private constructor(
    readonly rt: Runtime,
    readonly net: Network,
    readonly batchSize: number,
    public maxRows: number,
  ) {
    this.n = net.structure.blocks.length;
  }

  /**
   * `lanes`: slices run side by side in that many worker threads; default one per thread the
   * runtime may use (--threads, else every core), at most one per slice of a full batch. One
   * lane runs in this thread. Slicing does not depend on it, and neither do the sums.
   * `memory`: the budget (bytes; default memory.ts's defaultBudget) that the slices and lanes
   * not given here are cut to fit (memory.ts's chooseExact); the batch never changes.
   */
  static async create(rt: Runtime, net: Network, batchSize: number, classes: number, o: { maxRows?: number; lanes?: number; memory?: number } = {}): Promise<ExactGradients> {
    const eg = new ExactGradients(rt, net, batchSize, o.maxRows ?? DEFAULT_MAX_ROWS);
    await eg.build(classes, o);
    return eg;
  }

  /**
   * Slices [lo, hi) of a batch of N images, one backward call each: as few as keep the deepest
   * stack within maxRows, as even as can be (so that lanes finish together).
   */
  slices(N: number): [number, number][] {
    const most = Math.max(1, Math.floor(this.maxRows / (this.n + 1)));
    const count = Math.ceil(N / most);
    const out: [number, number][] = [];
    for (let i = 0, lo = 0; i < count; i++) {
      const hi = lo + Math.floor(N / count) + (i < N % count ? 1 : 0);
      out.push([lo, hi]);
      lo = hi;
    }
    return out;
  }

  /** Lanes in use (1: this thread). */
  get laneCount(): number {
    return this.lanes ? this.lanes.size : 1;
  }

  private async build(classes: number, o: { maxRows?: number; lanes?: number; memory?: number }): Promise<void> {
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
    let head: LaneSpec['head'] = null;
    if (last.output !== this.net.output) {
      const v = buildVjp(model.proto, g, { from: last.output, to: this.net.output, shapes, reluMasks: true });
      head = { model: encodeModel(v.model), saved: collect(v), label: 'exact: backward of the head' };
    }
    // Chains of up to CHAIN_BLOCKS blocks within a stage, from the last block down; the glue
    // before a block (between it and the previous one) goes with it.
    const chains: ChainModel[] = [];
    const elems = (d: number[] | undefined) => (d ? d.slice(1).reduce((a, b) => a * b, 1) : 0);
    // Per image: each chain's lengths out times the widest tensor among its blocks.
    let stackElems = 0;
    for (let j = n - 1; j >= 0; ) {
      const steps: ChainStep[] = [];
      const top = j;
      const L0 = n - j;
      do {
        steps.push({ block: blocks[j]! });
        if (j > 0 && blocks[j - 1]!.output !== blocks[j]!.input) steps.push({ glue: { from: blocks[j - 1]!.output, to: blocks[j]!.input } });
        j--;
      } while (j >= 0 && top - j < CHAIN_BLOCKS && blocks[j]!.stage === blocks[top]!.stage);
      let widest = 0;
      for (let i = j + 1; i <= top; i++) widest = Math.max(widest, elems(shapes.get(blocks[i]!.input)), elems(shapes.get(blocks[i]!.output)));
      stackElems += (L0 + top - j) * widest;
      const v = stackedChainBackward(model.proto, g, steps, shapes, L0);
      const label = `exact: blocks ${blocks[j + 1]!.index}-${blocks[top]!.index}, ${L0} lengths in`;
      chains.push({ model: encodeModel(v.model), saved: collect(v), label, blocks: top - j, inDims: shapes.get(blocks[top]!.output)!.slice(1) });
    }
    const fv = buildVjp(model.proto, g, { from: blocks[0]!.input, to: last.output, shapes, reluMasks: true });
    const full = { model: encodeModel(fv.model), saved: collect(fv), label: 'exact: full backward of the blocks' };
    const spec: LaneSpec = {
      n,
      input: this.net.input,
      output: this.net.output,
      inputDims: this.net.preprocessing.inputShape,
      forward: { model: encodeModel(withSavedOutputs(model.proto, [...saved], masks)), saved: [], label: 'exact: forward with saved tensors' },
      lossGrad: { model: encodeModel(buildSoftmaxCrossEntropyGrad(classes)), saved: [], label: 'softmax cross-entropy gradient' },
      head,
      full,
      chains,
    };
    let kept = elems(shapes.get(this.net.input));
    for (const t of saved) kept += elems(shapes.get(masks.get(t) ?? t));
    const footprint = (this.footprint = { weights: model.bytes.length, stackBytes: 4 * stackElems, imageBytes: 4 * kept });
    const threads = this.rt.threads ?? os.availableParallelism();
    // Worker threads only on the CPU: a GPU device runs one slice at a time anyway.
    const cpu = (await this.rt.resolveDevice()) === 'cpu';
    const choice = (this.choice = chooseExact(footprint, {
      batch: this.batchSize,
      images: Math.floor(this.maxRows / (n + 1)),
      lanes: cpu ? (o.lanes ?? threads) : 1,
      budget: o.memory ?? defaultBudget(),
      budgetFrom: o.memory === undefined ? 'free memory' : '--memory',
      fixed: { images: o.maxRows !== undefined, lanes: o.lanes !== undefined },
    }));
    if (choice.images < Math.max(1, Math.floor(this.maxRows / (n + 1)))) this.maxRows = choice.images * (n + 1);
    const want = Math.min(choice.lanes, this.slices(this.batchSize).length);
    if (want > 1 && cpu) {
      // The models in shared memory: every worker reads the one copy (a clone each held all
      // the weights once more per lane).
      this.lanes = await Lanes.start(sharedSpec(spec), want, Math.max(1, Math.floor(threads / want)));
      const lanesOpen = this.lanes;
      this.rt.atClose(() => lanesOpen.close());
    } else this.local = await openLane(this.rt, spec);
  }

  /**
   * One batch: loss = mean cross-entropy over it, G and every G_k at the first block's input.
   * `keepGradients` returns them (tests).
   */
  async runBatch(images: Float32Array, labels: Int32Array, signal?: AbortSignal, keepGradients = false): Promise<ExactBatch> {
    const N = labels.length;
    const per = images.length / N;
    const parts: Promise<SliceSums>[] = [];
    for (const [lo, hi] of this.slices(N)) {
      if (signal?.aborted) throw new Interrupted();
      const x = images.subarray(lo * per, hi * per);
      const y = labels.subarray(lo, hi);
      // Copies to a worker (a view would take its whole buffer along); views here.
      if (this.lanes) parts.push(this.lanes.run({ images: x.slice(), labels: y.slice(), batch: N, keep: keepGradients }));
      else parts.push(Promise.resolve(await runSlice(this.local!, x, y, N, keepGradients, signal)));
    }
    const sums = await Promise.all(parts);
    if (signal?.aborted) throw new Interrupted();
    // Slice by slice in order, whichever lane finished first.
    const n = this.n;
    const out: ExactBatch = { images: N, loss: 0, norms: new Float64Array(n + 1), dots: new Float64Array(n + 1), gg: 0, residual2: 0 };
    const norms2 = new Float64Array(n + 1);
    for (const s of sums) {
      out.loss += s.loss;
      for (let k = 0; k <= n; k++) {
        norms2[k]! += s.norms2[k]!;
        out.dots[k]! += s.dots[k]!;
      }
      out.gg += s.gg;
      out.residual2 += s.residual2;
    }
    for (let k = 0; k <= n; k++) out.norms[k] = Math.sqrt(norms2[k]!);
    if (keepGradients) {
      const cat = (parts: Float64Array[]) => {
        const r = new Float64Array(parts.reduce((a, p) => a + p.length, 0));
        let o = 0;
        for (const p of parts) (r.set(p, o), (o += p.length));
        return r;
      };
      out.gradients = Array.from({ length: n + 1 }, (_, k) => cat(sums.map((s) => s.gradients![k]!)));
      out.full = cat(sums.map((s) => s.full!));
    }
    return out;
  }
}
