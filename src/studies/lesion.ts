/**
 * The lesion study (docs/science.md, "Lesion study"): the test error of the network with
 * blocks deleted, scaled or replaced by their mean, one at a time, k at a time, as an explicit
 * set, and reordered. Three parts: the plan (every configuration, from the options and the seed
 * alone), the runner (the configurations a run owns, through the engine in one pass, with a
 * per-batch hook) and the document (the JSON of `reslens lesion`, and a report's `lesion`).
 */
import { OptionError } from '../errors.js';
import type { Dataset } from '../loader/data/dataset.js';
import { Random } from '../random.js';
import { Engine, PartialResults, type EvalOptions, type EvalResult } from '../engine/engine.js';
import type { Network } from '../engine/network.js';
import { DELETE, intactProgram, unitCount, type BlockMode, type Program } from '../surgery/split.js';
import { layerPlanNetwork, planNetwork, requireSplittable, sublayersOf, unitBlocks, type LesionUnit, type PlanNetwork } from './network.js';
import type { Sublayer } from '../surgery/sublayers.js';

export type LesionMode = { kind: 'delete' } | { kind: 'scale'; alpha: number } | { kind: 'mean' };

/** `delete` (or `zero`), `scale:ALPHA`, `mean`. */
export function parseMode(s: string): LesionMode {
  if (s === 'delete' || s === 'zero') return { kind: 'delete' };
  if (s === 'mean') return { kind: 'mean' };
  const m = /^scale:(.+)$/.exec(s);
  if (m && Number.isFinite(Number(m[1]))) return { kind: 'scale', alpha: Number(m[1]) };
  throw new OptionError('mode', (f) => `${f('mode')}: '${s}' is not one of delete, scale:ALPHA (e.g. scale:0.5), mean`);
}

/** The mode as documents and report configs write it: `delete`, `scale:0.5`, `mean`. */
export function formatMode(m: LesionMode): string {
  return m.kind === 'scale' ? `scale:${m.alpha}` : m.kind;
}

export interface LesionOptions {
  mode: LesionMode;
  /** Each deletable unit alone. */
  single: boolean;
  /** Numbers of units changed at once, with `samples` random subsets each. */
  k: number[];
  samples: number;
  seed: number;
  /** An explicit set of units to change together. */
  blocks?: number[];
  /** Reordering: 1..swaps random swaps within a stage, `samples` orders each (0 or absent: none). */
  swaps?: number;
  /** Let random k-subsets include downsampling units (off by default, as in the paper). */
  includeDownsampling?: boolean;
  /** Transformers: 'layer' changes both sublayers of a layer as one unit (default 'block', one sublayer). */
  unit?: LesionUnit;
}

export interface Measured {
  error: number;
  correct: number;
  total: number;
  nonFinite: number;
  /** Models of more than 10 classes: 1 - (label among the 5 largest logits)/total. */
  top5Error?: number;
}

export interface LesionResult {
  network: 'residual' | 'plain' | 'dense';
  unit: 'block' | 'layer';
  units: number;
  mode: string;
  seed: number;
  baseline: Measured & { perClassError: (number | null)[] };
  single: (Measured & { unit: number; stage: number; downsampling: boolean; delta: number; perClassError: (number | null)[]; sublayer?: Pick<Sublayer, 'layer' | 'kind'>; blocks?: number[] })[];
  notDeletable: { unit: number; reason: string }[];
  k: { k: number; eligible: number; samples: (Measured & { blocks: number[] })[]; mean: number; min: number; max: number }[];
  explicit: (Measured & { blocks: number[] }) | null;
  reorder: { swaps: number; samples: (Measured & { order: number[]; kendallTau: number })[]; meanTau: number; meanError: number }[];
  evaluations: number;
  /** Set when the run was interrupted: every number above covers only these first samples. */
  interrupted?: { samplesDone: number };
}

export function measured(r: EvalResult): Measured {
  return { error: r.error, correct: r.correct, total: r.total, nonFinite: r.nonFinite, ...(r.top5 !== undefined ? { top5Error: r.total ? 1 - r.top5 / r.total : 0 } : {}) };
}

