/**
 * The work explore asks for, behind one small interface: measure a configuration, the
 * ensemble curve, path-restricted gradients, and write files. The engine-backed version runs
 * every batch through one priority gate (scheduler.ts); tests may substitute their own.
 */
import { Checkpoints, Engine } from '../../engine/engine.js';
import type { PathGradients } from '../../engine/gradients.js';
import type { Network } from '../../engine/network.js';
import { Runtime } from '../../engine/session.js';
import { Interrupted } from '../../errors.js';
import { toJson } from '../../files.js';
import type { Dataset } from '../../loader/data/dataset.js';
import { encodeModel } from '../../loader/proto.js';
import { exactSession, makeExactPlan, runExactBatches, summarizeExact } from '../../studies/exact.js';
import { exportedModel, exportedNetwork, exportedProgram } from '../../studies/export.js';
import { gradientSession, makePlan, runGradients } from '../../studies/gradients.js';
import { changedMode, eligibleUnits, measured, runConfigurations, runLesion } from '../../studies/lesion.js';
import { planNetwork, requireResidual, sublayerNames } from '../../studies/network.js';
import { EFFECTIVE_MASS } from './controller.js';
import { modelStem, writeNewFile } from './files.js';
import { Gate, gatedDataset, PRIORITY } from './scheduler.js';
import { configSlug, type BlockRow, type EnsemblePoint, type ExactShares, type ExploreInfo, type Measurement } from './state.js';

export interface JobOptions {
  signal: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

/** Mean gradient norms per path length from one gradient run. */
export interface GradientRun {
  n: number;
  samplesPerK: number;
  meanNorm: (number | null)[];
}

export interface ExploreBackend {
  readonly info: ExploreInfo;
  /** Error of the network with `deleted` blocks deleted, on the explore data. */
  evaluate(deleted: number[], o: JobOptions & { priority: number }): Promise<Measurement>;
  /** Error against k deleted blocks, k = 0..min(eligible, 10), of the model or the --compare network. */
  ensemble(which: 'ensemble' | 'compare', o: JobOptions): Promise<EnsemblePoint[]>;
  /**
   * The exact shares of the gradient by path length of the network with `deleted` blocks
   * removed (the recursion over the remaining blocks only), on the first few images.
   */
  exact(deleted: number[], o: JobOptions): Promise<ExactShares>;
  /** A path-restricted gradient run on the intact network (a few samples per length k). */
  gradients(o: JobOptions & { seed: number }): Promise<GradientRun>;
  /** Writes the network with `deleted` blocks deleted as ONNX; returns the path. */
  exportModel(deleted: number[]): Promise<string>;
  /** Writes `doc` as JSON named after the configuration; returns the path. */
  saveState(doc: unknown, deleted: number[]): Promise<string>;
}

export interface EngineBackendOptions {
  rt: Runtime;
  net: Network;
  data: Dataset;
  compare?: { net: Network; data: Dataset; name: string } | null;
  /** Where x and s write (default: the current folder). */
  outDir?: string;
  /** Samples per forward pass; background work uses at most this, in smaller steps. */
  batch?: number;
  seed?: number;
  /** Random subsets per k in the ensemble curve. */
  ensembleSamples?: number;
  maxK?: number;
  /** Gradient samples per path length per run. */
  gradientSamples?: number;
  gradientBatch?: number;
  /** Images of the exact shares (the first ones of the data; default EXACT_IMAGES). */
  exactImages?: number;
  /** Keep intact activations between evaluations (default true; false for bench/explore.ts's comparison). */
  checkpoints?: boolean;
}

/**
 * Images in the paths view's exact shares: one batch, recomputed on every change. On resnet56
 * 16 images cost about 3 s of CPU (sessions 1 s, the batch 2-2.5 s; 2-core x86, 2026-12-02).
 */
export const EXACT_IMAGES = 16;

/** Sample standard deviation (n - 1 in the denominator); 0 for fewer than two values. */
export function sampleSd(xs: number[]): number {
  if (xs.length < 2) return 0;
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  return Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1));
}

export function blockRows(net: Network): BlockRow[] {
  if (net.structure.kind !== 'residual') return [];
  const names = sublayerNames(net);
  return net.structure.blocks.map((b) => ({
    index: b.index,
    stage: b.stage,
    shortcut: b.shortcutKind,
    downsampling: b.downsampling || b.shortcutKind === 'projection',
    post: b.post,
    ...(names?.[b.index] ? { sublayer: names[b.index] } : {}),
  }));
}

export function exploreInfo(net: Network, data: Dataset, compare: string | null): ExploreInfo {
  return {
    model: { path: net.model.path, name: modelStem(net.model.path), sha256: net.model.sha256 },
    data: { description: data.description, size: data.size },
    blocks: blockRows(net),
    survival: net.preprocessing.survival,
    compare,
  };
}

export class EngineBackend implements ExploreBackend {
  readonly info: ExploreInfo;
  private gate = new Gate();
  private engine: Engine;
  private compareEngine: Engine | null;
  private pathGradients: Promise<PathGradients> | null = null;
  /** Intact activations of the explore data: a toggle reruns only from the deleted block on. */
  private checkpoints: Checkpoints | undefined;

  constructor(private o: EngineBackendOptions) {
    requireResidual(o.net, 'to explore; use reslens lesion for plain networks, or pass it as --compare');
    this.info = exploreInfo(o.net, o.data, o.compare?.name ?? null);
    this.engine = new Engine(o.rt, o.net);
    this.compareEngine = o.compare ? new Engine(o.rt, o.compare.net) : null;
    this.checkpoints = o.checkpoints === false ? undefined : new Checkpoints(o.net, o.data.size);
  }

  private get batch(): number {
    return this.o.batch ?? 128;
  }

