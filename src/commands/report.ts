/**
 * reslens report: every analysis of one model in one JSON document (src/report/schema.ts),
 * resumable (--resume), shardable (--shard I/N, then reslens merge) and with an HTML page.
 */
import type { Command } from 'commander';
import { Option } from 'commander';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { formatBlockList, parseBlockList } from '../blocklist.js';
import { openNetwork, type Network } from '../engine/network.js';
import { onnxruntimeVersion, type Runtime } from '../engine/session.js';
import { Interrupted, UserError } from '../errors.js';
import { checkOutput, toJson, writeFileAtomic } from '../files.js';
import { lockOutput } from '../report/lock.js';
import type { Dataset } from '../loader/data/dataset.js';
import { renderHtml } from '../report/html.js';
import { compareLesionPlan, exactPlan, gradientPlan, mainLesionPlan } from '../report/plan.js';
import { reslensVersion, runReport } from '../report/run.js';
import { Report, ReportState, SCHEMA_VERSION, type NetworkDesc, type ReportConfig } from '../report/schema.js';
import { assemble, checkReport, configDifferences, readState, removeStaleTemps, saveState } from '../report/state.js';
import { checkMode, eligibleUnits, formatMode, parseMode, type LesionMode } from '../studies/lesion.js';
import { planNetwork } from '../studies/network.js';
import { note, progressBar } from '../ui/progress.js';
import { addDataOptions, batchFor, addPreprocessOptions, addRuntimeOptions, modelArgument, interruptSignal, openDataFor, parseKList, positiveInt, preprocessOptions, seedArg, shareArg, withFlagNames, withRuntime, type DataFlags, type PreprocessFlags, type RuntimeFlags } from './common.js';
import { shown } from '../text.js';

const pct = (e: number) => `${(e * 100).toFixed(2)}%`;

/** A few lines on stdout: the headline numbers of each part. */
export function renderReportSummary(r: Report): string {
  const out: string[] = [];
  out.push(`${shown(r.model.path)} on ${shown(r.data.description)}`);
  const t = r.inspect?.totals;
  if (r.inspect && t) out.push(r.inspect.kind === 'residual' ? `structure: residual, ${t.blocks} blocks in ${t.stages} stages, 2^${t.blocks} paths` : `structure: ${r.inspect.kind}, ${t.layers} layers in ${t.stages} stages`);
  const l = r.lesion;
  if (l) {
    out.push(`baseline error ${pct(l.baseline.error)}${l.baseline.top5Error !== undefined ? `, top-5 error ${pct(l.baseline.top5Error)}` : ''}`);
    const plainUnits = l.single.filter((x) => !x.downsampling);
    const plain = plainUnits.map((x) => x.error);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const top5 = plainUnits.length && plainUnits[0]!.top5Error !== undefined ? `; top-5 mean ${pct(mean(plainUnits.map((x) => x.top5Error!)))}` : '';
    if (plain.length) out.push(`one ${l.unit} deleted: mean error ${pct(mean(plain))}, max ${pct(Math.max(...plain))} (non-downsampling)${top5}`);
    if (l.k.length) out.push(`k ${l.unit}s deleted: ${l.k.map((x) => `k=${x.k} ${pct(x.mean)}`).join(', ')}`);
    if (l.reorder.length) out.push(`reordered: ${l.reorder.map((x) => `τ=${x.meanTau.toFixed(2)} ${pct(x.meanError)}`).join(', ')}`);
  }
  if (r.paths) out.push(`path lengths: mean ${r.paths.summary.mean.toFixed(2)}, sd ${r.paths.summary.sd.toFixed(2)}; 95% of paths have length ${r.paths.shortestRanges[1]!.lo}-${r.paths.shortestRanges[1]!.hi}`);
  const g = r.gradients;
  if (g?.effective.range) {
    const missing = g.meanNorm.map((m, k) => (m === null ? k : -1)).filter((k) => k >= 0);
    const of = missing.length ? ` of the ${g.meanNorm.length - missing.length} sampled lengths (not sampled: k = ${formatBlockList(missing)})` : '';
    out.push(`effective paths: lengths ${g.effective.range.lo}-${g.effective.range.hi} carry ${(g.effective.range.mass * 100).toFixed(1)}% of the gradient${of}`);
  }
  const x = r.exact?.exact;
  if (x) {
    const [lo, hi] = x.effectiveRange;
    const held = x.perLength.slice(lo, hi + 1).reduce((a, p) => a + p.share, 0);
    out.push(`exact decomposition (${x.images} images): lengths ${lo}-${hi} hold ${(held * 100).toFixed(1)}% of the gradient; identity error ${x.identityError.toExponential(1)}`);
  }
  if (r.compare) {
    const c = r.compare;
    out.push(`compared with ${shown(c.model.path)}: baseline ${pct(c.baseline.error)}${c.k.length ? `; ${c.k.map((x) => `k=${x.k} ${pct(x.mean)}`).join(', ')}` : ''}`);
  }
  for (const n of r.notes) out.push(`note: ${n}`);
  return out.join('\n') + '\n';
}

