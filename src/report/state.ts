/**
 * The report's progress and shard files (ReportState), and the assembly of the report from
 * one or more of them: a single run is shard 0 of 1, so `reslens merge` and an unsharded run
 * build the report with the same code from the same counts.
 */
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import path from 'node:path';
import { UserError } from '../errors.js';
import type { EvalResult } from '../engine/engine.js';
import { toJson, writeFileAtomic } from '../files.js';
import type { DocHead } from '../studies/document.js';
import { exactDoc, summarizeExact, type ExactBatchSums } from '../studies/exact.js';
import { effectiveOf, gradientResult, gradientsDoc, type BatchNorms } from '../studies/gradients.js';
import { lesionResult, withError } from '../studies/lesion.js';
import { compareLesionPlan, exactPlan, gradientPlan, mainLesionPlan } from './plan.js';
import { PART_NAMES, Report, ReportState, SCHEMA_VERSION, type PartName, type ReportConfig } from './schema.js';

/** The lesion part runs when either sweep or the reordering is wanted (it holds the baseline). */
export function lesionPartWanted(c: ReportConfig): boolean {
  return c.parts.lesion || c.parts.reorder;
}

export function partWanted(c: ReportConfig, p: PartName): boolean {
  return p === 'lesion' ? lesionPartWanted(c) : c.parts[p];
}

export function partDone(s: ReportState, p: PartName): boolean {
  if (!partWanted(s.config, p)) return true;
  const part = s.parts[p];
  return !!part && part.done;
}

export function readState(file: string, what = 'progress file'): ReportState {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UserError(`${file}: not a readable reslens ${what} (${e instanceof Error ? e.message : e})`);
  }
  if ((raw as { command?: unknown })?.command === 'report') throw new UserError(`${file}: a finished report, not a ${what} (merge takes the files of reslens report --shard I/N)`);
  const v = (raw as { schemaVersion?: unknown })?.schemaVersion;
  if (v !== undefined && v !== SCHEMA_VERSION) throw new UserError(`${file}: written with report schema version ${v}; this reslens reads version ${SCHEMA_VERSION}`);
  const r = ReportState.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new UserError(`${file}: not a reslens ${what} (${i.path.join('.') || 'top level'}: ${i.message})`);
  }
  return r.data;
}

/** Writes the state atomically (temporary file + rename): a kill leaves the old or the new one. */
export function saveState(file: string, s: ReportState): void {
  writeFileAtomic(file, toJson(s), true);
}

/** Removes temporary files that killed runs left next to `file`. */
export function removeStaleTemps(file: string): void {
  const dir = path.dirname(path.resolve(file));
  const prefix = `.${path.basename(file)}.`;
  if (!existsSync(dir)) return;
  for (const f of readdirSync(dir)) {
    if (f.startsWith(prefix) && f.endsWith('.tmp')) rmSync(path.join(dir, f), { force: true });
  }
}

/** The config fields that do not change any measurement (so shards may differ in them). */
function measuredConfig(c: ReportConfig): Omit<ReportConfig, 'batch'> {
  const { batch: _b, ...rest } = c;
  return rest;
}

export function configDifferences(a: ReportConfig, b: ReportConfig, ignoreBatch = false): string[] {
  const x = ignoreBatch ? measuredConfig(a) : a;
  const y = ignoreBatch ? measuredConfig(b) : b;
  const out: string[] = [];
  for (const k of Object.keys(x) as (keyof typeof x)[]) {
    if (!isDeepStrictEqual(x[k], (y as typeof x)[k])) out.push(`${k} ${JSON.stringify(x[k])} ≠ ${JSON.stringify((y as typeof x)[k])}`);
  }
  return out;
}

/** Checks that shard files belong to one run and cover it; returns them in shard order. */
export function checkShards(states: { file: string; state: ReportState }[]): ReportState[] {
  if (!states.length) throw new UserError('merge: give the shard files, e.g. reslens merge shard-*.json -o report.json');
  const first = states[0]!;
  const n = first.state.shard.count;
  const byIndex = new Map<number, { file: string; state: ReportState }>();
  for (const x of states) {
    const s = x.state;
    if (s.kind !== 'shard') throw new UserError(`${x.file}: a progress file of an unfinished run, not a shard output; finish it with reslens report --resume`);
    if (s.shard.count !== n) throw new UserError(`${x.file}: shard ${s.shard.index}/${s.shard.count}, but ${first.file} is one of ${n}`);
    const dup = byIndex.get(s.shard.index);
    if (dup) throw new UserError(`${x.file}: shard ${s.shard.index}/${n} is given twice (also ${dup.file})`);
    byIndex.set(s.shard.index, x);
    const against = (what: string, a: unknown, b: unknown) => {
      if (!isDeepStrictEqual(a, b)) throw new UserError(`${x.file}: ${what} differs from ${first.file} (${JSON.stringify(b)} vs ${JSON.stringify(a)}); the shards are not of one run`);
    };
    against('the model (sha256)', first.state.model.sha256, s.model.sha256);
    against('the data (sha256)', first.state.data.sha256, s.data.sha256);
    against('the data size', first.state.data.size, s.data.size);
    against('the --compare model', first.state.comparison?.model.sha256 ?? null, s.comparison?.model.sha256 ?? null);
    against('the reslens version', first.state.reslens, s.reslens);
    against('the onnxruntime version', first.state.onnxruntime, s.onnxruntime);
    against('the network structure', first.state.network, s.network);
    const diff = configDifferences(first.state.config, s.config, true);
    if (diff.length) throw new UserError(`${x.file}: options differ from ${first.file}: ${diff.join('; ')}`);
    for (const p of PART_NAMES) if (!partDone(s, p)) throw new UserError(`${x.file}: part ${p} is not finished`);
  }
  const missing = [...Array(n).keys()].filter((i) => !byIndex.has(i));
  if (missing.length) throw new UserError(`merge: shards ${missing.map((i) => `${i}/${n}`).join(', ')} are missing`);
  return [...Array(n).keys()].map((i) => byIndex.get(i)!.state);
}

