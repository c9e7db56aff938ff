/** reslens export: a changed network (blocks deleted, scaled or reordered) as one ordinary ONNX model. */
import type { Command } from 'commander';
import { Option } from 'commander';
import { parseBlockList } from '../blocklist.js';
import { openNetwork } from '../engine/network.js';
import { UserError } from '../errors.js';
import { encodeModel } from '../loader/proto.js';
import { exportedModel, exportedProgram, type ExportOptions } from '../studies/export.js';
import { requireSplittable, unitBlocks, type LesionUnit } from '../studies/network.js';
import { addPreprocessOptions, addRuntimeOptions, preprocessOptions, withRuntime, type PreprocessFlags, type RuntimeFlags } from './common.js';
import { checkOutput, writeFileAtomic } from '../files.js';
import type { Network } from '../engine/network.js';
import { note } from '../ui/progress.js';

export interface ExportFlags {
  delete?: string;
  scale?: string;
  reorder?: string;
  unit?: LesionUnit;
}

/** The flags as the export study's options; --scale takes BLOCKS:ALPHA, e.g. 3,5:0.5. */
function exportOptions(net: Network, f: ExportFlags): ExportOptions {
  requireSplittable(net);
  // With --unit layer the lists name transformer layers, each standing for its sublayers.
  const groups = unitBlocks(net, f.unit ?? 'block');
  const n = groups.length;
  const expand = (units: number[]) => units.flatMap((u) => groups[u]!);
  const o: ExportOptions = {};
  if (f.delete) o.delete = expand(parseBlockList(f.delete, '--delete', n - 1));
  if (f.scale) {
    const m = /^(.+):([^:]+)$/.exec(f.scale);
    const alpha = m ? Number(m[2]) : NaN;
    if (!m || !Number.isFinite(alpha)) throw new UserError(`--scale: '${f.scale}' should be BLOCKS:ALPHA, e.g. 3,5-7:0.5`);
    o.scale = { blocks: expand(parseBlockList(m[1]!, '--scale', n - 1)), alpha };
  }
  if (f.reorder) {
    const order = f.reorder.split(',').map((x) => Number(x.trim()));
    const sorted = [...order].sort((a, b) => a - b);
    if (f.unit === 'layer' && (order.length !== n || sorted.some((v, i) => v !== i))) {
      throw new UserError(`--reorder: give a permutation of layers 0-${n - 1} (all ${n}, each once), e.g. 1,0,2,...`);
    }
    o.reorder = f.unit === 'layer' ? expand(order) : order;
  }
  return o;
}

export function registerExport(program: Command): void {
  const cmd = program
    .command('export')
    .description('write a changed network (blocks deleted, scaled or reordered) as one ONNX model')
    .argument('<model>', 'an ONNX file')
    .requiredOption('-o, --output <file>', 'where to write the changed model')
    .addOption(new Option('--delete <blocks>', 'blocks to delete, e.g. 3,7,10-12'))
    .addOption(new Option('--scale <blocks:alpha>', 'scale the residual branches of these blocks, e.g. 3,5:0.5'))
    .addOption(new Option('--reorder <order>', 'the block order as a permutation, e.g. 1,0,2,3,...'))
    .addOption(new Option('--unit <unit>', 'transformers: the lists name sublayers (block) or whole layers (layer)').choices(['block', 'layer']).default('block'))
    .addOption(new Option('--force', 'replace an existing output file'))
    .addHelpText('after', `
Examples:
  reslens export fixtures/models/resnet56.onnx --delete 3,7 -o resnet56-no3-no7.onnx
  reslens export model.onnx --scale 0-8:0.5 -o half.onnx
  reslens export fixtures/models/vit.onnx --unit layer --delete 2 -o vit-no-layer2.onnx`);
  addPreprocessOptions(addRuntimeOptions(cmd));
  cmd.action(async (modelPath: string, o: ExportFlags & RuntimeFlags & PreprocessFlags & { output: string; force?: boolean }) => {
    if (!o.delete && !o.scale && !o.reorder) throw new UserError('export: nothing to change; give --delete, --scale or --reorder');
    checkOutput(o.output, { force: o.force, flag: '-o' });
    await withRuntime(o, async (rt) => {
      const net = await openNetwork(rt, modelPath, preprocessOptions(o));
      const p = exportedProgram(net, exportOptions(net, o));
      const out = exportedModel(net, p, { delete: o.delete ?? '', scale: o.scale ?? '', reorder: o.reorder ?? '' });
      writeFileAtomic(o.output, encodeModel(out), !!o.force, '-o');
      note(`wrote ${o.output}`);
    });
  });
}