function perClassError(r: EvalResult): (number | null)[] {
  return r.perClass.total.map((t, c) => (t ? 1 - r.perClass.correct[c]! / t : null));
}

/** Error from the counts, as Engine.evaluate computes it (counts read back from a file). */
export function withError(r: EvalResult): EvalResult {
  return { ...r, error: r.total ? 1 - r.correct / r.total : 0 };
}

/** Kendall's tau between an order and the identity order. */
export function kendallTau(order: number[]): number {
  const n = order.length;
  if (n < 2) return 1;
  let s = 0;
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) s += Math.sign(order[j]! - order[i]!);
  return s / ((n * (n - 1)) / 2);
}

// ---------------------------------------------------------------- plan

/** One configuration: units changed (by the lesion mode) in the intact order, or a new order. */
export type ProgramSpec = { changed: number[] } | { order: number[] };

export interface LesionPlan {
  /** The lesion part: [intact, each deletable unit alone, the k-subsets, the explicit set]. */
  programs: ProgramSpec[];
  singleUnits: number[];
  eligible: number;
  kPlans: { k: number; subsets: number[][] }[];
  explicit: number[] | null;
  /** The reorder part: the orders, swap count by swap count. */
  reorder: ProgramSpec[];
  reorderPlans: { swaps: number; orders: number[][] }[];
}

/**
 * The random streams of the plan's parts: each k's subsets and the orders draw from streams of
 * their own, derived from the seed and the part's name, so `--k 1-7` and `--k 1,2,3,4,5` give
 * the same orders and the same k = 3 subsets.
 */
export function lesionStreams(seed: number): { subsets: (k: number) => Random; reorder: Random } {
  return { subsets: (k) => Random.stream(seed, `k=${k}`), reorder: Random.stream(seed, 'reorder') };
}

/** The units random k-subsets draw from: the deletable ones, downsampling ones only when asked. */
export function eligibleUnits(net: PlanNetwork, includeDownsampling: boolean): number[] {
  return net.units.filter((u) => u.deletable && (includeDownsampling || !u.downsampling)).map((u) => u.unit);
}

/**
 * Every configuration of the study, from the network's units, the options and the seed alone,
 * so a resumed run, every shard and a merge derive the same one. `what` names the network in
 * errors ("measured", "--compare").
 */
export function planLesion(net: PlanNetwork, o: LesionOptions, what = 'measured'): LesionPlan {
  const info = net.units;
  const n = net.n;
  const unitWord = net.kind === 'residual' ? 'blocks' : 'layers';
  const rng = lesionStreams(o.seed);
  const programs: ProgramSpec[] = [{ changed: [] }];
  const deletable = info.filter((u) => u.deletable).map((u) => u.unit);
  const singleUnits = o.single ? deletable : [];
  for (const u of singleUnits) programs.push({ changed: [u] });
  const eligible = eligibleUnits(net, !!o.includeDownsampling);
  const kPlans: LesionPlan['kPlans'] = [];
  for (const k of o.k) {
    if (k > eligible.length) {
      throw new OptionError('k', (f) => `${f('k')} ${k}: only ${eligible.length} ${unitWord} of the ${what} network can be deleted at random${o.includeDownsampling ? '' : ` (downsampling ones excluded; ${f('includeDownsampling')} adds them)`}`);
    }
    const subsets: number[][] = [];
    const stream = rng.subsets(k);
    for (let i = 0; i < o.samples; i++) subsets.push(stream.sample(eligible, k));
    kPlans.push({ k, subsets });
    for (const sub of subsets) programs.push({ changed: sub });
  }
  const explicit = o.blocks ?? null;
  if (explicit) {
    for (const u of explicit) {
      const i = info[u] as PlanNetwork['units'][number] | undefined;
      if (!i?.deletable) throw new OptionError('blocks', (f) => `${f('blocks')}: layer ${u} cannot be deleted (${i?.reason ?? 'no such unit'})`);
    }
    programs.push({ changed: explicit });
  }
  const reorder: ProgramSpec[] = [];
  const reorderPlans: LesionPlan['reorderPlans'] = [];
  if (o.swaps) {
    if (net.kind !== 'residual') throw new OptionError('swaps', (f) => `${f('swaps')}: only residual networks can be reordered`);
    const byStage = new Map<number, number[]>();
    for (const u of info) if (!u.downsampling) byStage.set(u.stage, [...(byStage.get(u.stage) ?? []), u.unit]);
    const stages = [...byStage.values()].filter((v) => v.length >= 2);
    if (!stages.length) throw new OptionError('swaps', (f) => `${f('swaps')}: no stage has two blocks of the same shape to swap`);
    for (let sw = 1; sw <= o.swaps; sw++) {
      const orders: number[][] = [];
      for (let i = 0; i < o.samples; i++) {
        const order = [...Array(n).keys()];
        for (let t = 0; t < sw; t++) {
          const st = stages[rng.reorder.int(stages.length)]!;
          const [a, b] = rng.reorder.sample(st, 2) as [number, number];
          const ia = order.indexOf(a);
          const ib = order.indexOf(b);
          [order[ia], order[ib]] = [order[ib]!, order[ia]!];
        }
        orders.push(order);
        reorder.push({ order });
      }
      reorderPlans.push({ swaps: sw, orders });
    }
  }
  return { programs, singleUnits, eligible: eligible.length, kPlans, explicit, reorder, reorderPlans };
}

