/**
 * The block-wise engine: many changed programs evaluated per batch with their shared
 * prefixes computed once. The programs' prefix trie runs as one fused onnxruntime session,
 * or, for very large studies, as several, each a piece of the trie starting where the one
 * above it leaves off (pieces.ts). Without prefix sharing, or on request, the trie is walked
 * depth first through sub-model sessions. Single programs on a fixed data set (explore) can
 * start from checkpointed intact activations.
 */
import { Interrupted } from '../errors.js';
import type { Batch, Dataset } from '../loader/data/dataset.js';
import { encodeModel, type ModelProto } from '../loader/proto.js';
import { withOutputs } from '../surgery/graph.js';
import { distinctSteps, intactProgram, modeKey, programsModel, programSteps, stepModel, stepsModel, unitCount, type BlockMode, type Program, type Step } from '../surgery/split.js';
import type { Network } from './network.js';
import { pieces, type Piece } from './pieces.js';
import { isHost, type DeviceTensor, type Runtime, type Session, type Tensor, type Value } from './session.js';

export interface EvalResult {
  correct: number;
  total: number;
  /** Samples whose logits held NaN or infinity: counted as errors, reported apart. */
  nonFinite: number;
  error: number;
  perClass: { correct: number[]; total: number[] };
  /** Samples whose label is among the 5 largest logits; counted only for models of more than 10 classes. */
  top5?: number;
}

export interface EvalOptions {
  batch?: number;
  /** Share prefixes across programs (default true); false runs each program from the start. */
  cache?: boolean;
  /**
   * The most distinct steps in one fused onnxruntime session (default FUSE_UP_TO): a larger
   * trie is cut into pieces of at most this many (see pieces.ts), so that building the
   * sessions stays cheap. 0: walk the trie with a session per chain of steps.
   */
  fuseUpTo?: number;
  /** Told once per engine, in one line, when a trie is cut into several fused sessions. */
  onNote?: (line: string) => void;
  /** Called after each batch with the number of samples done. */
  onProgress?: (samplesDone: number, total: number) => void;
  /** Checked between batches; on abort, evaluate throws PartialResults with what is finished. */
  signal?: AbortSignal;
  /** Resume: skip the first `startBatch` batches, whose counts are in `initial`. */
  startBatch?: number;
  initial?: EvalResult[];
  /** Called after each finished batch (batch index, counts so far), e.g. to checkpoint. */
  onBatch?: (batchIndex: number, results: EvalResult[]) => void | Promise<void>;
  /**
   * Intact activations kept across calls on this data set (see Checkpoints): each program
   * starts from the deepest stored one its intact prefix reaches, instead of the input.
   */
  checkpoints?: Checkpoints;
}

/**
 * Activations of the intact network at a few step boundaries, for every sample of one data
 * set, kept between evaluations. Explore measures one configuration per key press on the same
 * subset: with these, deleting block i reruns only from the checkpoint at or before i.
 * Boundaries are every s-th step, s the smallest that fits `budgetBytes`.
 *
 * On a GPU (Runtime.keeps) the activations stay in the device's memory, never copied through
 * JavaScript; the logits (the last position, scored on the host) come back. A device tensor
 * cannot be sliced, so there they are kept per chunk of CHUNK images and a batch runs chunk by
 * chunk.
 */
export class Checkpoints {
  /** The intact network's steps; position p is the input of step p (0: the network's input). */
  readonly intact: Step[];
  readonly positions: number[];
  private store = new Map<number, Float32Array>();
  /** On the device: `${pos}:${first image}` of each chunk. */
  private device = new Map<string, DeviceTensor>();
  private filled: Uint8Array;
  /**
   * Images per device chunk, from multiples of it to the next (the last to the end): explore's
   * batches (128 for the key pressed, 64 for its sweeps) are each whole chunks.
   */
  static readonly CHUNK = 64;

