/** reslens inspect: the residual structure of a model, as a table or JSON. */
import Table from 'cli-table3';
import type { Command } from 'commander';
import { inspect, type InspectReport } from '../studies/inspect.js';
import { addJsonOptions, addPreprocessOptions, addRuntimeOptions, preprocessOptions, withRuntime, type JsonFlags, type PreprocessFlags, type RuntimeFlags } from './common.js';
import { checkJsonOutput, emitJson, fmtCount, fmtShape, shortOps, useColor } from './output.js';
import { shown } from '../text.js';

function bigPow2(n: number): string {
  const exact = (1n << BigInt(n)).toString();
  return exact.length > 24 ? `2^${n} (${exact.slice(0, 1)}.${exact.slice(1, 4)}e${exact.length - 1})` : `2^${n} = ${exact}`;
}

/** Where the model came from, as its reslens.* metadata records it (fixtures/train.py writes these). */
export function provenanceLines(metadata: Record<string, string>): string[] {
  const out: string[] = [];
  const acc = metadata['reslens.test_accuracy'];
  if (metadata['reslens.dataset']) out.push(`data set: ${shown(metadata['reslens.dataset'])}`);
  if (acc) out.push(`test accuracy: ${/^(0(\.\d+)?|1(\.0+)?)$/.test(acc) ? `${(Number(acc) * 100).toFixed(2)}%` : shown(acc)} (recorded when the model was made)`);
  if (metadata['reslens.recipe']) out.push(`recipe: ${shown(metadata['reslens.recipe'])}`);
  return out;
}

// One line per row: a rule between rows made resnet110's table 123 lines long.
const COMPACT = { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' };

/** A transformer's sublayers, one row each, the rows of a layer together (24 sublayers stay one screen). */
function renderTransformer(r: InspectReport, style: object): string[] {
  const t = new Table({ head: ['layer', 'sublayer', 'block', 'residual branch (distinct ops)', 'params', 'out shape'], style, chars: COMPACT });
  let prev = -1;
  for (const b of r.blocks) {
    const sub = b.sublayer!;
    t.push([sub.layer === prev ? '' : sub.layer, sub.kind, b.index, shortOps([...new Set(b.residualBranch)], 40), fmtCount(b.params), fmtShape(b.outputShape ?? undefined)]);
    prev = sub.layer;
  }
  const layers = new Set(r.blocks.map((b) => b.sublayer!.layer)).size;
  const attention = r.blocks.filter((b) => b.sublayer!.kind === 'attention').length;
  return [
    `${shown(r.model.path)}: transformer, ${layers} layers, ${r.totals.blocks} residual sublayers (${attention} attention, ${r.totals.blocks - attention} mlp)`,
    ...provenanceLines(r.model.metadata),
    t.toString(),
    `stem: ${shortOps(r.stem)}   head: ${shortOps(r.head)}`,
    `sublayers ${r.totals.blocks}, paths ${bigPow2(r.totals.blocks)}, parameters ${fmtCount(r.totals.params)}; lesion --unit layer deletes a layer's sublayers together`,
  ];
}

export function renderInspect(r: InspectReport, color: boolean): string {
  // Bold headers on a terminal (cli-table3's default red reads as an error); no escapes otherwise.
  const style = color ? { head: ['bold'] } : { head: [], border: [] };
  const table = (head: string[]) => new Table({ head, style, chars: COMPACT });
  const out: string[] = [];
  const name = shown(r.model.path);
  if (r.kind === 'residual' && r.blocks.every((b) => b.sublayer)) {
    out.push(...renderTransformer(r, style));
  } else if (r.kind === 'residual') {
    const t = table(['block', 'stage', 'shortcut', 'post', 'residual branch', 'params', 'out shape', '']);
    for (const b of r.blocks) {
      t.push([b.index, b.stage, b.shortcut === 'identity' ? 'identity' : `proj (${shortOps(b.shortcutOps, 16)})`, b.post ?? '-',
        shortOps(b.residualBranch, 40), fmtCount(b.params), fmtShape(b.outputShape ?? undefined), b.downsampling ? '↓' : '']);
    }
    out.push(`${name}: residual network, ${r.totals.blocks} blocks in ${r.totals.stages} stages`, ...provenanceLines(r.model.metadata));
    out.push(t.toString());
    const st = table(['stage', 'blocks', 'out shape']);
    for (const s of r.stages) st.push([s.index, `${s.units[0]}-${s.units[s.units.length - 1]} (${s.units.length})`, fmtShape(s.outputShape ?? undefined)]);
    out.push(st.toString());
    out.push(`stem: ${shortOps(r.stem)}   head: ${shortOps(r.head)}`);
    out.push(`blocks ${r.totals.blocks}, stages ${r.totals.stages}, paths ${bigPow2(r.totals.blocks)}, parameters ${fmtCount(r.totals.params)} (↓ downsampling)`);
  } else {
    const what = r.kind === 'plain' ? 'plain network (no residual Add): its layers' : 'dense network (Concat feature reuse): its layers';
    const t = table(['layer', 'stage', 'ops', 'params', 'in shape', 'out shape', 'deletable']);
    for (const l of r.layers) {
      const same = !!l.inputShape && !!l.outputShape && l.inputShape.join() === l.outputShape.join();
      t.push([l.index, l.stage, shortOps(l.ops, 40), fmtCount(l.params), fmtShape(l.inputShape ?? undefined), fmtShape(l.outputShape ?? undefined),
        l.deletable ? 'yes' : same ? 'no' : 'no (shape)']);
    }
    out.push(`${name}: ${what}`, ...provenanceLines(r.model.metadata));
    out.push(t.toString());
    out.push(`layers ${r.totals.layers}, parameters ${fmtCount(r.totals.params)}; no residual blocks, so no paths to unravel`);
  }
  for (const n of r.notes) out.push(`note: ${shown(n)}`);
  return out.join('\n') + '\n';
}

export function registerInspect(program: Command): void {
  const cmd = program
    .command('inspect')
    .description('find the residual blocks of an ONNX model and show its structure')
    .argument('<model>', 'an ONNX file')
    .addHelpText('after', `
Examples:
  reslens inspect fixtures/models/resnet56.onnx
  reslens inspect model.onnx --json            # JSON to stdout
  reslens inspect model.onnx --json out.json   # JSON to a file (refuses to overwrite without --force)
  reslens inspect imagenet.onnx --size 224,224 # when the input size is not fixed in the model`);
  addPreprocessOptions(addJsonOptions(addRuntimeOptions(cmd)));
  cmd.action(async (model: string, opts: JsonFlags & RuntimeFlags & PreprocessFlags) => {
    checkJsonOutput(opts.json, !!opts.force);
    const report = await withRuntime(opts, (rt) => inspect(rt, model, preprocessOptions(opts)));
    // The table too, unless the JSON itself went to stdout.
    if (!emitJson(report, opts.json, !!opts.force)) process.stdout.write(renderInspect(report, useColor()));
  });
}
