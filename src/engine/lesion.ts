/**
 * The lesion study (docs/science.md, "Lesion study"): the test error of the network with blocks
 * deleted, scaled or replaced by their mean, one at a time, k at a time, and reordered.
 * Every configuration is one Program; all of them go through the engine in one pass.
 */
import { UserError } from '../errors.js';
import type { Dataset } from '../loader/data/dataset.js';
import { Random } from '../random.js';
import { DELETE, intactProgram, unitCount, type BlockMode, type Program } from '../surgery/split.js';
import { notSplittable } from '../surgery/blocks.js';
import { Engine, PartialResults, type EvalOptions, type EvalResult } from './engine.js';
import type { Network } from './network.js';

export type LesionMode = { kind: 'delete' } | { kind: 'scale'; alpha: number } | { kind: 'mean' };

export interface LesionOptions {
  mode: LesionMode;
  single: boolean;
  /** Numbers of blocks deleted at once, with `samples` random subsets each. */
  k: number[];
  samples: number;
  seed: number;
  /** An explicit set of blocks to change together. */
  blocks?: number[];
  /** Reordering: 1..swaps random swaps within a stage, `samples` orders each. */
  swaps?: number;
  /** Let random k-subsets include downsampling blocks (off by default, as in the paper). */
  includeDownsampling?: boolean;
  batch?: number;
  cache?: boolean;
}

export interface Measured {
  error: number;
  correct: number;
  total: number;
  nonFinite: number;
}

export interface LesionResult {
  network: 'residual' | 'plain' | 'dense';
  unit: 'block' | 'layer';
  units: number;
  mode: string;
  seed: number;
  baseline: Measured & { perClassError: (number | null)[] };
  single: (Measured & { unit: number; stage: number; downsampling: boolean; delta: number; perClassError: (number | null)[] })[];
  notDeletable: { unit: number; reason: string }[];
  k: { k: number; eligible: number; samples: (Measured & { blocks: number[] })[]; mean: number; min: number; max: number }[];
  explicit: (Measured & { blocks: number[] }) | null;
  reorder: { swaps: number; samples: (Measured & { order: number[]; kendallTau: number })[]; meanTau: number; meanError: number }[];
  evaluations: number;
  /** Set when the run was interrupted: every number above covers only these first samples. */
  interrupted?: { samplesDone: number };
}

function measured(r: EvalResult): Measured {
  return { error: r.error, correct: r.correct, total: r.total, nonFinite: r.nonFinite };
}

function perClassError(r: EvalResult): (number | null)[] {
  return r.perClass.total.map((t, c) => (t ? 1 - r.perClass.correct[c]! / t : null));
}

/** Kendall's tau between an order and the identity order. */
export function kendallTau(order: number[]): number {
  const n = order.length;
  if (n < 2) return 1;
  let s = 0;
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) s += Math.sign(order[j]! - order[i]!);
  return s / ((n * (n - 1)) / 2);
}

export interface UnitInfo {
  unit: number;
  stage: number;
  downsampling: boolean;
  deletable: boolean;
  reason?: string;
  inShape: string;
  outShape: string;
}

export function unitInfo(net: Network): UnitInfo[] {
  const s = net.structure;
  const shape = (t: string) => (net.shapes.get(t) ?? []).slice(1).join('x');
  if (s.kind === 'residual') {
    return s.blocks.map((b) => ({ unit: b.index, stage: b.stage, downsampling: b.downsampling || b.shortcutKind === 'projection', deletable: true, inShape: shape(b.input), outShape: shape(b.output) }));
  }
  if (notSplittable(s)) return [];
  return s.layers.map((l) => {
    const [i, o] = [shape(l.input), shape(l.output)];
    const deletable = i === o && i !== '';
    return { unit: l.index, stage: l.stage, downsampling: i !== o, deletable, inShape: i, outShape: o, ...(deletable ? {} : { reason: `input ${i} ≠ output ${o}` }) };
  });
}

