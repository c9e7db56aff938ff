/**
 * Runs the parts of a report, writing the progress file after each part and, within the lesion
 * parts, the gradients and the exact decomposition, after every batch, so that a killed run resumes where it stopped.
 */
import { readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { Engine } from '../engine/engine.js';
import type { Network } from '../engine/network.js';
import type { Runtime } from '../engine/session.js';
import { Interrupted, UserError } from '../errors.js';
import type { Dataset } from '../loader/data/dataset.js';
import { exactSession, runExactBatches } from '../studies/exact.js';
import { gradientSession, runGradientBatches } from '../studies/gradients.js';
import { inspectReport } from '../studies/inspect.js';
import { changedMode, runConfigurations, type LesionMode, type ProgramSpec } from '../studies/lesion.js';
import { networkPaths, pathsReport } from '../studies/paths.js';
import { compareLesionPlan, exactPlan, gradientPlan, mainLesionPlan, owned } from './plan.js';
import type { EvalPartState, ReportState } from './schema.js';
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
  mode: LesionMode;
  /** --memory: the budget the exact part's slices and lanes fit (default: memory.ts's). */
  memory?: number;
  log: (line: string) => void;
  /** Shows a part's progress (samples or batches done of `total`). */
  progress: (label: string, total: number) => { update(done: number): void; done(): void };
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
    // Only the lesion part changes blocks (reordering keeps every block intact): the branch
    // means of --mode mean are measured only while it is unfinished.
    const mode: LesionMode = s.parts.lesion?.done ? { kind: 'delete' } : ctx.mode;
    if (mode.kind === 'mean') ctx.log('computing the mean of every residual branch (--mode mean)');
    const changed = await changedMode(engine, ctx.data, mode, c.batch);
    await evalPart(ctx, engine, ctx.data, 'lesion', plan.programs, changed);
    if (c.parts.reorder) await evalPart(ctx, engine, ctx.data, 'reorder', plan.reorder, changed);
  }
  stopIfAborted();

  if (c.parts.paths && !s.parts.paths) {
    const t0 = now();
    const doc = { command: 'paths' as const, ...pathsReport(networkPaths(net, s.model.path, { deleted: [], ranges: [] })) };
    s.parts.paths = { done: true, seconds: (now() - t0) / 1000, doc };
    save();
  }
  stopIfAborted();

  if (c.parts.gradients) await gradientPart(ctx);
  stopIfAborted();

  if (c.parts.exact) await exactPart(ctx);
  stopIfAborted();

  if (c.parts.compare && ctx.compare && s.comparison) {
    const plan = compareLesionPlan(s.comparison.network, c);
    const engine = new Engine(ctx.rt, ctx.compare.net);
    await evalPart(ctx, engine, ctx.compare.data, 'compare', plan.programs, await changedMode(engine, ctx.compare.data, { kind: 'delete' }, c.batch));
  }
}

async function evalPart(
  ctx: RunContext,
  engine: Engine,
  data: Dataset,
  name: 'lesion' | 'reorder' | 'compare',
  specs: ProgramSpec[],
  changed: Awaited<ReturnType<typeof changedMode>>,
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
    const bar = ctx.progress(name, data.size);
    const results = await runConfigurations(engine, data, specs, own, changed, {
      batch: bs,
      signal: ctx.signal,
      startBatch: part.batchesDone,
      initial: part.batchesDone > 0 ? part.results : undefined,
      onProgress: (d) => bar.update(d),
      onNote: ctx.log,
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

/** What a part made of batches keeps: which batches it owns and what each finished one gave. */
interface BatchedPartState<F extends { batch: number }> {
  done: boolean;
  seconds: number;
  batches: number;
  owned: number[];
  finished: F[];
}

/**
 * A part computed batch by batch (gradients, exact): each owned batch's result is saved as it
 * finishes, a resumed run does only the batches not saved, and a plan that differs from the
 * saved one is refused.
 */
async function batchedPart<P extends BatchedPartState<{ batch: number }>>(
  ctx: RunContext,
  name: 'gradients' | 'exact',
  batches: number,
  saved: P | null,
  attach: (p: P) => P,
  run: (todo: number[], onBatch: (f: P['finished'][number]) => void) => Promise<{ interrupted: boolean }>,
): Promise<void> {
  const s = ctx.state;
  if (saved?.done) return;
  const own = owned(batches, s.shard);
  if (saved && (saved.batches !== batches || !isDeepStrictEqual(saved.owned, own))) {
    throw new UserError(`${ctx.file}: its ${name} part does not match this run's plan; start over with --force`);
  }
  // A new part starts empty; its finished entries are the run's (the cast names their type).
  const part = saved ?? attach({ done: false, seconds: 0, batches, owned: own, finished: [] } as unknown as P);
  const finished = new Set(part.finished.map((f) => f.batch));
  const todo = own.filter((b) => !finished.has(b));
  if (finished.size) ctx.log(`${name}: resuming with ${finished.size} of ${own.length} batches done`);
  const base = part.seconds;
  const t0 = now();
  if (todo.length) {
    const bar = ctx.progress(name, todo.length);
    let done = 0;
    const { interrupted } = await run(todo, (f) => {
      part.finished.push(f);
      part.seconds = base + (now() - t0) / 1000;
      saveState(ctx.file, s);
      bar.update(++done);
    });
    if (interrupted) throw new Interrupted();
    bar.done();
  }
  part.finished.sort((x, y) => x.batch - y.batch);
  part.done = true;
  part.seconds = base + (now() - t0) / 1000;
  saveState(ctx.file, s);
}

async function gradientPart(ctx: RunContext): Promise<void> {
  const s = ctx.state;
  const plan = gradientPlan(s.network.n, ctx.data.size, s.config);
  await batchedPart(ctx, 'gradients', plan.batches.length, s.parts.gradients, (p) => (s.parts.gradients = p), async (todo, onBatch) => {
    const pg = await gradientSession(ctx.rt, ctx.net, ctx.data, plan.batchSize);
    return runGradientBatches(pg, ctx.data, plan, todo, { signal: ctx.signal, onBatch: (batch, { loss, norms }) => onBatch({ batch, loss, norms }) });
  });
}

/** The exact decomposition: each owned batch's float64 sums are kept as it finishes. */
async function exactPart(ctx: RunContext): Promise<void> {
  const s = ctx.state;
  const plan = exactPlan(ctx.data.size, s.config);
  await batchedPart(ctx, 'exact', plan.batches.length, s.parts.exact, (p) => (s.parts.exact = p), async (todo, onBatch) => {
    const eg = await exactSession(ctx.rt, ctx.net, ctx.data, plan.batchSize, { memory: ctx.memory, onCut: ctx.log });
    return runExactBatches(eg, ctx.data, plan, todo, { signal: ctx.signal, onBatch: (batch, got) => onBatch({ batch, ...got }) });
  });
}