/** Whether `file` is the finished output (report, or shard file) of a run with these options. */
function finished(file: string, shard: { index: number; count: number } | null, config: ReportConfig, model: string, data: string): boolean {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return false;
  }
  if (shard) {
    const s = ReportState.safeParse(doc);
    return s.success && s.data.kind === 'shard' && s.data.shard.index === shard.index && s.data.shard.count === shard.count
      && s.data.model.sha256 === model && s.data.data.sha256 === data && !configDifferences(s.data.config, config, true).length;
  }
  const r = Report.safeParse(doc);
  return r.success && r.data.model.sha256 === model && r.data.data.sha256 === data && !configDifferences(r.data.config, config, true).length;
}

export function registerReport(program: Command): void {
  const cmd = program
    .command('report')
    .description('inspect, lesion sweeps, reordering, paths and gradients of one model in one JSON document (resumable, shardable)')
    .addArgument(modelArgument())
    .addOption(new Option('-o, --output <file>', 'the report (JSON); progress goes to FILE.partial until it is done').default('report.json'))
    .addOption(new Option('--force', 'replace an existing output, and start over instead of resuming'))
    .addOption(new Option('--resume', 'continue from FILE.partial (same model, data and options) without recomputing what it holds'))
    .addOption(new Option('--html <file>', 'also write a self-contained HTML page with the plots'))
    .addOption(new Option('--compare <plain.onnx>', 'also run the lesion sweeps on this (plain) network; its error against k is plotted beside the residual one'))
    .addOption(new Option('--shard <i/n>', 'run only shard I of N (configurations i, i+N, …) and write a shard file for reslens merge'))
    .addOption(new Option('--no-inspect', 'skip the structure'))
    .addOption(new Option('--no-lesion', 'skip the single-block and k-block sweeps'))
    .addOption(new Option('--no-reorder', 'skip the reordering'))
    .addOption(new Option('--no-paths', 'skip the path-length distribution'))
    .addOption(new Option('--no-gradients', 'skip the path-restricted gradients'))
    .addOption(new Option('--mode <mode>', 'delete | scale:ALPHA | mean').default('delete'))
    .addOption(new Option('--k <list>', 'numbers of blocks deleted at once (default: 1 to 10, at most the eligible blocks)'))
    .addOption(new Option('--samples <n>', 'random subsets per k, and orders per swap count').argParser(positiveInt('--samples', 100000)).default(10))
    .addOption(new Option('--swaps <n>', 'reordering with 1..N random swaps within a stage').argParser(positiveInt('--swaps', 10000)).default(5))
    .addOption(new Option('--include-downsampling', 'let random k-subsets include downsampling blocks'))
    .addOption(new Option('--seed <n>', 'seed for the lesion subsets and orders').argParser(seedArg('--seed')).default(0))
    .addOption(new Option('--gradient-samples <n>', 'gradient samples per path length (one random batch each)').argParser(positiveInt('--gradient-samples', 1e6)).default(20))
    .addOption(new Option('--gradient-k <list>', 'path lengths to sample (default: all, 0-n)'))
    .addOption(new Option('--gradient-batch <n>', 'images per gradient batch').argParser(positiveInt('--gradient-batch', 65536)).default(32))
    .addOption(new Option('--gradient-seed <n>', 'seed for the gradient batches and block subsets').argParser(seedArg('--gradient-seed')).default(1))
    .addOption(new Option('--exact', 'also split the gradient exactly by path length on consecutive batches (every path; as gradients --exact)'))
    .addOption(new Option('--exact-batch <n>', 'images per batch of the exact decomposition').argParser(positiveInt('--exact-batch', 65536)).default(32))
    .addOption(new Option('--mass <m>', 'share of the total gradient the effective range must hold').argParser(shareArg('--mass')).default(0.9))
    .addHelpText('after', `
Examples:
  reslens report fixtures/models/resnet20.onnx -o report.json --html report.html
  reslens report fixtures/models/resnet56.onnx --exact -o report.json --html report.html
  reslens report model.onnx --data test_batch.bin --compare plain.onnx --k 1-10 --samples 20 -o r.json
  reslens report model.onnx --data d.npy -o r.json --resume          # after Ctrl-C or a crash: carry on
  reslens report model.onnx --data d.npy --shard 2/8 -o shard-2.json # then: reslens merge shard-*.json -o r.json`);
  addPreprocessOptions(addRuntimeOptions(addDataOptions(cmd)));
  cmd.action((modelPath: string, o: ReportFlags) => withFlagNames(REPORT_FLAGS, () => report(modelPath, o)));
}