  constructor(
    readonly net: Network,
    readonly size: number,
    readonly budgetBytes = 256 * 2 ** 20,
  ) {
    const steps = (this.intact = programSteps(net.structure, intactProgram(unitCount(net.structure))));
    const per = (pos: number) => this.sampleDims(pos).reduce((a, b) => a * b, 1);
    const last = steps.length;
    let chosen: number[] = [last];
    for (let stride = 1; stride <= last; stride++) {
      const cand = [...new Set([...Array.from({ length: Math.floor(last / stride) }, (_, i) => (i + 1) * stride), last])];
      if (cand.every((p) => per(p) > 0) && cand.reduce((a, p) => a + per(p) * size * 4, 0) <= budgetBytes) {
        chosen = cand;
        break;
      }
    }
    this.positions = chosen.sort((a, b) => a - b);
    this.filled = new Uint8Array(size);
  }

  has(offset: number, n: number): boolean {
    for (let i = offset; i < offset + n; i++) if (!this.filled[i]) return false;
    return true;
  }

  /** Whether images offset..offset+n-1 are whole device chunks. */
  aligned(offset: number, n: number): boolean {
    const C = Checkpoints.CHUNK;
    return offset % C === 0 && (n % C === 0 || offset + n === this.size);
  }

  put(pos: number, offset: number, t: Value): void {
    if (!isHost(t)) {
      const key = `${pos}:${offset}`;
      this.device.get(key)?.dispose();
      this.device.set(key, t);
      return;
    }
    const n = t.dims[0]!;
    const per = t.data.length / n;
    let a = this.store.get(pos);
    if (!a) this.store.set(pos, (a = new Float32Array(per * this.size)));
    a.set(t.data as Float32Array, offset * per);
  }

  markFilled(offset: number, n: number): void {
    this.filled.fill(1, offset, offset + n);
  }

  /** The deepest stored position ≤ q (0: the input itself). */
  best(q: number): number {
    let c = 0;
    for (const p of this.positions) if (p <= q) c = p;
    return c;
  }

  /** The stored activations at `pos` of samples offset..offset+n-1 (on the device: one whole chunk). */
  view(pos: number, offset: number, n: number): Value {
    const d = this.device.get(`${pos}:${offset}`);
    if (d) {
      if (d.dims[0] !== n) throw new Error(`checkpoint chunk at image ${offset} holds ${d.dims[0]} images, not ${n}`);
      return d;
    }
    const a = this.store.get(pos)!;
    const per = a.length / this.size;
    return { data: a.subarray(offset * per, (offset + n) * per), dims: [n, ...this.sampleDims(pos)] };
  }

  /** One sample's activation shape at `pos` ([0] when unknown: such a boundary is not kept). */
  private sampleDims(pos: number): number[] {
    const shape = this.net.shapes.get(this.net.structure.segments[this.intact[pos - 1]!.seg]!.to);
    return shape && shape.length ? shape.slice(1) : [0];
  }

  /** Bytes held in host memory (device chunks not included). */
  get bytes(): number {
    return [...this.store.values()].reduce((a, x) => a + x.byteLength, 0);
  }

  /** Frees the device chunks. */
  dispose(): void {
    for (const t of this.device.values()) t.dispose();
    this.device.clear();
    this.filled.fill(0);
  }
}

/**
 * The most distinct steps fused into one session. onnxruntime's NCHWc layout pass takes most of
 * the build and grows faster than the graph (2026-12-02, 2-core AMD EPYC with AVX-512): resnet152's
 * 1377 steps took 22-27 s in one session, 9.9 s as four pieces of at most 400 steps; but the
 * pieces ran a batch 3% slower and doubled the peak memory (weights copied per piece, an
 * arena each: 3.1 GB against 1.4 GB at batch 40), so up to here one session is built. Larger
 * tries are cut into pieces of PIECE_STEPS, each starting where the piece above it leaves off.
 */
export const FUSE_UP_TO = 2000;

/**
 * The pieces' size past FUSE_UP_TO. resnet110's k-subset study (155 configurations, 4586 steps,
 * 1000 images; 2026-12-02, same machine): pieces of 250 steps 176 s and 1279 MiB peak, of 400
 * 188 s and 990 MiB; walking the trie a session per chain 216 s and 2167 MiB. On 200 images
 * pieces of 700 took 47.7 s and 693 MiB against 41.7 s and 957 MiB for 400. Each piece holds
 * its own copy of the weights it uses.
 */