  async evaluate(deleted: number[], o: JobOptions & { priority: number }): Promise<Measurement> {
    // Background sweeps in smaller steps, so the user's evaluation waits less at the gate.
    const batch = o.priority === PRIORITY.current ? this.batch : Math.min(this.batch, 64);
    const data = gatedDataset(this.o.data, this.gate, o.priority, o.signal);
    const changed = await changedMode(this.engine, data, { kind: 'delete' }, batch);
    const [r] = await runConfigurations(this.engine, data, [{ changed: deleted }], [0], changed, { batch, signal: o.signal, onProgress: o.onProgress, ...(this.checkpoints ? { checkpoints: this.checkpoints } : {}) });
    return measured(r!);
  }

  async ensemble(which: 'ensemble' | 'compare', o: JobOptions): Promise<EnsemblePoint[]> {
    const engine = which === 'ensemble' ? this.engine : this.compareEngine;
    const source = which === 'ensemble' ? this.o.data : this.o.compare?.data;
    if (!engine || !source) throw new Error('no --compare network');
    // Random subsets leave downsampling blocks (and shape-changing plain layers) alone, as in the paper.
    const eligible = eligibleUnits(planNetwork(engine.net), false).length;
    const maxK = Math.min(eligible, this.o.maxK ?? 10);
    const ks = Array.from({ length: maxK }, (_, i) => i + 1);
    const data = gatedDataset(source, this.gate, which === 'ensemble' ? PRIORITY.ensemble : PRIORITY.compare, o.signal);
    const samples = this.o.ensembleSamples ?? 10;
    // The gate is held one batch at a time: a batch of all these programs is kept near 2048 image
    // passes (64 images × 31 programs, 3 sets per k), so a toggle waits no longer behind it.
    const batch = Math.max(4, Math.min(this.batch, 64, Math.floor(2048 / (1 + ks.length * samples))));
    const r = await runLesion(engine, data, {
      mode: { kind: 'delete' }, single: false, k: ks, samples, seed: this.o.seed ?? 0, batch,
    }, { signal: o.signal, onProgress: o.onProgress });
    // runLesion keeps partial counts when stopped; a curve over part of the data is not wanted here.
    if (r.interrupted || o.signal.aborted) throw new Interrupted();
    return [
      { k: 0, mean: r.baseline.error, min: r.baseline.error, max: r.baseline.error, sd: 0, samples: 1 },
      ...r.k.map((x) => ({ k: x.k, mean: x.mean, min: x.min, max: x.max, sd: sampleSd(x.samples.map((s) => s.error)), samples: x.samples.length })),
    ];
  }

  async gradients(o: JobOptions & { seed: number }): Promise<GradientRun> {
    const { net, rt } = this.o;
    const n = this.info.blocks.length;
    const source = this.o.data;
    const batchSize = Math.min(this.o.gradientBatch ?? 32, source.size);
    if (!this.pathGradients) {
      this.pathGradients = gradientSession(rt, net, source, batchSize);
      this.pathGradients.catch(() => (this.pathGradients = null));
    }
    const pg = await this.pathGradients;
    const ks = [...Array(n + 1).keys()];
    const samplesPerK = this.o.gradientSamples ?? 5;
    const plan = makePlan(n, source.size, { ks, samples: samplesPerK, batchSize, seed: o.seed });
    const data = gatedDataset(source, this.gate, PRIORITY.gradients, o.signal);
    try {
      const r = await runGradients(pg, data, plan, { ks, seed: o.seed }, { signal: o.signal, onProgress: o.onProgress });
      if (r.interrupted || o.signal.aborted) throw new Interrupted();
      return { n, samplesPerK, meanNorm: r.meanNorm };
    } finally {
      data.done();
    }
  }

  async exact(deleted: number[], o: JobOptions): Promise<ExactShares> {
    const { rt, net, data: source } = this.o;
    const t0 = performance.now();
    const images = Math.min(this.o.exactImages ?? EXACT_IMAGES, source.size);
    const changed = deleted.length ? await exportedNetwork(rt, net, { delete: deleted }) : net;
    if (o.signal.aborted) throw new Interrupted();
    // The sessions of one configuration live only as long as its computation: a runtime of their own.
    const scoped = new Runtime({ device: await rt.resolveDevice(), ...(rt.threads ? { threads: rt.threads } : {}) });
    try {
      const eg = await exactSession(scoped, changed, source, images);
      if (o.signal.aborted) throw new Interrupted();
      const data = gatedDataset(source, this.gate, PRIORITY.exact, o.signal);
      try {
        const { finished, interrupted } = await runExactBatches(eg, data, makeExactPlan(images, { batchSize: images }), [0], { signal: o.signal });
        if (interrupted || o.signal.aborted) throw new Interrupted();
        const s = summarizeExact(eg.n, finished, EFFECTIVE_MASS);
        return { n: eg.n, images: s.images, share: s.perLength.map((p) => p.share), effectiveRange: s.effectiveRange, identityError: s.identityError, seconds: (performance.now() - t0) / 1000 };
      } finally {
        data.done();
      }
    } finally {
      await scoped.close();
    }
  }

  async exportModel(deleted: number[]): Promise<string> {
    const { net } = this.o;
    const out = exportedModel(net, exportedProgram(net, { delete: deleted }), { delete: deleted.join(','), scale: '', reorder: '' });
    return writeNewFile(this.o.outDir ?? process.cwd(), `${this.info.model.name}.${configSlug(deleted)}`, '.onnx', encodeModel(out));
  }

  async saveState(doc: unknown, deleted: number[]): Promise<string> {
    return writeNewFile(this.o.outDir ?? process.cwd(), `${this.info.model.name}.${configSlug(deleted)}`, '.json', toJson(doc));
  }
}