/** The report's study options named by its flags where the names differ. */
const REPORT_FLAGS = { ks: '--gradient-k', batchSize: '--gradient-batch', swaps: '--reorder' };

interface ReportFlags extends DataFlags, RuntimeFlags, PreprocessFlags {
  output: string;
  force?: boolean;
  resume?: boolean;
  html?: string;
  compare?: string;
  shard?: string;
  inspect: boolean;
  lesion: boolean;
  reorder: boolean;
  paths: boolean;
  gradients: boolean;
  mode: string;
  k?: string;
  samples: number;
  swaps: number;
  includeDownsampling?: boolean;
  seed: number;
  gradientSamples: number;
  gradientK?: string;
  gradientBatch: number;
  gradientSeed: number;
  exact?: boolean;
  exactBatch: number;
  mass: number;
  batch?: number;
}

/** --shard I/N. */
export function parseShard(s: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(s.trim());
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || !(count >= 1) || !(index < count) || count > 1e6) {
    throw new UserError(`--shard: '${s}' is not I/N with 0 <= I < N (e.g. --shard 0/4 … --shard 3/4)`);
  }
  return { index, count };
}

const exists = (f: string, flag: string) => new UserError(`${f}: already exists; pass --force to replace it or choose another ${flag} path`);

async function report(modelPath: string, o: ReportFlags): Promise<void> {
  const mode = parseMode(o.mode);
  const shard = o.shard ? parseShard(o.shard) : { index: 0, count: 1 };
  const out = o.output;
  if (o.shard && o.html) throw new UserError('--html: a shard has only part of the results; pass --html to reslens merge instead');
  if (o.compare && mode.kind !== 'delete') throw new UserError(`--compare: plain networks can only be lesioned with --mode delete, not ${o.mode}`);
  // With --resume an existing output may be this run's, finished: checked once the options are known.
  checkOutput(out, { force: o.force, flag: '-o', mayExist: o.resume });
  if (o.html) checkOutput(o.html, { force: o.force, flag: '--html', mayExist: o.resume && existsSync(out) });
  // From here on the output, its progress file and their temporary files are this run's alone.
  const lock = lockOutput(out);
  try {
    await reportLocked(modelPath, o, mode, shard);
  } finally {
    lock.release();
  }
}

