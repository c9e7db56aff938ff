/**
 * Runs the parts of a report, writing the progress file after each part and, within the lesion
 * parts and the gradients, after every batch, so that a killed run resumes where it stopped.
 */
import { readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { Engine } from '../engine/engine.js';
import { PathGradients } from '../engine/gradients.js';
import type { Network } from '../engine/network.js';
import type { Runtime } from '../engine/session.js';
import { Interrupted, UserError } from '../errors.js';
import type { Dataset } from '../loader/data/dataset.js';
import { DELETE, intactProgram, type BlockMode, type Program } from '../surgery/split.js';
import { inspectReport } from '../commands/inspect.js';
import { pathsReport } from '../commands/paths.js';
import { progressBar } from '../ui/progress.js';
import { compareLesionPlan, gradientPlan, mainLesionPlan, owned, type ProgramSpec } from './plan.js';
import type { EvalPartState, GradientPartState, ReportState } from './schema.js';
import { partWanted, saveState } from './state.js';

export function reslensVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export interface RunContext {
  rt: Runtime;
  net: Network;
  data: Dataset;
  compare: { net: Network; data: Dataset } | null;
  state: ReportState;
  /** The progress file. */
  file: string;
  signal: AbortSignal;
  /** Lesion mode of a changed unit (DELETE, scale or a branch mean). */
  mode: { kind: 'delete' } | { kind: 'scale'; alpha: number } | { kind: 'mean' };
  log: (line: string) => void;
}

const now = () => performance.now();

export async function runReport(ctx: RunContext): Promise<void> {
  const { state: s, net } = ctx;
  const c = s.config;
  const save = () => saveState(ctx.file, s);
  const stopIfAborted = () => {
    if (ctx.signal.aborted) throw new Interrupted();
  };

  if (c.parts.inspect && !s.parts.inspect) {
    const t0 = now();
    const doc = inspectReport(net);
    s.parts.inspect = { done: true, seconds: (now() - t0) / 1000, doc };
    save();
  }
  stopIfAborted();

  if (partWanted(c, 'lesion')) {
    const plan = mainLesionPlan(s.network, c);
    const engine = new Engine(ctx.rt, net);
    const changed = await changedMode(ctx, engine, ctx.data);
    await evalPart(ctx, engine, ctx.data, 'lesion', plan.programs, s.network.n, changed);
    if (c.parts.reorder) await evalPart(ctx, engine, ctx.data, 'reorder', plan.reorder, s.network.n, changed);
  }
  stopIfAborted();

  if (c.parts.paths && !s.parts.paths) {
    const t0 = now();
    const survival = net.preprocessing.survival ? { p: net.preprocessing.survival, source: 'reslens.survival in the model' } : null;
    const doc = { command: 'paths' as const, ...pathsReport(s.network.n, s.model.path, [], undefined, survival) };
    s.parts.paths = { done: true, seconds: (now() - t0) / 1000, doc };
    save();
  }
  stopIfAborted();

  if (c.parts.gradients) await gradientPart(ctx);
  stopIfAborted();

  if (c.parts.compare && ctx.compare && s.comparison) {
    const plan = compareLesionPlan(s.comparison.network, c);
    const engine = new Engine(ctx.rt, ctx.compare.net);
    await evalPart(ctx, engine, ctx.compare.data, 'compare', plan.programs, s.comparison.network.n, () => DELETE);
  }
}

/** The mode a changed unit gets; for 'mean' the branch means over the data (computed only when needed). */
async function changedMode(ctx: RunContext, engine: Engine, data: Dataset): Promise<(u: number) => BlockMode> {
  const m = ctx.mode;
  if (m.kind === 'delete') return () => DELETE;
  if (m.kind === 'scale') return () => ({ kind: 'scale', alpha: m.alpha });
  // Only the lesion part changes blocks (reordering keeps every block intact).
  if (ctx.state.parts.lesion?.done) return () => DELETE;
  ctx.log('computing the mean of every residual branch (--mode mean)');
  const means = await engine.branchMeans(data, ctx.state.config.batch);
  return (u) => means.get(u)!;
}

function program(spec: ProgramSpec, n: number, changed: (u: number) => BlockMode): Program {
  if ('order' in spec) return { order: spec.order, modes: intactProgram(n).modes };
  const p = intactProgram(n);
  for (const u of spec.changed) p.modes[u] = changed(u);
  return p;
}

async function evalPart(
  ctx: RunContext,
  engine: Engine,
  data: Dataset,
  name: 'lesion' | 'reorder' | 'compare',
  specs: ProgramSpec[],
  n: number,
  changed: (u: number) => BlockMode,
): Promise<void> {
  const s = ctx.state;
  let p: EvalPartState | null = s.parts[name];
  if (p?.done) return;
  const own = owned(specs.length, s.shard);
  if (p && (p.programs !== specs.length || !isDeepStrictEqual(p.owned, own) || (p.batchesDone > 0 && p.results.length !== own.length))) {
    throw new UserError(`${ctx.file}: its ${name} part does not match this run's plan; start over with --force`);
  }
  if (!p) {
    p = { done: false, seconds: 0, programs: specs.length, owned: own, batchesDone: 0, results: [] };
    s.parts[name] = p;
  }
  const part = p;
  const bs = s.config.batch;
  const batches = Math.ceil(data.size / bs);
  if (part.batchesDone > 0) ctx.log(`${name}: resuming after batch ${part.batchesDone} of ${batches}`);
  const base = part.seconds;
  const t0 = now();
  if (own.length) {
    const programs = own.map((j) => program(specs[j]!, n, changed));
    const bar = progressBar(name, data.size);
    const results = await engine.evaluate(programs, data, {
      batch: bs,
      signal: ctx.signal,
      startBatch: part.batchesDone,
      initial: part.batchesDone > 0 ? part.results : undefined,
      onProgress: (d) => bar.update(d),
      onBatch: (b, res) => {
        part.batchesDone = b + 1;
        part.results = res;
        part.seconds = base + (now() - t0) / 1000;
        saveState(ctx.file, s);
      },
    });
    bar.done();
    part.results = results;
  }
  part.batchesDone = batches;
  part.done = true;
  part.seconds = base + (now() - t0) / 1000;
  saveState(ctx.file, s);
}

async function gradientPart(ctx: RunContext): Promise<void> {
  const s = ctx.state;
  const c = s.config;
  let p: GradientPartState | null = s.parts.gradients;
  if (p?.done) return;
  const plan = gradientPlan(s.network.n, ctx.data.size, c);
  const own = owned(plan.batches.length, s.shard);
  if (p && (p.batches !== plan.batches.length || !isDeepStrictEqual(p.owned, own))) {
    throw new UserError(`${ctx.file}: its gradients part does not match this run's plan; start over with --force`);
  }
  if (!p) {
    p = { done: false, seconds: 0, batches: plan.batches.length, owned: own, finished: [] };
    s.parts.gradients = p;
  }
  const part = p;
  const finished = new Set(part.finished.map((f) => f.batch));
  const todo = own.filter((b) => !finished.has(b));
  if (finished.size) ctx.log(`gradients: resuming with ${finished.size} of ${own.length} batches done`);
  const base = part.seconds;
  const t0 = now();
  if (todo.length) {
    const classes = ctx.net.preprocessing.classNames?.length ?? ctx.data.classes ?? 0;
    if (!classes) throw new UserError(`${s.model.path}: cannot tell the number of classes; add reslens.classes to the model's metadata`);
    const pg = await PathGradients.create(ctx.rt, ctx.net, plan.batchSize, classes);
    const byBatch = new Map<number, number[]>();
    plan.samples.forEach((x, i) => byBatch.set(x.batch, [...(byBatch.get(x.batch) ?? []), i]));
    const bar = progressBar('gradients', todo.length);
    let done = 0;
    for (const b of todo) {
      if (ctx.signal.aborted) throw new Interrupted();
      const idx = byBatch.get(b) ?? [];
      const batch = await ctx.data.batch(plan.batches[b]!);
      const { norms, loss } = await pg.runBatch(batch.images, batch.labels, idx.map((i) => plan.samples[i]!.blocks), ctx.signal);
      part.finished.push({ batch: b, loss, norms });
      part.seconds = base + (now() - t0) / 1000;
      saveState(ctx.file, s);
      bar.update(++done);
    }
    bar.done();
  }
  part.finished.sort((a, b) => a.batch - b.batch);
  part.done = true;
  part.seconds = base + (now() - t0) / 1000;
  saveState(ctx.file, s);
}