/** Throws unless `mode` can change this kind of network (plain layers have no branch to scale). */
export function checkMode(kind: PlanNetwork['kind'], mode: LesionMode): void {
  if (kind !== 'residual' && mode.kind !== 'delete') {
    throw new OptionError('mode', (f) => `${f('mode')} ${formatMode(mode)}: plain networks have no residual branch to scale or average; use ${f('mode')} delete`);
  }
}

// ---------------------------------------------------------------- runner

/** How a changed unit runs under the mode; for 'mean' the branch means are measured on the data first. */
export async function changedMode(engine: Engine, data: Dataset, mode: LesionMode, batch: number): Promise<(u: number) => BlockMode> {
  if (mode.kind === 'delete') return () => DELETE;
  if (mode.kind === 'scale') {
    const alpha = mode.alpha;
    return () => ({ kind: 'scale', alpha });
  }
  const means = await engine.branchMeans(data, batch);
  return (u) => means.get(u)!;
}

export function toProgram(spec: ProgramSpec, n: number, changed: (u: number) => BlockMode): Program {
  if ('order' in spec) return { order: spec.order, modes: intactProgram(n).modes };
  const p = intactProgram(n);
  for (const u of spec.changed) p.modes[u] = changed(u);
  return p;
}

/**
 * The counts of the configurations `own` (indices into `specs`), in that order, through the
 * engine in one pass over the data. `opts` carries the per-batch hook (onBatch), resumption
 * (startBatch, initial), cancelling and progress.
 */
export function runConfigurations(
  engine: Engine,
  data: Dataset,
  specs: ProgramSpec[],
  own: number[],
  changed: (u: number) => BlockMode,
  opts: EvalOptions,
): Promise<EvalResult[]> {
  const n = unitCount(engine.net.structure);
  return engine.evaluate(own.map((j) => toProgram(specs[j]!, n, changed)), data, opts);
}

// ---------------------------------------------------------------- document

/** The study's result from the plan and the counts of every configuration (lesion part, then reorder part). */
export function lesionResult(net: PlanNetwork, mode: string, seed: number, plan: LesionPlan, results: EvalResult[], reorderResults: EvalResult[], units: UnitNames = {}): LesionResult {
  const info = net.units;
  const base = results[0]!;
  let cursor = 1;
  const single = plan.singleUnits.map((u) => {
    const r = results[cursor++]!;
    const i = info[u]!;
    const sub = units.sublayers?.[u];
    return {
      unit: u, stage: i.stage, downsampling: i.downsampling, ...measured(r), delta: r.error - base.error, perClassError: perClassError(r),
      ...(sub ? { sublayer: { layer: sub.layer, kind: sub.kind } } : {}), ...(units.groups ? { blocks: units.groups[u]! } : {}),
    };
  });
  const k = plan.kPlans.map((p) => kGroup(p.k, plan.eligible, p.subsets.map((blocks) => ({ blocks, ...measured(results[cursor++]!) }))));
  const explicit = plan.explicit ? { blocks: plan.explicit, ...measured(results[cursor++]!) } : null;
  let rc = 0;
  const reorder = plan.reorderPlans.map((p) => {
    return reorderGroup(p.swaps, p.orders.map((order) => ({ order, kendallTau: kendallTau(order), ...measured(reorderResults[rc++]!) })));
  });
  return {
    network: net.kind,
    unit: net.kind === 'residual' && !units.groups ? 'block' : 'layer',
    units: net.n,
    mode,
    seed,
    baseline: { ...measured(base), perClassError: perClassError(base) },
    single,
    notDeletable: info.filter((u) => !u.deletable).map((u) => ({ unit: u.unit, reason: u.reason ?? '' })),
    k,
    explicit,
    reorder,
    evaluations: plan.programs.length + plan.reorder.length,
  };
}