async function reportLocked(modelPath: string, o: ReportFlags, mode: LesionMode, shard: { index: number; count: number }): Promise<void> {
  const sharded = !!o.shard;
  const out = o.output;
  const partial = `${out}.partial`;
  let prior: ReportState | null = null;
  if (existsSync(partial)) {
    if (o.resume) prior = readState(partial);
    else if (!o.force) throw new UserError(`${partial}: progress of an unfinished run; pass --resume to continue it or --force to start over`);
  }
  removeStaleTemps(partial);
  removeStaleTemps(out);

  await withRuntime({ ...o, announce: true }, async (rt) => {
    const net = await openNetwork(rt, modelPath, preprocessOptions(o));
    const device = await rt.resolveDevice();
    const data = await openDataFor(net, o);
    let cmp: { net: Network; data: Dataset } | null = null;
    try {
      const desc = planNetwork(net);
      const { parts, notes } = reportParts(o, desc, mode);
      let cdesc: NetworkDesc | null = null;
      if (o.compare) {
        const cnet = await openNetwork(rt, o.compare, preprocessOptions(o));
        cmp = { net: cnet, data: await openDataFor(cnet, o) };
        cdesc = planNetwork(cnet);
        if (cdesc.kind === 'dense') throw new UserError(`${o.compare}: a dense network has no blocks to delete; --compare takes a plain or residual network`);
      }
      const config = reportConfig(o, parts, mode, desc, cdesc, prior?.config.batch ?? await batchFor(rt, net, o, data.size));
      // Plans that cannot be made (k above the eligible blocks, nothing to reorder, a batch
      // larger than the data) fail here, before any work.
      if (parts.lesion || parts.reorder) mainLesionPlan(desc, config);
      if (cdesc) compareLesionPlan(cdesc, config);
      if (parts.gradients) gradientPlan(desc.n, data.size, config);
      if (parts.exact) exactPlan(data.size, config);
      const dataRef = { description: data.description, size: data.size, sha256: await data.sha256(), classes: data.classes };
      const modelRef = { path: modelPath, sha256: net.model.sha256, metadata: net.model.metadata };
      const comparison = cmp && cdesc
        ? { model: { path: o.compare!, sha256: cmp.net.model.sha256 }, data: { description: cmp.data.description, size: cmp.data.size, sha256: await cmp.data.sha256() }, network: cdesc }
        : null;
      if (existsSync(out) && !o.force) {
        if (finished(out, sharded ? shard : null, config, modelRef.sha256, dataRef.sha256)) {
          rmSync(partial, { force: true });
          note(`${out}: already finished with these options; nothing to do`);
          return;
        }
        throw exists(out, '-o');
      }
      if (o.resume && !prior) note(`reslens: ${partial} not found: nothing to resume, starting from the beginning`);
      const fresh: ReportState = {
        schemaVersion: SCHEMA_VERSION, kind: 'partial', reslens: reslensVersion(), onnxruntime: await onnxruntimeVersion(), device,
        config, shard, model: modelRef, data: dataRef, network: desc, comparison, notes, startedAt: new Date().toISOString(),
        parts: { inspect: null, paths: null, lesion: null, reorder: null, compare: null, gradients: null, exact: null },
      };
      const state = prior ? resumable(prior, fresh, partial) : fresh;
      saveState(partial, state);
      await runParts(rt, { net, data, compare: cmp, state, partial, mode, memory: o.memory });
      await writeOutputs(state, o, partial);
    } finally {
      await data.close();
      await cmp?.data.close();
    }
  });
}

/** Which parts this network can have, and a note for each asked for that it cannot. */
function reportParts(o: ReportFlags, desc: NetworkDesc, mode: LesionMode): { parts: ReportConfig['parts']; notes: string[] } {
  const residual = desc.kind === 'residual';
  const parts = {
    inspect: !!o.inspect,
    lesion: !!o.lesion && desc.kind !== 'dense',
    reorder: !!o.reorder && residual,
    paths: !!o.paths && residual,
    gradients: !!o.gradients && residual,
    exact: !!o.exact && residual,
    compare: !!o.compare,
  };
  const notes: string[] = [];
  if (o.lesion && !parts.lesion) notes.push(`lesion: a dense network has no blocks to delete`);
  if (o.reorder && !parts.reorder) notes.push(`reorder: only residual networks can be reordered (this one is ${desc.kind})`);
  if (o.paths && !parts.paths) notes.push(`paths: a ${desc.kind} network has no residual blocks, so no paths`);
  if (o.gradients && !parts.gradients) notes.push(`gradients: a ${desc.kind} network has no residual blocks, so no paths to restrict gradients to`);
  if (o.exact && !parts.exact) notes.push(`exact: a ${desc.kind} network has no residual blocks, so no paths to split the gradient by`);
  if (parts.lesion) checkMode(desc.kind, mode);
  return { parts, notes };
}

