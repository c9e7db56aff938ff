/** reslens gradients: the paper's path-restricted gradient experiment. */
import asciichart from 'asciichart';
import Table from 'cli-table3';
import type { Command } from 'commander';
import { Option } from 'commander';
import { readFileSync } from 'node:fs';
import { parseBlockList } from '../blocklist.js';
import { checkPlan, makePlan, PathGradients, runGradients, type GradientPlan, type GradientResult } from '../engine/gradients.js';
import { openNetwork } from '../engine/network.js';
import { onnxruntimeVersion } from '../engine/session.js';
import { Interrupted, UserError } from '../errors.js';
import { effectivePaths, type EffectivePaths } from '../paths/distribution.js';
import { progressBar } from '../ui/progress.js';
import { addDataOptions, addJsonOptions, addPreprocessOptions, addRuntimeOptions, DEFAULT_MODEL, interruptSignal, openDataFor, positiveInt, seedArg, shareArg, withRuntime } from './common.js';
import { emitJson, useColor } from './output.js';

export function renderGradients(r: GradientResult, eff: EffectivePaths, meta: { model: string; data: string; mass: number }, color: boolean): string {
  const style = color ? {} : { head: [], border: [] };
  const compact = { chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' } };
  const out: string[] = [];
  out.push(`${meta.model}: ${r.n} blocks, gradient at the first block's input, batch ${r.batchSize}, ${r.samples.length} samples on ${meta.data}`);
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
  if (eff.effective) {
    out.push(`effective paths: lengths ${eff.effective.lo} to ${eff.effective.hi} carry ${(eff.effective.mass * 100).toFixed(1)}% of the total gradient (≥ ${meta.mass * 100}%); they are ${((eff.pathShare ?? 0) * 100).toPrecision(3)}% of all 2^${r.n} paths`);
  }
  if (eff.unmeasured.length) out.push(`not measured: k = ${eff.unmeasured.length > 12 ? `${eff.unmeasured.length} lengths` : eff.unmeasured.join(', ')} (they count as zero above)`);
  return out.join('\n') + '\n';
}

export function registerGradients(program: Command): void {
  const cmd = program
    .command('gradients')
    .description('path-restricted gradients: gradient magnitude against path length, and the effective paths')
    .argument('[model]', 'an ONNX file', DEFAULT_MODEL)
    .addOption(new Option('--samples <n>', 'samples per k, each on its own random batch').argParser(positiveInt('--samples', 1e6)).default(100))
    .addOption(new Option('--k <list>', 'path lengths to sample, e.g. 0-27 or 0,5,10 (default: all)'))
    .addOption(new Option('--mass <m>', 'share of the total gradient the effective range must hold').argParser(shareArg('--mass')).default(0.9))
    .addOption(new Option('--seed <n>', 'seed for batches and block subsets').argParser(seedArg('--seed')).default(1))
    .addOption(new Option('--plan <file>', 'replay exactly the samples of an earlier --json output'))
    .addHelpText('after', `
Examples:
  reslens gradients fixtures/models/resnet20.onnx --samples 20
  reslens gradients model.onnx --data train-images-idx3-ubyte.gz --k 0-54 --samples 1000 --json g.json
  reslens gradients model.onnx --plan g.json      # the same samples again, e.g. on another machine`);
  addPreprocessOptions(addJsonOptions(addRuntimeOptions(addDataOptions(cmd))));
  cmd.action(async (modelPath: string, o: Record<string, any>) => {
    await withRuntime({ ...o, announce: true }, async (rt) => {
      const net = await openNetwork(rt, modelPath, o);
      if (net.structure.kind !== 'residual') throw new UserError(`${modelPath}: a ${net.structure.kind} network has no residual blocks, so no paths to restrict gradients to`);
      const n = net.structure.blocks.length;
      const data = await openDataFor(net, o);
      try {
        let plan: GradientPlan;
        let ks: number[];
        let seed: number = o.seed;
        if (o.plan) {
          let doc: { batchSize?: number; batches?: number[][]; samples?: GradientPlan['samples']; seed?: number; ks?: number[] };
          try {
            doc = JSON.parse(readFileSync(o.plan, 'utf8'));
          } catch (e) {
            throw new UserError(`${o.plan}: not a readable JSON file from reslens gradients --json (${e instanceof Error ? e.message : e})`);
          }
          plan = { batchSize: doc.batchSize ?? 0, batches: doc.batches ?? [], samples: (doc.samples ?? []).map((s) => ({ k: s.k, blocks: s.blocks, batch: s.batch })) };
          checkPlan(plan, n, data.size, o.plan);
          ks = doc.ks ?? [...new Set(plan.samples.map((s) => s.k))].sort((a, b) => a - b);
          seed = doc.seed ?? seed;
        } else {
          ks = o.k ? parseBlockList(o.k, '--k', n, 0) : [...Array(n + 1).keys()];
          plan = makePlan(n, data.size, { ks, samples: o.samples, batchSize: o.batch ?? 32, seed });
        }
        const classes = net.preprocessing.classNames?.length ?? data.classes ?? 0;
        if (!classes) throw new UserError(`${modelPath}: cannot tell the number of classes; add reslens.classes to the model's metadata`);
        const t0 = performance.now();
        const pg = await PathGradients.create(rt, net, plan.batchSize, classes);
        const bar = progressBar('gradients', plan.samples.length);
        const stop = interruptSignal();
        const result = await runGradients(pg, data, plan, { ks, seed }, { onProgress: (d) => bar.update(d), signal: stop.signal }).finally(() => stop.dispose());
        bar.done();
        const seconds = (performance.now() - t0) / 1000;
        const eff = effectivePaths(result.meanNorm, n, o.mass);
        const doc = {
          command: 'gradients',
          model: { path: modelPath, sha256: net.model.sha256 },
          data: { description: data.description, size: data.size, sha256: await data.sha256() },
          onnxruntime: await onnxruntimeVersion(),
          device: rt.device,
          seconds,
          samplesPerSecond: result.samples.length / seconds,
          ...result,
          effective: { mass: o.mass, range: eff.effective, pathShare: eff.pathShare, share: eff.share, fit: eff.fit },
        };
        if (!emitJson(doc, o.json, !!o.force)) {
          process.stdout.write(renderGradients(result, eff, { model: modelPath, data: data.description, mass: o.mass }, useColor()));
          process.stderr.write(`${result.samples.length} path samples in ${seconds.toFixed(1)}s (${(result.samples.length / seconds).toFixed(1)}/s)\n`);
        }
        if (result.interrupted) throw new Interrupted(`interrupted: ${result.interrupted.samplesDone} of ${plan.samples.length} samples done (the rest have norm null)`);
      } finally {
        await data.close();
      }
    });
  });
}