function combine(states: ReportState[], part: 'lesion' | 'reorder' | 'compare', total: number): EvalResult[] {
  const full: (EvalResult | undefined)[] = Array(total).fill(undefined);
  for (const s of states) {
    const p = s.parts[part];
    if (!p) continue;
    if (p.programs !== total) throw new UserError(`shard ${s.shard.index}/${s.shard.count}: part ${part} has ${p.programs} configurations, the plan ${total}`);
    p.owned.forEach((j, i) => (full[j] = withError(p.results[i]!)));
  }
  const gap = full.findIndex((r) => !r);
  if (gap >= 0) throw new UserError(`part ${part}: configuration ${gap} was measured by no shard`);
  return full as EvalResult[];
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

/** The report from the finished states of all shards (one state for an unsharded run). */
export function assemble(states: ReportState[], finishedAt = new Date().toISOString()): Report {
  const s0 = states[0]!;
  const c = s0.config;
  const seconds = (p: PartName): number | null => (partWanted(c, p) ? sum(states.map((s) => s.parts[p]?.seconds ?? 0)) : null);
  const head = (model: { path: string; sha256: string }, data: DocHead['data'], secs: number): DocHead => ({
    model: { path: model.path, sha256: model.sha256 },
    data: { description: data.description, size: data.size, sha256: data.sha256 },
    onnxruntime: s0.onnxruntime,
    device: s0.device,
    seconds: secs,
  });
  let lesion: Report['lesion'] = null;
  if (lesionPartWanted(c)) {
    const plan = mainLesionPlan(s0.network, c);
    const results = combine(states, 'lesion', plan.programs.length);
    const reorder = c.parts.reorder ? combine(states, 'reorder', plan.reorder.length) : [];
    lesion = { command: 'lesion', ...head(s0.model, s0.data, (seconds('lesion') ?? 0) + (seconds('reorder') ?? 0)), ...lesionResult(s0.network, c.mode, c.seed, plan, results, reorder) };
  }
  let compare: Report['compare'] = null;
  if (c.parts.compare && s0.comparison) {
    const plan = compareLesionPlan(s0.comparison.network, c);
    const results = combine(states, 'compare', plan.programs.length);
    compare = { command: 'lesion', ...head(s0.comparison.model, s0.comparison.data, seconds('compare') ?? 0), ...lesionResult(s0.comparison.network, c.mode, c.seed, plan, results, []) };
  }
  let gradients: Report['gradients'] = null;
  if (c.parts.gradients) {
    const plan = gradientPlan(s0.network.n, s0.data.size, c);
    const batches = new Map<number, BatchNorms>();
    for (const s of states) for (const f of s.parts.gradients?.finished ?? []) batches.set(f.batch, f);
    const missing = plan.batches.findIndex((_, b) => !batches.has(b));
    if (missing >= 0) throw new UserError(`part gradients: batch ${missing} was measured by no shard`);
    const r = gradientResult(s0.network.n, plan, { ks: c.gradientK, seed: c.gradientSeed }, batches);
    gradients = gradientsDoc(head(s0.model, s0.data, seconds('gradients') ?? 0), r, effectiveOf(r, c.mass), c.mass) as Report['gradients'];
  }
  let exact: Report['exact'] = null;
  if (c.parts.exact) {
    const plan = exactPlan(s0.data.size, c);
    // Each batch's sums, whichever shard or session made them; summarizeExact adds them in batch order.
    const batches = new Map<number, ExactBatchSums>();
    for (const s of states) for (const { batch, ...sums } of s.parts.exact?.finished ?? []) batches.set(batch, sums);
    const missing = plan.batches.findIndex((_, b) => !batches.has(b));
    if (missing >= 0) throw new UserError(`part exact: batch ${missing} was measured by no shard`);
    exact = exactDoc(head(s0.model, s0.data, seconds('exact') ?? 0), s0.network.n, plan.batchSize, c.mass, summarizeExact(s0.network.n, batches, c.mass), null);
  }
  const parts = Object.fromEntries(PART_NAMES.map((p) => [p, seconds(p)])) as Record<PartName, number | null>;
  const startedAt = states.map((s) => s.startedAt).sort()[0]!;
  return {
    schemaVersion: SCHEMA_VERSION,
    command: 'report',
    reslens: s0.reslens,
    onnxruntime: s0.onnxruntime,
    device: s0.device,
    seeds: { lesion: c.seed, gradients: c.gradientSeed },
    model: s0.model,
    data: { description: s0.data.description, size: s0.data.size, sha256: s0.data.sha256 },
    config: c,
    notes: s0.notes,
    timings: { startedAt, finishedAt, seconds: sum(Object.values(parts).map((x) => x ?? 0)), parts },
    inspect: s0.parts.inspect?.doc ?? null,
    lesion,
    paths: s0.parts.paths?.doc ?? null,
    gradients,
    exact,
    compare,
  };
}

/** Validates a report against the schema (an internal error if reslens itself wrote a bad one). */
export function checkReport(r: Report): Report {
  const v = Report.safeParse(JSON.parse(toJson(r)));
  if (!v.success) {
    const i = v.error.issues[0]!;
    throw new Error(`the report does not match its schema at ${i.path.join('.')}: ${i.message}`);
  }
  return r;
}
