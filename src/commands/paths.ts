/** reslens paths: the unraveled view, path-length distributions (exact) of a model or of n blocks. */
import type { Command } from 'commander';
import { Option } from 'commander';
import { parseBlockList } from '../blocklist.js';
import { openNetwork } from '../engine/network.js';
import { UserError } from '../errors.js';
import { pathLengthDistribution } from '../paths/distribution.js';
import { unitsOf } from '../studies/network.js';
import { blockPaths, networkPaths, pathsReport, type PathsOptions, type PathsReport } from '../studies/paths.js';
import { renderPathHistogram } from '../paths/render.js';
import { addJsonOptions, addRuntimeOptions, modelArgument, positiveInt, withFlagNames, withRuntime, type JsonFlags, type RuntimeFlags } from './common.js';
import { checkJsonOutput, emitJson, useColor } from './output.js';
import { shown } from '../text.js';

/** Parses "19-35,5-17" into ranges (the study checks them against the block count). */
function parseRanges(s: string): { lo: number; hi: number }[] {
  return s.split(',').map((part) => {
    const m = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(part);
    if (!m) throw new UserError(`--range: '${part}' is not a range like 19-35`);
    return { lo: Number(m[1]), hi: Number(m[2]) };
  });
}

export function renderPaths(r: PathsReport, color: boolean, width: number): string {
  const d = pathLengthDistribution(r.n);
  const out: string[] = [];
  out.push(`${shown(r.source)}: ${r.n} residual blocks${r.deleted.length ? ` (${r.deleted.length} deleted: ${r.deleted.join(',')})` : ''} → 2^${r.n} paths; a path's length is the number of residual branches it passes`);
  out.push(renderPathHistogram(d, { width, color, mass: 0.95, title: 'path length distribution (Binomial(n, 1/2))' }));
  out.push(`mean ${r.summary.mean.toFixed(2)}, sd ${r.summary.sd.toFixed(2)}`);
  for (const s of r.shortestRanges) out.push(`lengths ${s.lo} to ${s.hi} hold ${(s.held * 100).toFixed(2)}% of paths (shortest range holding ${s.mass * 100}%)`);
  for (const x of r.ranges) out.push(`lengths ${x.lo} to ${x.hi} hold ${fmtShare(x.mass)} of paths`);
  if (r.stochasticDepth) {
    const s = r.stochasticDepth;
    out.push('');
    out.push(renderPathHistogram({ n: r.n, probability: s.distribution }, { width, color, mass: 0.95, title: `lengths of paths sampled in training with stochastic depth (${shown(s.source)})` }));
    out.push(`mean ${s.summary.mean.toFixed(2)}, sd ${s.summary.sd.toFixed(2)}; lengths ${s.shortestRange95.lo} to ${s.shortestRange95.hi} hold ${(s.shortestRange95.held * 100).toFixed(2)}%`);
  }
  return out.join('\n') + '\n';
}

function fmtShare(x: number): string {
  const p = x * 100;
  return p >= 10 ? `${p.toFixed(1)}%` : p >= 0.1 ? `${p.toFixed(2)}%` : `${p.toPrecision(2)}%`;
}

interface PathsFlags extends JsonFlags, RuntimeFlags {
  blocks?: number;
  delete?: string;
  pL?: number;
  range?: string;
}

export function registerPaths(program: Command): void {
  const cmd = program
    .command('paths')
    .description('path-length distribution of the unraveled network (exact counts), with stochastic depth when known')
    .addArgument(modelArgument('an ONNX file (or use --blocks)'))
    .addOption(new Option('--blocks <n>', 'number of residual blocks, without a model').argParser(positiveInt('--blocks', 100000)))
    .addOption(new Option('--delete <blocks>', 'with a model: blocks deleted (they leave the paths)'))
    .addOption(new Option('--pL <p>', 'stochastic depth: survival probability of the last block (linear decay)').argParser((v) => {
      const p = Number(v);
      if (!(p > 0 && p <= 1)) throw new UserError(`--pL: '${v}' must be a probability in (0, 1]`);
      return p;
    }))
    .addOption(new Option('--range <ranges>', 'report the share of paths in these length ranges, e.g. 19-35,5-17'))
    .addHelpText('after', `
Examples:
  reslens paths --blocks 54 --range 19-35,5-17   # ResNet-110 for CIFAR-10, as in the paper
  reslens paths fixtures/models/sd56.onnx         # with the survival probabilities in its metadata
  reslens paths --blocks 500 --pL 0.5 --json`);
  addJsonOptions(addRuntimeOptions(cmd));
  cmd.action((given: string, o: PathsFlags, self: Command) => withFlagNames({ ranges: '--range' }, async () => {
    // --blocks stands in for the model; the default model only when neither is given.
    const modelPath = self.args.length || !o.blocks ? given : undefined;
    if (modelPath && o.blocks) throw new UserError('paths: give a model or --blocks, not both');
    checkJsonOutput(o.json, !!o.force);
    const ranges = o.range ? parseRanges(o.range) : [];
    let options: PathsOptions;
    if (modelPath) {
      const net = await withRuntime(o, (rt) => openNetwork(rt, modelPath));
      const deleted = o.delete ? parseBlockList(o.delete, '--delete', unitsOf(net) - 1) : [];
      options = networkPaths(net, modelPath, { deleted, pL: o.pL, ranges });
    } else {
      if (o.delete) throw new UserError('--delete needs a model');
      options = blockPaths(o.blocks!, { pL: o.pL, ranges });
    }
    const report = pathsReport(options);
    if (!emitJson({ command: 'paths', ...report }, o.json, !!o.force)) {
      process.stdout.write(renderPaths(report, useColor(), Math.min(process.stdout.columns ?? 100, 120)));
    }
  }));
}