export const PIECE_STEPS = 400;

/** The line said once when a study's trie is cut into several fused sessions. */
export function piecesNote(programs: number, steps: number, f: { pieces: unknown[]; modelBytes: number }, limit: number): string {
  const mb = Math.round(f.modelBytes / 2 ** 20);
  return `note: the ${programs} configurations share ${steps} distinct block steps; running them as ${f.pieces.length} onnxruntime sessions of at most ${limit} steps, each starting where the one before leaves off (one session that large would take minutes to build); each holds the weights it uses, ${mb} MiB in all`;
}

/** Thrown on interruption: the counts over the batches that finished. */
export class PartialResults extends Interrupted {
  constructor(
    readonly results: EvalResult[],
    readonly samplesDone: number,
    readonly batchesDone: number,
  ) {
    super(`interrupted after ${samplesDone} samples`);
  }
}

/** The fused programs: the trie's pieces (pieces.ts) and a session for each. */
interface Fused {
  pieces: Piece[];
  sessions: Session[];
  /** The sessions' models, encoded: mostly the weights each piece holds. */
  modelBytes: number;
}

/** Runs piece `i` on its input, scores the programs it ends, then the pieces it feeds (depth first). */
async function runPiece(f: Fused, i: number, x: Tensor, batch: Batch, results: EvalResult[]): Promise<void> {
  const outs = await f.sessions[i]!.run({ x });
  for (const [oi, o] of f.pieces[i]!.outputs.entries()) {
    const y = outs[`reslens_out_${oi}`]!;
    for (const pi of o.programs) score(y, batch, results[pi]!);
    for (const c of o.feeds) await runPiece(f, c, y, batch, results);
  }
}

type Kernel = { session: Session; input: string; output: string } | { js: (x: Tensor) => Tensor };

interface TrieNode {
  /** The steps from the parent to this node: one, or a chain merged by `compress`. */
  steps: Step[];
  children: Map<string, TrieNode>;
  programs: number[];
}

/**
 * Merges every run of trie nodes without branching into one node, so that a run of steps
 * (e.g. 'block i deleted, then the rest of the network') is one session call instead of one
 * per block: fewer copies in and out of onnxruntime, and its layout transforms stay inside.
 */
function compress(node: TrieNode): void {
  for (const [key, child] of node.children) {
    let c = child;
    const steps = [...c.steps];
    while (c.children.size === 1 && c.programs.length === 0) {
      c = c.children.values().next().value!;
      steps.push(...c.steps);
    }
    const merged: TrieNode = { steps, children: c.children, programs: c.programs };
    node.children.set(key, merged);
    compress(merged);
  }
}

/** The programs' steps as a prefix trie (each program its own path without `cache`), compressed. */
function trieOf(stepLists: Step[][], cache: boolean): TrieNode {
  const root: TrieNode = { steps: [], children: new Map(), programs: [] };
  stepLists.forEach((steps, pi) => {
    let node = root;
    steps.forEach((st, i) => {
      const key = cache ? st.key : `${pi}#${st.key}`;
      let child = node.children.get(key);
      if (!child) node.children.set(key, (child = { steps: [st], children: new Map(), programs: [] }));
      node = child;
      if (i === steps.length - 1) node.programs.push(pi);
    });
  });
  compress(root);
  return root;
}

function relu(x: Tensor): Tensor {
  const src = x.data as Float32Array;
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i]! > 0 ? src[i]! : 0;
  return { data: out, dims: x.dims };
}

export class Engine {
  private kernels = new Map<string, Promise<Kernel>>();
  /** Sessions over several steps (merged chains, the spine), built once each. */
  private sessions = new Map<string, Promise<Session>>();
  /** The fused programs' pieces and their sessions, by the programs' steps. */
  private fused = new Map<string, Promise<Fused>>();
  /** Evaluations now running on each fused plan (by key). */
  private fusedRuns = new Map<string, number>();
  /** Whether a trie cut into pieces was reported (once per engine, e.g. per command). */
  private piecesNoted = false;

  constructor(
    readonly rt: Runtime,
    readonly net: Network,
  ) {}

