import type { Command } from 'commander';
import { addJsonOptions, addPreprocessOptions, addRuntimeOptions, withRuntime } from './common.js';
import { inspect, renderInspect } from './inspect.js';
import { emitJson, useColor } from './output.js';

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
  cmd.action(async (model: string, opts: { json?: string | boolean; force?: boolean; size?: string; threads?: number }) => {
    const report = await withRuntime(opts, (rt) => inspect(rt, model, opts));
    // The table too, unless the JSON itself went to stdout.
    if (!emitJson(report, opts.json, !!opts.force)) process.stdout.write(renderInspect(report, useColor()));
  });
}
