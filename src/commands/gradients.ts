/** reslens gradients: the paper's path-restricted gradient experiment. */
import asciichart from 'asciichart';
import Table from 'cli-table3';
import type { Command } from 'commander';
import { Option } from 'commander';
import { readFileSync } from 'node:fs';
import { formatBlockList, parseBlockList } from '../blocklist.js';
import { openNetwork } from '../engine/network.js';
import { Interrupted, UserError } from '../errors.js';
import type { EffectivePaths } from '../paths/distribution.js';
import { docHead } from '../studies/document.js';
import { checkPlan, effectiveOf, gradientBlocks, gradientSession, gradientsDoc, makePlan, runGradients, type GradientPlan, type GradientResult } from '../studies/gradients.js';
import { exactDoc, exactSession, makeExactPlan, peakLength, runExact, sampledPlanOn, type ExactSummary } from '../studies/exact.js';
import { pathLengthDistribution } from '../paths/distribution.js';
import { note, progressBar } from '../ui/progress.js';
import { addDataOptions, perSecond, addJsonOptions, addPreprocessOptions, addRuntimeOptions, modelArgument, interruptSignal, openDataFor, positiveInt, preprocessOptions, seedArg, shareArg, withFlagNames, withRuntime, type DataFlags, type JsonFlags, type PreprocessFlags, type RuntimeFlags } from './common.js';
import { checkJsonOutput, emitJson, useColor } from './output.js';
import { shown } from '../text.js';