  private kernelKey(step: Step): string {
    const m = step.mode;
    return `${step.seg}:${step.unit ?? ''}:${m.kind === 'mean' ? `mean@${step.unit}` : modeKey(m)}`;
  }

  /** The kernel that runs one step; deletions that need no compute run in JavaScript. */
  kernel(step: Step): Promise<Kernel> {
    const key = this.kernelKey(step);
    let k = this.kernels.get(key);
    if (!k) {
      k = this.makeKernel(step);
      this.kernels.set(key, k);
    }
    return k;
  }

  private async makeKernel(step: Step): Promise<Kernel> {
    const { structure: s, graph: g, model } = this.net;
    const seg = s.segments[step.seg]!;
    if (step.mode.kind === 'delete') {
      if (seg.kind === 'layer') return { js: (x) => x };
      const b = s.blocks[step.unit!]!;
      if (b.shortcutKind === 'identity' && !b.post) return { js: (x) => x };
      if (b.shortcutKind === 'identity' && b.post === 'Relu') return { js: relu };
    }
    const sub = stepModel(model.proto, g, s, step);
    const session = await this.rt.create(sub, `${model.path}, ${seg.kind} ${step.unit ?? step.seg} ${modeKey(step.mode)}`);
    return { session, input: session.inputNames[0]!, output: session.outputNames[0]! };
  }

  async runStep(step: Step, x: Tensor): Promise<Tensor> {
    const k = await this.kernel(step);
    if ('js' in k) return k.js(x);
    const out = await k.session.run({ [k.input]: x });
    return out[k.output]!;
  }

  /** Runs consecutive steps; a run of several is one session (built once, cached). */
  async runSteps(steps: Step[], x: Value): Promise<Tensor> {
    // A device tensor goes to a session even for one step: the JavaScript kernels read host data.
    if (steps.length === 1 && isHost(x)) return this.runStep(steps[0]!, x);
    const key = steps.map((st) => this.kernelKey(st)).join('>');
    const { structure: s, graph: g, model } = this.net;
    const session = await this.session(key, `steps ${key}`, () => stepsModel(model.proto, g, s, steps));
    return (await session.run({ x }))['y']!;
  }

  /** The session cached under `key`, built by `build` the first time. */
  private session(key: string, label: string, build: () => ModelProto, o?: { arena?: boolean; keep?: string[] }): Promise<Session> {
    let p = this.sessions.get(key);
    if (!p) {
      p = this.rt.create(build(), label, o);
      this.sessions.set(key, p);
    }
    return p;
  }

  /** Evaluates every program on the data set; results in the programs' order. */
  async evaluate(programs: Program[], data: Dataset, opts: EvalOptions = {}): Promise<EvalResult[]> {
    const stepLists = programs.map((p) => programSteps(this.net.structure, p));
    const cache = opts.cache ?? true;
    const limit = opts.fuseUpTo ?? FUSE_UP_TO;
    if (opts.checkpoints || programs.length < 2 || limit <= 0) return this.evaluateWith(null, stepLists, data, opts);
    // Without the cache each program is its own path from the input: keys that no two share.
    const lists = cache ? stepLists : stepLists.map((steps, pi) => steps.map((st) => ({ ...st, key: `${pi}#${st.key}` })));
    const steps = distinctSteps(lists);
    const size = steps <= limit ? steps : Math.min(limit, PIECE_STEPS);
    const key = `${this.fusedKey(stepLists)}@${size}${cache ? '' : ' apart'}`;
    this.fusedRuns.set(key, (this.fusedRuns.get(key) ?? 0) + 1);
    try {
      const fused = await this.fusedSessions(key, lists, size);
      if (fused.pieces.length > 1 && !this.piecesNoted && opts.onNote) {
        this.piecesNoted = true;
        opts.onNote(piecesNote(programs.length, steps, fused, size));
      }
      return await this.evaluateWith(fused, stepLists, data, opts);
    } finally {
      this.fusedRuns.set(key, this.fusedRuns.get(key)! - 1);
    }
  }

