/** reslens lesion: delete, scale or average blocks and measure the test error. */
import asciichart from 'asciichart';
import Table from 'cli-table3';
import type { Command } from 'commander';
import { Option } from 'commander';
import { parseBlockList } from '../blocklist.js';
import { Engine } from '../engine/engine.js';
import { parseMode, runLesion, type LesionResult } from '../studies/lesion.js';
import { openNetwork } from '../engine/network.js';
import { planNetwork, sublayerName, unitBlocks, type LesionUnit } from '../studies/network.js';
import { docHead } from '../studies/document.js';
import { Interrupted } from '../errors.js';
import { note, progressBar } from '../ui/progress.js';
import { addDataOptions, batchFor, addJsonOptions, addPreprocessOptions, addRuntimeOptions, interruptSignal, openDataFor, parseKList, positiveInt, preprocessOptions, seedArg, withFlagNames, withRuntime, modelArgument, type DataFlags, type JsonFlags, type PreprocessFlags, type RuntimeFlags } from './common.js';
import { checkJsonOutput, emitJson, useColor } from './output.js';
import { shown } from '../text.js';

const pct = (e: number) => `${(e * 100).toFixed(2)}%`;
const signed = (d: number) => `${d >= 0 ? '+' : ''}${(d * 100).toFixed(2)}`;