/** What planning needs of a network: its kind and units (a NetworkDesc in a report). */
export interface PlanNetwork {
  kind: 'residual' | 'plain' | 'dense';
  n: number;
  units: Pick<UnitInfo, 'unit' | 'stage' | 'downsampling' | 'deletable'>[];
}

/** One configuration: blocks changed (by the lesion mode) in the intact order, or a new order. */
export type ProgramSpec = { changed: number[] } | { order: number[] };

export interface LesionPlan {
  /** The lesion part: [intact, each deletable unit alone, the k-subsets]. */
  programs: ProgramSpec[];
  singleUnits: number[];
  eligible: number;
  kPlans: { k: number; subsets: number[][] }[];
  /** The reorder part: the orders, swap count by swap count. */
  reorder: ProgramSpec[];
  reorderPlans: { swaps: number; orders: number[][] }[];
}

export interface LesionPlanOptions {
  single: boolean;
  k: number[];
  samples: number;
  seed: number;
  /** Reorder with 1..swaps swaps (0: no reordering). */
  swaps: number;
  includeDownsampling: boolean;
}

export function planLesion(net: PlanNetwork, o: LesionPlanOptions, what = 'measured'): LesionPlan {
  const info = net.units;
  const n = net.n;
  const unitWord = net.kind === 'residual' ? 'blocks' : 'layers';
  const rng = new Random(o.seed);
  const programs: ProgramSpec[] = [{ changed: [] }];
  const deletable = info.filter((u) => u.deletable).map((u) => u.unit);
  const singleUnits = o.single ? deletable : [];
  for (const u of singleUnits) programs.push({ changed: [u] });
  const eligible = info.filter((u) => u.deletable && (o.includeDownsampling || !u.downsampling)).map((u) => u.unit);
  const kPlans: LesionPlan['kPlans'] = [];
  for (const k of o.k) {
    if (k > eligible.length) {
      throw new UserError(`--k ${k}: only ${eligible.length} ${unitWord} of the ${what} network can be deleted at random${o.includeDownsampling ? '' : ' (downsampling ones excluded; --include-downsampling adds them)'}`);
    }
    const subsets: number[][] = [];
    for (let i = 0; i < o.samples; i++) subsets.push(rng.sample(eligible, k));
    kPlans.push({ k, subsets });
    for (const sub of subsets) programs.push({ changed: sub });
  }
  const reorder: ProgramSpec[] = [];
  const reorderPlans: LesionPlan['reorderPlans'] = [];
  if (o.swaps) {
    const byStage = new Map<number, number[]>();
    for (const u of info) if (!u.downsampling) byStage.set(u.stage, [...(byStage.get(u.stage) ?? []), u.unit]);
    const stages = [...byStage.values()].filter((v) => v.length >= 2);
    if (!stages.length) throw new UserError('--reorder: no stage has two blocks of the same shape to swap');
    for (let sw = 1; sw <= o.swaps; sw++) {
      const orders: number[][] = [];
      for (let i = 0; i < o.samples; i++) {
        const order = [...Array(n).keys()];
        for (let t = 0; t < sw; t++) {
          const st = stages[rng.int(stages.length)]!;
          const [a, b] = rng.sample(st, 2) as [number, number];
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
  return { programs, singleUnits, eligible: eligible.length, kPlans, reorder, reorderPlans };
}


/** A k-deletion group: its samples and their mean, min and max error. */
export function kGroup<S extends { error: number }>(k: number, eligible: number, samples: S[]) {
  const errs = samples.map((x) => x.error);
  return { k, eligible, samples, mean: errs.reduce((a, b) => a + b, 0) / errs.length, min: Math.min(...errs), max: Math.max(...errs) };
}

/** A reorder group: its samples and their mean Kendall's tau and error. */
export function reorderGroup<S extends { error: number; kendallTau: number }>(swaps: number, samples: S[]) {
  return {
    swaps, samples,
    meanTau: samples.reduce((a, b) => a + b.kendallTau, 0) / samples.length,
    meanError: samples.reduce((a, b) => a + b.error, 0) / samples.length,
  };
}

export async function runLesion(engine: Engine, data: Dataset, opts: LesionOptions, evalOpts: EvalOptions = {}): Promise<LesionResult> {
  const net = engine.net;
  const s = net.structure;
  const why = notSplittable(s);
  if (why) throw new UserError(`${net.model.path}: ${why}`);
  const n = unitCount(s);
  const info = unitInfo(net);
  if (s.kind === 'plain' && opts.mode.kind !== 'delete') {
    throw new UserError(`--mode ${opts.mode.kind}: plain networks have no residual branch to scale or average; use --mode delete`);
  }
  let changed: (u: number) => BlockMode = () => DELETE;
  if (opts.mode.kind === 'scale') {
    const alpha = opts.mode.alpha;
    changed = () => ({ kind: 'scale', alpha });
  } else if (opts.mode.kind === 'mean') {
    const means = await engine.branchMeans(data, opts.batch ?? 128);
    changed = (u) => means.get(u)!;
  }
  if (opts.swaps && s.kind !== 'residual') throw new UserError('--reorder: only residual networks can be reordered');
  const plan = planLesion({ kind: s.kind, n, units: info }, {
    single: opts.single, k: opts.k, samples: opts.samples, seed: opts.seed, swaps: opts.swaps ?? 0,
    includeDownsampling: !!opts.includeDownsampling,
  });
  const toProgram = (spec: ProgramSpec): Program => {
    if ('order' in spec) return { order: spec.order, modes: intactProgram(n).modes };
    const p = intactProgram(n);
    for (const u of spec.changed) p.modes[u] = changed(u);
    return p;
  };
  const programs: Program[] = plan.programs.map(toProgram);
  const singleUnits = plan.singleUnits;
  const kPlans = plan.kPlans;
  let explicitIdx = -1;
  if (opts.blocks) {
    for (const u of opts.blocks) {
      if (!info[u]?.deletable) throw new UserError(`--delete: layer ${u} cannot be deleted (${info[u]?.reason ?? 'no such unit'})`);
    }
    explicitIdx = programs.length;
    programs.push(toProgram({ changed: opts.blocks }));
  }
  const reorderPlans = plan.reorderPlans;
  programs.push(...plan.reorder.map(toProgram));

  let results: EvalResult[];
  let interrupted: LesionResult['interrupted'];
  try {
    results = await engine.evaluate(programs, data, { batch: opts.batch, cache: opts.cache, ...evalOpts });
  } catch (e) {
    if (!(e instanceof PartialResults) || e.samplesDone === 0) throw e;
    results = e.results;
    interrupted = { samplesDone: e.samplesDone };
  }
  const base = results[0]!;
  let cursor = 1;
  const single = singleUnits.map((u) => {
    const r = results[cursor++]!;
    const i = info[u]!;
    return { unit: u, stage: i.stage, downsampling: i.downsampling, ...measured(r), delta: r.error - base.error, perClassError: perClassError(r) };
  });
  const k = kPlans.map((kp) => {
    return kGroup(kp.k, plan.eligible, kp.subsets.map((blocks) => ({ blocks, ...measured(results[cursor++]!) })));
  });
  const explicit = explicitIdx >= 0 ? { blocks: opts.blocks!, ...measured(results[cursor++]!) } : null;
  const reorder = reorderPlans.map((plan) => {
    return reorderGroup(plan.swaps, plan.orders.map((order) => ({ order, kendallTau: kendallTau(order), ...measured(results[cursor++]!) })));
  });
  return {
    network: s.kind,
    unit: s.kind === 'residual' ? 'block' : 'layer',
    units: n,
    mode: opts.mode.kind === 'scale' ? `scale:${opts.mode.alpha}` : opts.mode.kind,
    seed: opts.seed,
    baseline: { ...measured(base), perClassError: perClassError(base) },
    single,
    notDeletable: info.filter((u) => !u.deletable).map((u) => ({ unit: u.unit, reason: u.reason ?? '' })),
    k,
    explicit,
    reorder,
    evaluations: programs.length,
    ...(interrupted ? { interrupted } : {}),
  };
}