  private async evaluateWith(fused: Fused | null, stepLists: Step[][], data: Dataset, opts: EvalOptions): Promise<EvalResult[]> {
    const classes = data.classes ?? 0;
    const results: EvalResult[] = opts.initial
      ? structuredClone(opts.initial)
      : stepLists.map(() => ({
          correct: 0, total: 0, nonFinite: 0, error: 0,
          perClass: { correct: Array(classes).fill(0), total: Array(classes).fill(0) },
        }));
    const root = fused || opts.checkpoints ? null : trieOf(stepLists, opts.cache ?? true);
    const bs = opts.batch ?? 128;
    const start = opts.startBatch ?? 0;
    let done = Math.min(data.size, start * bs);
    let b = start;
    const finish = () => {
      for (const r of results) r.error = r.total ? 1 - r.correct / r.total : 0;
    };
    for await (const batch of batchesFrom(data, bs, start)) {
      if (opts.signal?.aborted) {
        finish();
        throw new PartialResults(results, done, b);
      }
      const x: Tensor = { data: batch.images, dims: [batch.n, ...data.shape] };
      // A batch always finishes, so counts never mix a half-scored batch.
      if (opts.checkpoints) await this.fromCheckpoints(opts.checkpoints, stepLists, x, batch, done, results);
      else if (fused) await runPiece(fused, 0, x, batch, results);
      else await this.walkRoot(root!, x, batch, results);
      done += batch.n;
      b++;
      opts.onProgress?.(done, data.size);
      await opts.onBatch?.(b - 1, results);
    }
    finish();
    return results;
  }

  /**
   * The spine: the trie path of single full steps from the root (the intact network, when it
   * is among the programs). It runs as one session with every step's output, and the
   * branches leave it from those outputs.
   */
  private async walkRoot(root: TrieNode, x: Tensor, batch: Batch, results: EvalResult[]): Promise<void> {
    const spine: TrieNode[] = [];
    let node = root;
    for (;;) {
      const next = [...node.children.values()].find((c) => c.steps.length === 1 && c.steps[0]!.mode.kind === 'full');
      if (!next) break;
      spine.push(next);
      node = next;
    }
    if (spine.length < 2) return this.walk(root, x, batch, results);
    const acts = await this.runSpine(spine.map((n) => n.steps[0]!), x);
    let parentX = x;
    let parent = root;
    for (let i = 0; i < spine.length; i++) {
      const n = spine[i]!;
      for (const c of parent.children.values()) if (c !== n) await this.walkChild(c, parentX, batch, results);
      for (const pi of n.programs) score(acts[i]!, batch, results[pi]!);
      parent = n;
      parentX = acts[i]!;
    }
    if (parent.children.size) await this.walk(parent, parentX, batch, results);
  }

  private fusedKey(stepLists: Step[][]): string {
    return `programs:${stepLists.map((steps) => steps.map((st) => this.kernelKey(st)).join('>')).join('|')}`;
  }

  /**
   * All programs as fused sessions (cached by their steps): one, or the trie's pieces. Such a
   * session keeps an arena as large as its biggest batch needed, and a study rarely runs
   * twice: building another releases the fused sessions that no evaluation is running
   * (explore's sweep once its ensemble starts).
   */
  private fusedSessions(key: string, stepLists: Step[][], limit: number): Promise<Fused> {
    let p = this.fused.get(key);
    if (p) return p;
    p = (async () => {
      for (const [k, runs] of this.fusedRuns) {
        const idle = this.fused.get(k);
        if (k === key || runs > 0 || !idle) continue;
        this.fused.delete(k);
        this.fusedRuns.delete(k);
        await Promise.all((await idle).sessions.map((s) => s.release()));
      }
      const { structure: s, graph: g, model } = this.net;
      const plan = pieces(stepLists, limit);
      const sessions: Session[] = [];
      let modelBytes = 0;
      for (const [i, piece] of plan.entries()) {
        const label = plan.length === 1 ? `${stepLists.length} programs` : `${stepLists.length} programs, piece ${i + 1} of ${plan.length}`;
        const bytes = encodeModel(programsModel(model.proto, g, s, piece.outputs.map((o) => o.steps)));
        modelBytes += bytes.length;
        sessions.push(await this.rt.create(bytes, label, { arena: true }));
      }
      return { pieces: plan, sessions, modelBytes };
    })();
    this.fused.set(key, p);
    return p;
  }