export function renderLesion(r: LesionResult, meta: { model: string; data: string }, color: boolean): string {
  const style = color ? {} : { head: [], border: [] };
  const compact = { chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' } };
  const out: string[] = [];
  const mode = parseMode(r.mode);
  const what = mode.kind === 'delete' ? 'deleted' : mode.kind === 'mean' ? 'replaced by its mean' : `scaled by ${mode.alpha}`;
  out.push(`${shown(meta.model)} on ${shown(meta.data)}`);
  const top5 = r.baseline.top5Error !== undefined;
  out.push(`baseline error ${pct(r.baseline.error)} (${r.baseline.total - r.baseline.correct}/${r.baseline.total} wrong)${top5 ? `, top-5 error ${pct(r.baseline.top5Error!)}` : ''}${r.baseline.nonFinite ? `, ${r.baseline.nonFinite} non-finite logits` : ''}`);
  if (r.single.length) {
    // Transformers name each row by its sublayer (unit block) or its blocks (unit layer) instead of a stage.
    const named = r.single.some((x) => x.sublayer || x.blocks);
    const label = (x: LesionResult['single'][number]) => (x.sublayer ? sublayerName(x.sublayer) : `blocks ${x.blocks!.join(',')}`);
    const t = new Table({ head: [r.unit, named ? '' : 'stage', 'error', ...(top5 ? ['top-5'] : []), 'Δ pts', ''], style, ...compact, colAligns: ['right', named ? 'left' : 'right', 'right', ...(top5 ? ['right' as const] : []), 'right', 'left'] });
    const maxD = Math.max(0.001, ...r.single.map((x) => Math.abs(x.delta)));
    for (const x of r.single) {
      const bar = '█'.repeat(Math.round((Math.max(0, x.delta) / maxD) * 20));
      t.push([`${x.unit}${x.downsampling ? ' ↓' : ''}`, named ? label(x) : x.stage, pct(x.error), ...(top5 ? [pct(x.top5Error ?? 0)] : []), signed(x.delta), bar + (x.nonFinite ? ` ${x.nonFinite} non-finite` : '')]);
    }
    out.push(`\nerror with one ${r.unit} ${what}${r.single.some((x) => x.downsampling) ? ' (↓ downsampling)' : ''}`);
    out.push(t.toString());
    const plain = r.single.filter((x) => !x.downsampling).map((x) => x.error);
    if (plain.length) {
      const mean = plain.reduce((a, b) => a + b, 0) / plain.length;
      out.push(`${plain.length < r.single.length ? 'non-downsampling' : 'all'} ${r.unit}s: mean error ${pct(mean)}, max ${pct(Math.max(...plain))}`);
    }
  }
  if (r.notDeletable.length) out.push(`not deletable (shape changes): ${r.notDeletable.map((x) => x.unit).join(', ')}`);
  if (r.k.length) {
    const t = new Table({ head: ['k', 'samples', 'mean error', 'min', 'max', ...(top5 ? ['mean top-5'] : [])], style, ...compact, colAligns: ['right', 'right', 'right', 'right', 'right', 'right'] });
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    for (const x of r.k) t.push([x.k, x.samples.length, pct(x.mean), pct(x.min), pct(x.max), ...(top5 ? [pct(mean(x.samples.map((s) => s.top5Error ?? 0)))] : [])]);
    out.push(`\nerror with k random ${r.unit}s ${what} (of ${r.k[0]!.eligible} eligible)`);
    out.push(t.toString());
    if (r.k.length >= 2) {
      out.push(`error % against k = 0, ${r.k.map((x) => x.k).join(', ')}`);
      out.push(kChart([{ k: 0, error: r.baseline.error }, ...r.k.map((x) => ({ k: x.k, error: x.mean }))]));
    }
  }
  if (r.explicit) out.push(`\n${r.unit}${r.explicit.blocks.length === 1 ? '' : 's'} ${r.explicit.blocks.join(',')} ${what}: error ${pct(r.explicit.error)} (${signed(r.explicit.error - r.baseline.error)} pts)${r.explicit.top5Error !== undefined ? `, top-5 error ${pct(r.explicit.top5Error)}` : ''}`);
  if (r.reorder.length) {
    const t = new Table({ head: ['swaps', 'mean Kendall τ', 'mean error', 'min', 'max'], style, ...compact, colAligns: ['right', 'right', 'right', 'right', 'right'] });
    for (const x of r.reorder) {
      const errs = x.samples.map((s) => s.error);
      t.push([x.swaps, x.meanTau.toFixed(3), pct(x.meanError), pct(Math.min(...errs)), pct(Math.max(...errs))]);
    }
    out.push('\nerror with blocks reordered (random swaps within a stage)');
    out.push(t.toString());
  }
  return out.join('\n') + '\n';
}

/**
 * Error % against k with the x axis spaced by k's value (k = 0, 1, 2, 4, 8, 12 are not evenly
 * apart), straight lines between the measured k, and a row of k labels under their columns.
 */
export function kChart(points: { k: number; error: number }[], width = 60): string {
  const maxK = points[points.length - 1]!.k;
  const step = maxK > 0 ? Math.max(1, Math.min(4, Math.floor((width - 1) / maxK))) : 1;
  const col = (k: number) => (maxK * step <= width - 1 ? k * step : Math.round((k * (width - 1)) / maxK));
  const series: number[] = [];
  for (let i = 0; i + 1 < points.length; i++) {
    const [a, b] = [points[i]!, points[i + 1]!];
    const [ca, cb] = [col(a.k), col(b.k)];
    for (let c = ca; c < cb; c++) series[c] = (a.error + ((b.error - a.error) * (c - ca)) / (cb - ca)) * 100;
  }
  series[col(maxK)] = points[points.length - 1]!.error * 100;
  // asciichart rounds each value to a row on its own, not relative to the lowest one, so a point a
  // row above the baseline could be drawn on it; plotting the rise above the minimum avoids that.
  const low = Math.min(...series);
  const plot: string = asciichart.plot(series.map((v) => v - low), { height: 8, format: (v: number) => (v + low).toFixed(1).padStart(6) });
  const last = plot.split('\n').pop()!;
  const origin = Math.max(last.indexOf('┼'), last.indexOf('┤')) + 1;
  const labels = Array<string>(origin + col(maxK) + 4).fill(' ');
  let free = 0;
  for (const p of points) {
    const at = origin + col(p.k);
    const text = String(p.k);
    if (at < free) continue; // no room beside the previous label
    for (let j = 0; j < text.length; j++) labels[at + j] = text[j]!;
    free = at + text.length + 1;
  }
  labels.splice(origin - 3, 2, 'k', ' ');
  return `${plot}\n${labels.join('').trimEnd()}`;
}

/** The lesion study's options named by the lesion command's flags where the names differ. */
const LESION_FLAGS = { blocks: '--delete', swaps: '--reorder' };

interface LesionFlags extends DataFlags, RuntimeFlags, JsonFlags, PreprocessFlags {
  mode: string;
  k?: string;
  samples: number;
  seed: number;
  delete?: string;
  reorder?: boolean;
  swaps: number;
  /** Unset: on, unless --delete asks for one answer. */
  single?: boolean;
  includeDownsampling?: boolean;
  unit: LesionUnit;
  cache: boolean;
  batch?: number;
}

export function registerLesion(program: Command): void {
  const cmd = program
    .command('lesion')
    .description('the delete-layers evaluation: test error with blocks deleted, k at a time, or reordered')
    .addArgument(modelArgument())
    .addOption(new Option('--mode <mode>', 'delete | scale:ALPHA | mean').default('delete'))
    .addOption(new Option('--k <list>', 'numbers of blocks deleted at once, e.g. 1,2,5,10'))
    .addOption(new Option('--samples <n>', 'random subsets (or orders) per k (or per swap count)').argParser(positiveInt('--samples', 100000)).default(10))
    .addOption(new Option('--seed <n>', 'seed for the random subsets and orders').argParser(seedArg('--seed')).default(0))
    .addOption(new Option('--delete <blocks>', 'an explicit set of blocks to change together, e.g. 3,7,10-12'))
    .addOption(new Option('--reorder', 'measure error against the amount of reordering'))
    .addOption(new Option('--swaps <n>', 'with --reorder: 1..N random swaps').argParser(positiveInt('--swaps', 10000)).default(5))
    .addOption(new Option('--single', 'the single-block sweep (default: on, off with --delete)'))
    .addOption(new Option('--no-single', 'skip the single-block sweep'))
    .addOption(new Option('--include-downsampling', 'let random k-subsets include downsampling blocks'))
    .addOption(new Option('--unit <unit>', 'transformers: block deletes one sublayer (attention or MLP), layer both sublayers of a layer').choices(['block', 'layer']).default('block'))
    .addOption(new Option('--no-cache', 'recompute every configuration from the input (slower; for checking)'))
    .addHelpText('after', `
Examples:
  reslens lesion                                   # resnet56 on the shipped 1k Fashion-MNIST subset
  reslens lesion fixtures/models/resnet20.onnx --k 1,2,5 --samples 10
  reslens lesion model.onnx --data test_batch.bin --delete 3,7,10-12
  reslens lesion model.onnx --mode scale:0.5 --json out.json
  reslens lesion model.onnx --reorder --swaps 8
  reslens lesion fixtures/models/vit.onnx --unit layer --k 1,2,3   # whole transformer layers`);
  addPreprocessOptions(addJsonOptions(addRuntimeOptions(addDataOptions(cmd))));
  cmd.action((modelPath: string, o: LesionFlags) => withFlagNames(LESION_FLAGS, async () => {
    const mode = parseMode(o.mode);
    checkJsonOutput(o.json, !!o.force);
    await withRuntime({ ...o, announce: true }, async (rt) => {
      const net = await openNetwork(rt, modelPath, preprocessOptions(o));
      const n = unitBlocks(net, o.unit).length;
      // Layers of a transformer have no downsampling to leave out: every layer is eligible.
      const k = o.k ? (o.unit === 'layer' ? parseBlockList(o.k, '--k', n, 1) : parseKList(o.k, planNetwork(net), !!o.includeDownsampling)) : [];
      const blocks = o.delete ? parseBlockList(o.delete, '--delete', n - 1) : undefined;
      const data = await openDataFor(net, o);
      try {
        const engine = new Engine(rt, net);
        const bar = progressBar('lesion', data.size);
        const stop = interruptSignal();
        const t0 = performance.now();
        const result = await runLesion(engine, data, {
          mode, single: o.single ?? !o.delete, k, samples: o.samples, seed: o.seed, blocks, swaps: o.reorder ? o.swaps : undefined,
          includeDownsampling: !!o.includeDownsampling, unit: o.unit, batch: await batchFor(rt, net, o, data.size), cache: o.cache,
        }, { onProgress: (d) => bar.update(d), signal: stop.signal, onNote: note }).finally(() => stop.dispose());
        bar.done();
        const seconds = (performance.now() - t0) / 1000;
        const doc = { command: 'lesion', ...(await docHead(rt, net, modelPath, data, seconds)), ...result };
        if (!emitJson(doc, o.json, !!o.force)) {
          process.stdout.write(renderLesion(result, { model: modelPath, data: data.description }, useColor()));
          note(`${result.evaluations} configurations × ${data.size} samples in ${seconds.toFixed(1)}s`);
        }
        if (result.interrupted) throw new Interrupted(`interrupted: the results above cover the first ${result.interrupted.samplesDone} of ${data.size} samples`);
      } finally {
        await data.close();
      }
    });
  }));
}