export function renderGradients(r: GradientResult, eff: EffectivePaths, meta: { model: string; data: string; mass: number }, color: boolean): string {
  const style = color ? {} : { head: [], border: [] };
  const compact = { chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' } };
  const out: string[] = [];
  out.push(`${shown(meta.model)}: ${r.n} blocks, gradient at the first block's input, batch ${r.batchSize}, ${r.samples.length} samples on ${shown(meta.data)}`);
  const t = new Table({ head: ['k', 'samples', 'mean |g|', 'share of total'], style, ...compact, colAligns: ['right', 'right', 'right', 'right'] });
  const counts = new Map<number, number>();
  for (const s of r.samples) counts.set(s.k, (counts.get(s.k) ?? 0) + 1);
  r.meanNorm.forEach((m, k) => {
    if (m === null) return;
    t.push([k, counts.get(k) ?? 0, m.toExponential(3), `${(eff.share[k]! * 100).toFixed(2)}%`]);
  });
  out.push(t.toString());
  const measured = r.meanNorm.map((m, k) => ({ m, k })).filter((x): x is { m: number; k: number } => x.m !== null && x.m > 0);
  if (measured.length >= 2) {
    out.push('log10 mean gradient magnitude against path length k');
    out.push(asciichart.plot(measured.map((x) => Math.log10(x.m)), { height: 8, format: (v: number) => v.toFixed(2).padStart(7) }));
    out.push(`k = ${measured[0]!.k} … ${measured[measured.length - 1]!.k}`);
    out.push('share of the total gradient magnitude by path length (C(n,k)·E|g_k|)');
    out.push(asciichart.plot(measured.map((x) => eff.share[x.k]! * 100), { height: 6, format: (v: number) => v.toFixed(1).padStart(7) }));
  }
  if (eff.fit) out.push(`fit: |g_k| ≈ ${Math.exp(eff.fit.intercept).toExponential(2)} × ${eff.fit.factorPerBlock.toFixed(3)}^k (factor per block ${eff.fit.factorPerBlock.toFixed(3)}, r² ${eff.fit.r2.toFixed(3)})`);
  // With lengths left out, the range and its share are of the measured lengths only.
  const of = eff.unmeasured.length ? ` of the ${r.n + 1 - eff.unmeasured.length} measured lengths` : '';
  if (eff.effective) {
    out.push(`effective paths: lengths ${eff.effective.lo} to ${eff.effective.hi} carry ${(eff.effective.mass * 100).toFixed(1)}% of the total gradient${of} (≥ ${meta.mass * 100}%); they are ${((eff.pathShare ?? 0) * 100).toPrecision(3)}% of all 2^${r.n} paths`);
  }
  if (eff.unmeasured.length) out.push(`not measured: ${eff.unmeasured.length} of ${r.n + 1} lengths, k = ${formatBlockList(eff.unmeasured)} (they count as zero above; --k sets the lengths)`);
  return out.join('\n') + '\n';
}

export function registerGradients(program: Command): void {
  const cmd = program
    .command('gradients')
    .description('path-restricted gradients: gradient magnitude against path length, and the effective paths')
    .addArgument(modelArgument())
    .addOption(new Option('--samples <n>', 'samples per k, each on its own random batch').argParser(positiveInt('--samples', 1e6)).default(100))
    .addOption(new Option('--k <list>', 'path lengths to sample, e.g. 0-27 or 0,5,10 (default: all)'))
    .addOption(new Option('--mass <m>', 'share of the total gradient the effective range must hold').argParser(shareArg('--mass')).default(0.9))
    .addOption(new Option('--seed <n>', 'seed for batches and block subsets').argParser(seedArg('--seed')).default(1))
    .addOption(new Option('--plan <file>', 'replay exactly the samples of an earlier --json output'))
    .addOption(new Option('--exact', 'split the gradient exactly by path length, every path, on consecutive batches (--limit images); with --samples, the sampled estimate beside it'))
    .addHelpText('after', `
Examples:
  reslens gradients fixtures/models/resnet20.onnx --samples 20
  reslens gradients model.onnx --data train-images-idx3-ubyte.gz --k 0-54 --samples 1000 --json g.json
  reslens gradients model.onnx --plan g.json      # the same samples again, e.g. on another machine
  reslens gradients fixtures/models/resnet56.onnx --exact --limit 1000
  reslens gradients fixtures/models/resnet56.onnx --exact --limit 320 --samples 20`);
  addPreprocessOptions(addJsonOptions(addRuntimeOptions(addDataOptions(cmd))));
  cmd.action((modelPath: string, o: GradientsFlags, command: Command) => withFlagNames({ ks: '--k', batchSize: '--batch' }, async () => {
    checkJsonOutput(o.json, !!o.force);
    if (o.exact) return exactCommand(modelPath, o, command.getOptionValueSource('samples') === 'cli');
    await withRuntime({ ...o, announce: true }, async (rt) => {
      const net = await openNetwork(rt, modelPath, preprocessOptions(o));
      const n = gradientBlocks(net);
      const data = await openDataFor(net, o);
      try {
        const { plan, ks, seed } = o.plan ? replayPlan(o.plan, n, data.size, o.seed) : newPlan(o, n, data.size);
        const t0 = performance.now();
        const pg = await gradientSession(rt, net, data, plan.batchSize);
        const bar = progressBar('gradients', plan.samples.length);
        const stop = interruptSignal();
        const result = await runGradients(pg, data, plan, { ks, seed }, { onProgress: (d) => bar.update(d), signal: stop.signal }).finally(() => stop.dispose());
        bar.done();
        const seconds = (performance.now() - t0) / 1000;
        const eff = effectiveOf(result, o.mass);
        const doc = gradientsDoc(await docHead(rt, net, modelPath, data, seconds), result, eff, o.mass);
        if (!emitJson(doc, o.json, !!o.force)) {
          process.stdout.write(renderGradients(result, eff, { model: modelPath, data: data.description, mass: o.mass }, useColor()));
          note(`${result.samples.length} path samples in ${seconds.toFixed(1)}s (${perSecond(result.samples.length / seconds)}/s)`);
        }
        if (result.interrupted) throw new Interrupted(`interrupted: ${result.interrupted.samplesDone} of ${plan.samples.length} samples done (the rest have norm null)`);
      } finally {
        await data.close();
      }
    });
  }));
}

interface GradientsFlags extends DataFlags, RuntimeFlags, JsonFlags, PreprocessFlags {
  samples: number;
  k?: string;
  mass: number;
  seed: number;
  plan?: string;
  batch?: number;
  exact?: boolean;
}

function newPlan(o: GradientsFlags, n: number, dataSize: number): { plan: GradientPlan; ks: number[]; seed: number } {
  const ks = o.k ? parseBlockList(o.k, '--k', n, 0) : [...Array(n + 1).keys()];
  return { plan: makePlan(n, dataSize, { ks, samples: o.samples, batchSize: o.batch ?? 32, seed: o.seed }), ks, seed: o.seed };
}

/** The plan of an earlier --json output (--plan), checked against this network and data. */
function replayPlan(file: string, n: number, dataSize: number, seed: number): { plan: GradientPlan; ks: number[]; seed: number } {
  let doc: { batchSize?: number; batches?: number[][]; samples?: GradientPlan['samples']; seed?: number; ks?: number[] };
  try {
    doc = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UserError(`${file}: not a readable JSON file from reslens gradients --json (${e instanceof Error ? e.message : e})`);
  }
  const plan = { batchSize: doc.batchSize ?? 0, batches: doc.batches ?? [], samples: (doc.samples ?? []).map((s) => ({ k: s.k, blocks: s.blocks, batch: s.batch })) };
  checkPlan(plan, n, dataSize, file);
  const ks = doc.ks ?? [...new Set(plan.samples.map((s) => s.k))].sort((a, b) => a - b);
  return { plan, ks, seed: doc.seed ?? seed };
}

/** `--exact`: the decomposition on consecutive batches, and with `--samples` the paper's estimate on the same batches. */
async function exactCommand(modelPath: string, o: GradientsFlags, withSamples: boolean): Promise<void> {
  if (o.plan) throw new UserError('--plan replays sampled paths; --exact measures every path and has no plan to replay (drop one of the two)');
  if (o.k && !withSamples) throw new UserError('--k chooses the lengths to sample; --exact measures all of them (add --samples N for the sampled estimate beside it, or drop --k)');
  await withRuntime({ ...o, announce: true }, async (rt) => {
    const net = await openNetwork(rt, modelPath, preprocessOptions(o));
    const n = gradientBlocks(net);
    const data = await openDataFor(net, o);
    try {
      const plan = makeExactPlan(data.size, { batchSize: o.batch ?? 32 });
      const t0 = performance.now();
      const eg = await exactSession(rt, net, data, plan.batchSize, { memory: o.memory, onCut: note });
      const bar = progressBar('exact gradients', data.size);
      const stop = interruptSignal();
      const run = await runExact(eg, data, plan, o.mass, { onProgress: (d) => bar.update(d), signal: stop.signal }).finally(() => stop.dispose());
      bar.done();
      const seconds = (performance.now() - t0) / 1000;
      let sampled: SampledBeside | null = null;
      if (withSamples && !run.interrupted) {
        const ks = o.k ? parseBlockList(o.k, '--k', n, 0) : [...Array(n + 1).keys()];
        const gplan = sampledPlanOn(plan, n, ks, o.samples, o.seed);
        const t1 = performance.now();
        const pg = await gradientSession(rt, net, data, plan.batchSize);
        const sbar = progressBar('sampled paths', gplan.samples.length);
        const stop2 = interruptSignal();
        const r = await runGradients(pg, data, gplan, { ks, seed: o.seed }, { onProgress: (d) => sbar.update(d), signal: stop2.signal }).finally(() => stop2.dispose());
        sbar.done();
        sampled = { result: r, eff: effectiveOf(r, o.mass), seconds: (performance.now() - t1) / 1000 };
        if (r.interrupted) throw new Interrupted(`interrupted: the exact decomposition finished; ${r.interrupted.samplesDone} of ${gplan.samples.length} path samples done`);
      }
      const doc = exactDoc(await docHead(rt, net, modelPath, data, seconds), n, plan.batchSize, o.mass, run.summary, sampled && { samples: o.samples, seed: o.seed, ks: sampled.result.ks, meanNorm: sampled.result.meanNorm, share: sampled.eff.share, seconds: sampled.seconds });
      if (!emitJson(doc, o.json, !!o.force)) {
        process.stdout.write(renderExact(run.summary, sampled, { model: modelPath, data: data.description, mass: o.mass, n, batchSize: plan.batchSize }, useColor()));
        note(`${run.summary.images} images in ${seconds.toFixed(1)}s (${perSecond(run.summary.images / seconds)}/s)${sampled ? `; ${sampled.result.samples.length} path samples in ${sampled.seconds.toFixed(1)}s` : ''}`);
      }
      if (run.interrupted) throw new Interrupted(`interrupted: ${run.summary.batches} of ${plan.batches.length} batches done (${run.summary.images} images)`);
    } finally {
      await data.close();
    }
  });
}

interface SampledBeside {
  result: GradientResult;
  eff: EffectivePaths;
  seconds: number;
}


/** How the images were batched, as run: the last batch (or the only one) holds what --limit left. */
export function batchWords(images: number, batches: number, size: number): string {
  if (batches <= 1) return `in 1 batch of ${images}`;
  const last = images - (batches - 1) * size;
  return `in ${batches} batches of ${size}${last > 0 && last !== size ? ` (the last of ${last})` : ''}`;
}

export function renderExact(s: ExactSummary, sampled: SampledBeside | null, meta: { model: string; data: string; mass: number; n: number; batchSize: number }, color: boolean): string {
  const style = color ? {} : { head: [], border: [] };
  const compact = { chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' } };
  const out: string[] = [];
  out.push(`${meta.model}: ${meta.n} blocks, the gradient at the first block's input split exactly by path length, ${s.images} images of ${meta.data} ${batchWords(s.images, s.batches, meta.batchSize)}`);
  const head = ['k', 'share', 'cumulative', '|G_k|'];
  if (sampled) head.push('C(n,k)·E|g_k|', '|G_k| / that', 'sampled share');
  const t = new Table({ head, style, ...compact, colAligns: head.map(() => 'right' as const) });
  const { counts } = pathLengthDistribution(meta.n);
  let cum = 0;
  for (const p of s.perLength) {
    cum += p.share;
    const row: (string | number)[] = [p.k, `${(p.share * 100).toFixed(2)}%`, `${(cum * 100).toFixed(2)}%`, p.norm.toExponential(3)];
    if (sampled) {
      const m = sampled.result.meanNorm[p.k];
      const est = m === null || m === undefined ? null : Number(counts[p.k]!) * m;
      row.push(est === null ? '-' : est.toExponential(3), est ? (p.norm / est).toFixed(3) : '-', m === null || m === undefined ? '-' : `${(sampled.eff.share[p.k]! * 100).toFixed(2)}%`);
    }
    t.push(row);
  }
  out.push(t.toString());
  out.push('share of the gradient by path length k, exact (%)');
  out.push(asciichart.plot(s.perLength.map((p) => p.share * 100), { height: 8, format: (v: number) => v.toFixed(1).padStart(7) }));
  out.push(`k = 0 … ${meta.n}`);
  const [lo, hi] = s.effectiveRange;
  const held = s.perLength.slice(lo, hi + 1).reduce((a, p) => a + p.share, 0);
  out.push(`full gradient |G| ${s.fullNorm.toExponential(3)} (mean over batches); identity |Σ_k G_k − G| / |G| = ${s.identityError.toExponential(2)}`);
  out.push(`effective range: lengths ${lo} to ${hi} hold ${(held * 100).toFixed(1)}% of the gradient (≥ ${meta.mass * 100}%); peak at length ${peakLength(s)}`);
  if (sampled) {
    const e = sampled.eff.effective;
    const peak = sampled.eff.share.reduce((a, v, k) => (v > sampled.eff.share[a]! ? k : a), 0);
    out.push(`sampled estimate (${sampled.result.samples.length} paths): ${e ? `lengths ${e.lo} to ${e.hi} hold ${(e.mass * 100).toFixed(1)}% of C(n,k)·E|g_k|` : 'no range'}; peak at length ${peak}`);
  }
  return out.join('\n') + '\n';
}