  /** Full steps run as one session that outputs every step's activation. */
  private async runSpine(steps: Step[], x: Tensor): Promise<Tensor[]> {
    const key = `spine:${steps.map((st) => this.kernelKey(st)).join('>')}`;
    const { structure: s, graph: g, model } = this.net;
    const session = await this.session(key, 'intact spine', () => stepsModel(model.proto, g, s, steps, 'x', 'y', 'spine', true));
    const outs = await session.run({ x });
    return steps.map((_, i) => outs[i === steps.length - 1 ? 'y' : `reslens_step_${i}`]!);
  }

  /** One batch, each program from the deepest checkpoint its intact prefix reaches. */
  private async fromCheckpoints(cp: Checkpoints, stepLists: Step[][], x: Tensor, batch: Batch, offset: number, results: EvalResult[]): Promise<void> {
    if (offset + batch.n > cp.size) throw new Error('checkpoints were made for a smaller data set');
    if (!this.rt.keeps) return this.fromCheckpointsAt(cp, stepLists, x, batch, offset, results);
    if (!cp.aligned(offset, batch.n)) {
      // Not whole chunks: from the input, as without checkpoints.
      for (const [pi, steps] of stepLists.entries()) score(await this.runSteps(steps, x), batch, results[pi]!);
      return;
    }
    const per = x.data.length / batch.n;
    for (let lo = 0; lo < batch.n; lo += Checkpoints.CHUNK) {
      const hi = Math.min(batch.n, lo + Checkpoints.CHUNK);
      const part: Batch = { images: batch.images.subarray(lo * per, hi * per), labels: batch.labels.subarray(lo, hi), indices: batch.indices.slice(lo, hi), n: hi - lo };
      await this.fromCheckpointsAt(cp, stepLists, { data: part.images, dims: [part.n, ...x.dims.slice(1)] }, part, offset + lo, results);
    }
  }

  private async fromCheckpointsAt(cp: Checkpoints, stepLists: Step[][], x: Tensor, batch: Batch, offset: number, results: EvalResult[]): Promise<void> {
    const intact = cp.intact;
    if (!cp.has(offset, batch.n)) {
      // Only the checkpointed boundaries come out; on a GPU all but the logits stay there.
      const names = cp.positions.map((p) => (p === intact.length ? 'y' : `reslens_step_${p - 1}`));
      const key = `spine${this.rt.keeps ? ' kept' : ''}:${intact.map((st) => this.kernelKey(st)).join('>')}`;
      const { structure: s, graph: g, model } = this.net;
      const spine = await this.session(key, 'intact spine', () => stepsModel(model.proto, g, s, intact, 'x', 'y', 'spine', true), { keep: names.filter((n) => n !== 'y') });
      const acts = await spine.runMixed({ x }, names);
      cp.positions.forEach((p, i) => cp.put(p, offset, acts[names[i]!]!));
      cp.markFilled(offset, batch.n);
    }
    for (const [pi, steps] of stepLists.entries()) {
      let q = 0;
      while (q < steps.length && q < intact.length && steps[q]!.key === intact[q]!.key) q++;
      const c = cp.best(q);
      const from = c === 0 ? x : cp.view(c, offset, batch.n);
      const y = c < steps.length ? await this.runSteps(steps.slice(c), from) : from;
      if (!isHost(y)) throw new Error('the logits checkpoint is on the device');
      score(y, batch, results[pi]!);
    }
  }

  private async walkChild(child: TrieNode, x: Tensor, batch: Batch, results: EvalResult[]): Promise<void> {
    const y = await this.runSteps(child.steps, x);
    for (const pi of child.programs) score(y, batch, results[pi]!);
    if (child.children.size) await this.walk(child, y, batch, results);
  }

  private async walk(node: TrieNode, x: Tensor, batch: Batch, results: EvalResult[]): Promise<void> {
    for (const child of node.children.values()) {
      const y = await this.runSteps(child.steps, x);
      for (const pi of child.programs) score(y, batch, results[pi]!);
      if (child.children.size) await this.walk(child, y, batch, results);
    }
  }