/** The options every shard and resumed run must share (and the batch, which may differ). */
function reportConfig(o: ReportFlags, parts: ReportConfig['parts'], mode: LesionMode, desc: NetworkDesc, cdesc: NetworkDesc | null, batch: number): ReportConfig {
  const eligible = (d: NetworkDesc) => eligibleUnits(d, !!o.includeDownsampling).length;
  let k: number[];
  if (o.k) k = parts.lesion ? parseKList(o.k, desc, !!o.includeDownsampling) : parseBlockList(o.k, '--k', desc.n, 1);
  else {
    const top = parts.lesion || cdesc ? Math.min(10, ...(parts.lesion ? [eligible(desc)] : []), ...(cdesc ? [eligible(cdesc)] : [])) : 0;
    k = [...Array(Math.max(0, top)).keys()].map((i) => i + 1);
  }
  const gradientK = desc.kind === 'residual' ? (o.gradientK ? parseBlockList(o.gradientK, '--gradient-k', desc.n, 0) : [...Array(desc.n + 1).keys()]) : [];
  return {
    parts,
    mode: formatMode(mode),
    k,
    samples: o.samples,
    swaps: o.swaps,
    includeDownsampling: !!o.includeDownsampling,
    seed: o.seed,
    batch: o.batch ?? batch,
    gradientK,
    gradientSamples: o.gradientSamples,
    gradientBatch: o.gradientBatch,
    gradientSeed: o.gradientSeed,
    exactBatch: o.exactBatch,
    mass: o.mass,
    limit: o.limit ?? null,
    compare: o.compare ?? null,
  };
}

/** The progress file to carry on from, once it is known to be this run's. */
function resumable(prior: ReportState, fresh: ReportState, partial: string): ReportState {
  const why = [
    ...(prior.model.sha256 !== fresh.model.sha256 ? [`the model (${prior.model.path}) differs`] : []),
    ...(prior.data.sha256 !== fresh.data.sha256 || prior.data.size !== fresh.data.size ? [`the data (${prior.data.description}) differs`] : []),
    ...((prior.comparison?.model.sha256 ?? null) !== (fresh.comparison?.model.sha256 ?? null) ? ['the --compare model differs'] : []),
    ...(prior.shard.index !== fresh.shard.index || prior.shard.count !== fresh.shard.count ? [`it is shard ${prior.shard.index}/${prior.shard.count}`] : []),
    ...(prior.reslens !== fresh.reslens ? [`it was written by reslens ${prior.reslens}`] : []),
    ...configDifferences(prior.config, fresh.config),
  ];
  if (why.length) throw new UserError(`${partial}: cannot resume: ${why.join('; ')}; repeat the first run's options, or pass --force to start over`);
  const left = Object.entries(prior.parts).filter(([, p]) => p?.done).map(([n]) => n);
  note(`resuming ${partial}${left.length ? ` (done: ${left.join(', ')})` : ''}`);
  return prior;
}

async function runParts(rt: Runtime, r: { net: Network; data: Dataset; compare: { net: Network; data: Dataset } | null; state: ReportState; partial: string; mode: LesionMode; memory?: number }): Promise<void> {
  const stop = interruptSignal();
  try {
    await runReport({
      rt, net: r.net, data: r.data, compare: r.compare, state: r.state, file: r.partial, signal: stop.signal, mode: r.mode, memory: r.memory,
      log: (l) => note(`${l}`), progress: (label, total) => progressBar(label, total),
    });
  } catch (e) {
    if (e instanceof Interrupted) throw new Interrupted(`interrupted: progress is in ${r.partial}; run the same command with --resume to continue`);
    throw e;
  } finally {
    stop.dispose();
  }
}

/** The shard file, or the report (and its page) and the summary on stdout; then the progress file goes. */
async function writeOutputs(state: ReportState, o: ReportFlags, partial: string): Promise<void> {
  const out = o.output;
  if (o.shard) {
    state.kind = 'shard';
    writeFileAtomic(out, toJson(state), !!o.force, '-o');
    rmSync(partial, { force: true });
    note(`wrote shard ${state.shard.index}/${state.shard.count} to ${out}; combine the shards with reslens merge`);
    return;
  }
  const report = checkReport(assemble([state]));
  const html = o.html ? await renderHtml(report) : null;
  writeFileAtomic(out, toJson(report), !!o.force, '-o');
  note(`wrote ${out}`);
  if (html !== null) {
    writeFileAtomic(o.html!, html, !!o.force, '--html');
    note(`wrote ${o.html}`);
  }
  rmSync(partial, { force: true });
  process.stdout.write(renderReportSummary(report));
}