/** How a result names its units on a transformer: each block's sublayer, or (--unit layer) each layer's blocks. */
export interface UnitNames {
  sublayers?: Sublayer[] | null;
  groups?: number[][];
}

/** A configuration over units as one over blocks: each unit changes, or moves with, all its blocks. */
export function expandSpec(spec: ProgramSpec, groups: number[][]): ProgramSpec {
  if ('order' in spec) return { order: spec.order.flatMap((u) => groups[u]!) };
  return { changed: spec.changed.flatMap((u) => groups[u]!).sort((a, b) => a - b) };
}

/** A k-deletion group: its samples and their mean, min and max error. */
function kGroup<S extends { error: number }>(k: number, eligible: number, samples: S[]) {
  const errs = samples.map((x) => x.error);
  return { k, eligible, samples, mean: errs.reduce((a, b) => a + b, 0) / errs.length, min: Math.min(...errs), max: Math.max(...errs) };
}

/** A reorder group: its samples and their mean Kendall's tau and error. */
function reorderGroup<S extends { error: number; kendallTau: number }>(swaps: number, samples: S[]) {
  return {
    swaps, samples,
    meanTau: samples.reduce((a, b) => a + b.kendallTau, 0) / samples.length,
    meanError: samples.reduce((a, b) => a + b.error, 0) / samples.length,
  };
}

// ---------------------------------------------------------------- the whole study

/** A lesion study set up on a network: the guards have run and the plan is made. */
export interface LesionStudy {
  net: PlanNetwork;
  options: LesionOptions;
  plan: LesionPlan;
  names: UnitNames;
}

export function setupLesion(network: Network, o: LesionOptions): LesionStudy {
  requireSplittable(network);
  if (o.unit === 'layer') {
    const groups = unitBlocks(network, 'layer');
    const net = layerPlanNetwork(network);
    return { net, options: o, plan: planLesion(net, o), names: { groups } };
  }
  const net = planNetwork(network);
  checkMode(net.kind, o.mode);
  return { net, options: o, plan: planLesion(net, o), names: { sublayers: sublayersOf(network) } };
}

/**
 * Every configuration of the study in one pass over the data. Stopped through `evalOpts.signal`
 * after some batches, it returns the counts so far, marked `interrupted`.
 */
export async function runLesion(engine: Engine, data: Dataset, o: LesionOptions & { batch?: number; cache?: boolean }, evalOpts: EvalOptions = {}): Promise<LesionResult> {
  const { net, plan, names } = setupLesion(engine.net, o);
  const changed = await changedMode(engine, data, o.mode, o.batch ?? 128);
  const unitSpecs = [...plan.programs, ...plan.reorder];
  const specs = names.groups ? unitSpecs.map((x) => expandSpec(x, names.groups!)) : unitSpecs;
  let results: EvalResult[];
  let interrupted: LesionResult['interrupted'];
  try {
    results = await runConfigurations(engine, data, specs, specs.map((_, i) => i), changed, { batch: o.batch, cache: o.cache, ...evalOpts });
  } catch (e) {
    if (!(e instanceof PartialResults) || e.samplesDone === 0) throw e;
    results = e.results;
    interrupted = { samplesDone: e.samplesDone };
  }
  const result = lesionResult(net, formatMode(o.mode), o.seed, plan, results.slice(0, plan.programs.length), results.slice(plan.programs.length), names);
  return interrupted ? { ...result, interrupted } : result;
}