  /** Logits of one program on one batch (for tests and exports). */
  async logits(program: Program, x: Tensor): Promise<Tensor> {
    let cur = x;
    for (const st of programSteps(this.net.structure, program)) cur = await this.runStep(st, cur);
    return cur;
  }

  /**
   * Mean of each block's residual branch f(x) over the data set, in the intact network
   * (for the 'mean' lesion mode). Returns a mode per block.
   */
  async branchMeans(data: Dataset, batchSize = 128, blocks?: number[]): Promise<Map<number, BlockMode>> {
    const { structure: s, model } = this.net;
    const want = blocks ?? s.blocks.map((b) => b.index);
    const outs = want.map((i) => s.blocks[i]!.residualOutput);
    const session = await this.rt.create(withOutputs(model.proto, outs), `${model.path}, branch means`);
    const sums = new Map<number, Float64Array>();
    let n = 0;
    try {
      for await (const batch of data.batches(batchSize)) {
        const res = await session.run({ [this.net.input]: { data: batch.images, dims: [batch.n, ...data.shape] } }, outs);
        want.forEach((bi, j) => {
          const t = res[outs[j]!]!;
          const per = t.data.length / batch.n;
          let acc = sums.get(bi);
          if (!acc) sums.set(bi, (acc = new Float64Array(per)));
          const d = t.data as Float32Array;
          for (let k = 0; k < batch.n; k++) for (let e = 0; e < per; e++) acc[e]! += d[k * per + e]!;
        });
        n += batch.n;
      }
    } finally {
      await session.release();
    }
    const modes = new Map<number, BlockMode>();
    for (const bi of want) {
      const acc = sums.get(bi)!;
      const shape = this.net.shapes.get(s.blocks[bi]!.residualOutput)!;
      modes.set(bi, { kind: 'mean', mean: Float32Array.from(acc, (v) => v / n), dims: [1, ...shape.slice(1)] });
    }
    return modes;
  }
}

/** Batches of `bs` in order, starting at batch `start` (random access past the skipped ones). */
async function* batchesFrom(data: Dataset, bs: number, start: number): AsyncGenerator<Batch> {
  if (start === 0) {
    yield* data.batches(bs);
    return;
  }
  for (let i = start * bs; i < data.size; i += bs) {
    const n = Math.min(bs, data.size - i);
    yield await data.batch(Array.from({ length: n }, (_, j) => i + j));
  }
}

/**
 * The predicted class of row i of [n, k] logits: the first strict maximum, or -1 when the row
 * holds NaN or an infinity (such a sample is counted apart and never scored as right).
 */
export function predictedClass(d: Float32Array, i: number, k: number): number {
  let best = 0;
  let bestV = -Infinity;
  for (let c = 0; c < k; c++) {
    const v = d[i * k + c]!;
    if (!Number.isFinite(v)) return -1;
    if (v > bestV) {
      bestV = v;
      best = c;
    }
  }
  return best;
}

/** Whether `label`'s logit is among the `top` largest of sample i (ties count against it). */
export function inTop(d: Float32Array, i: number, k: number, label: number, top: number): boolean {
  if (label >= k) return false;
  const v = d[i * k + label]!;
  let above = 0;
  for (let c = 0; c < k; c++) if (d[i * k + c]! > v || (d[i * k + c] === v && c < label)) above++;
  return above < top;
}

function score(logits: Tensor, batch: Batch, r: EvalResult): void {
  const d = logits.data as Float32Array;
  const k = d.length / batch.n;
  if (k > 10) r.top5 ??= 0;
  for (let i = 0; i < batch.n; i++) {
    const pred = predictedClass(d, i, k);
    const label = batch.labels[i]!;
    r.total++;
    if (label < r.perClass.total.length) r.perClass.total[label]!++;
    if (pred < 0) {
      r.nonFinite++;
      continue;
    }
    if (k > 10 && inTop(d, i, k, label, 5)) r.top5!++;
    if (pred === label) {
      r.correct++;
      if (label < r.perClass.correct.length) r.perClass.correct[label]!++;
    }
  }
}
