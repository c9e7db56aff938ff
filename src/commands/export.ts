/** reslens export: a changed network (blocks deleted, scaled or reordered) as one ordinary ONNX model. */
import type { Command } from 'commander';
import { Option } from 'commander';
import { parseBlockList } from '../blocklist.js';
import { openNetwork } from '../engine/network.js';
import { UserError } from '../errors.js';
import { encodeModel } from '../loader/proto.js';
import { exportProgram, intactProgram, unitCount, type Program } from '../surgery/split.js';
import { notSplittable } from '../surgery/blocks.js';
import { unitInfo } from '../engine/lesion.js';
import { addPreprocessOptions, addRuntimeOptions, withRuntime } from './common.js';
import { writeFileAtomic } from './output.js';
import type { Network } from '../engine/network.js';

export interface ExportFlags {
  delete?: string;
  scale?: string;
  reorder?: string;
}

/** The program the flags describe; --scale takes BLOCKS:ALPHA, e.g. 3,5:0.5. */
export function programFromFlags(net: Network, f: ExportFlags): Program {
  const why = notSplittable(net.structure);
  if (why) throw new UserError(`${net.model.path}: ${why}`);
  const n = unitCount(net.structure);
  const p = intactProgram(n);
  const info = unitInfo(net);
  if (f.delete) {
    for (const u of parseBlockList(f.delete, '--delete', n - 1)) {
      if (!info[u]!.deletable) throw new UserError(`--delete: layer ${u} cannot be deleted (${info[u]!.reason})`);
      p.modes[u] = { kind: 'delete' };
    }
  }
  if (f.scale) {
    if (net.structure.kind !== 'residual') throw new UserError('--scale: only residual blocks have a branch to scale');
    const m = /^(.+):([^:]+)$/.exec(f.scale);
    const alpha = m ? Number(m[2]) : NaN;
    if (!m || !Number.isFinite(alpha)) throw new UserError(`--scale: '${f.scale}' should be BLOCKS:ALPHA, e.g. 3,5-7:0.5`);
    for (const u of parseBlockList(m[1]!, '--scale', n - 1)) {
      if (p.modes[u]!.kind === 'delete') throw new UserError(`--scale: block ${u} is also in --delete`);
      p.modes[u] = { kind: 'scale', alpha };
    }
  }
  if (f.reorder) {
    if (net.structure.kind !== 'residual') throw new UserError('--reorder: only residual networks can be reordered');
    const order = f.reorder.split(',').map((x) => Number(x.trim()));
    const sorted = [...order].sort((a, b) => a - b);
    if (order.length !== n || sorted.some((v, i) => v !== i)) {
      throw new UserError(`--reorder: give a permutation of 0-${n - 1} (all ${n} blocks, each once), e.g. 1,0,2,...`);
    }
    order.forEach((u, slot) => {
      const want = info[slot]!;
      const got = info[u]!;
      if (want.inShape !== got.inShape || want.outShape !== got.outShape) {
        throw new UserError(`--reorder: block ${u} (${got.inShape} → ${got.outShape}) cannot run in place of block ${slot} (${want.inShape} → ${want.outShape})`);
      }
    });
    p.order = order;
  }
  return p;
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
    .addOption(new Option('--force', 'replace an existing output file'))
    .addHelpText('after', `
Examples:
  reslens export fixtures/models/resnet56.onnx --delete 3,7 -o resnet56-no3-no7.onnx
  reslens export model.onnx --scale 0-8:0.5 -o half.onnx`);
  addPreprocessOptions(addRuntimeOptions(cmd));
  cmd.action(async (modelPath: string, o: ExportFlags & { output: string; force?: boolean; threads?: number; size?: string }) => {
    if (!o.delete && !o.scale && !o.reorder) throw new UserError('export: nothing to change; give --delete, --scale or --reorder');
    await withRuntime(o, async (rt) => {
      const net = await openNetwork(rt, modelPath, o);
      const p = programFromFlags(net, o);
      const out = exportProgram(net.model.proto, net.graph, net.structure, p);
      out.metadataProps = [...(out.metadataProps ?? []), { key: 'reslens.exported_from', value: `${net.model.sha256} delete=${o.delete ?? ''} scale=${o.scale ?? ''} reorder=${o.reorder ?? ''}` }];
      writeFileAtomic(o.output, encodeModel(out), !!o.force, '-o');
      process.stderr.write(`wrote ${o.output}\n`);
    });
  });
}
