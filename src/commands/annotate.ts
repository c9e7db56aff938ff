/**
 * reslens annotate: store the preprocessing and provenance a model needs (reslens.* metadata)
 * in the ONNX file itself, so later commands run without flags. The graph and weights are
 * copied byte for byte (loader/metadata.ts).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Option, type Command } from 'commander';
import { parseNumberList } from '../blocklist.js';
import { UserError } from '../errors.js';
import { writeFileAtomic } from '../files.js';
import { checkClassCount, parsePreset, PRESET_NAMES, readClassList } from '../loader/data/index.js';
import { withMetadata } from '../loader/metadata.js';
import { loadModel, modelFromBytes, modelIO } from '../loader/model.js';
import { decodeModel } from '../loader/proto.js';

interface AnnotateFlags {
  output: string;
  force?: boolean;
  preset?: string;
  mean?: string;
  std?: string;
  size?: string;
  classes?: string;
  dataset?: string;
  recipe?: string;
}

/** The reslens.* keys the flags set, checked against the model's input. */
export function annotations(file: string, channels: number, f: AnnotateFlags, outputs?: number): Record<string, string> {
  const preset = f.preset ? parsePreset(f.preset) : undefined;
  const props: Record<string, string> = {};
  const perChannel = (v: number[] | undefined, flag: string): void => {
    if (!v) return;
    if (v.length !== 1 && v.length !== channels) {
      const from = f[flag.slice(2) as 'mean' | 'std'] ? flag : `--preset ${f.preset}`;
      throw new UserError(`${from}: ${v.length} ${flag.slice(2)} values for a model with ${channels} input channel${channels === 1 ? '' : 's'} (${file}); give ${channels === 1 ? '1 value' : `1 or ${channels} values`}`);
    }
    if (flag === '--std' && v.some((x) => !(x > 0))) throw new UserError(`--std: standard deviations must be positive, got ${v.join(',')}`);
    props[`reslens.${flag.slice(2)}`] = v.join(',');
  };
  perChannel(f.mean ? parseNumberList(f.mean, '--mean') : preset?.mean, '--mean');
  perChannel(f.std ? parseNumberList(f.std, '--std') : preset?.std, '--std');
  let size = f.size ? parseNumberList(f.size, '--size') : preset?.size;
  if (size) {
    if (size.length === 1) size = [size[0]!, size[0]!];
    if (size.length !== 2 || size.some((d) => !(Number.isInteger(d) && d > 0 && d <= 8192))) throw new UserError(`--size: '${f.size}' is not H,W (e.g. 224,224)`);
    props['reslens.input_size'] = size.join(',');
  }
  if (f.classes) {
    const ids = readClassList(f.classes);
    const bad = ids.find((c) => c.includes(','));
    if (bad) throw new UserError(`--classes: ${f.classes}: class id '${bad}' holds a comma, which reslens.classes cannot store; use ids without commas`);
    checkClassCount(ids, outputs, f.classes, file);
    props['reslens.classes'] = ids.join(',');
  }
  if (f.dataset) props['reslens.dataset'] = f.dataset;
  if (f.recipe) props['reslens.recipe'] = f.recipe;
  if (preset) props['reslens.preset'] = preset.name;
  if (!Object.keys(props).length) throw new UserError('annotate: nothing to store; give --preset, --mean, --std, --size, --classes, --dataset or --recipe');
  return props;
}

export function registerAnnotate(program: Command): void {
  program
    .command('annotate')
    .description("store a model's preprocessing and provenance (reslens.* metadata) in the ONNX file, graph and weights unchanged")
    .argument('<model>', 'an ONNX file')
    .requiredOption('-o, --output <file>', 'where to write the annotated model')
    .addOption(new Option('--preset <name>', "a data set's usual mean, std and input size").choices(PRESET_NAMES))
    .addOption(new Option('--mean <list>', 'per-channel mean on the 0-1 scale (over the preset)'))
    .addOption(new Option('--std <list>', 'per-channel std on the 0-1 scale (over the preset)'))
    .addOption(new Option('--size <h,w>', 'input size, for a graph that leaves it open (over the preset)'))
    .addOption(new Option('--classes <file>', 'class ids, one a line in class-index order (sorted synsets for torchvision ImageNet models)'))
    .addOption(new Option('--dataset <text>', 'what the model was trained on'))
    .addOption(new Option('--recipe <text>', 'how it was trained'))
    .addOption(new Option('--force', 'replace an existing output file'))
    .addHelpText('after', `
Examples:
  reslens annotate resnet50.onnx --preset imagenet --classes synsets.txt -o resnet50.reslens.onnx
  reslens annotate model.onnx --mean 0.5 --std 0.25 --size 64,64 --dataset "my data" -o model.annotated.onnx`)
    .action((modelPath: string, o: AnnotateFlags) => {
      // Refuse a bad output before reading a large model.
      if (existsSync(o.output) && !o.force) throw new UserError(`${o.output}: already exists; pass --force to replace it or choose another -o path`);
      if (!existsSync(path.dirname(path.resolve(o.output)))) throw new UserError(`${o.output}: folder ${path.dirname(path.resolve(o.output))} does not exist; create it first`);
      const model = loadModel(modelPath);
      const dims = modelIO(model).inputDims;
      const outDims = model.proto.graph?.output?.[0]?.type?.tensorType?.shape?.dim ?? [];
      const classDim = outDims.length === 2 && outDims[1]?.dimValue != null ? Number(outDims[1].dimValue) : undefined;
      const props = annotations(modelPath, dims[1] && dims[1] > 0 ? dims[1] : 3, o, classDim);
      const bytes = readFileSync(modelPath);
      const out = withMetadata(bytes, props);
      modelFromBytes(out, modelPath); // the result must read back (external data from beside the original)
      writeFileAtomic(o.output, out, !!o.force, '-o');
      const external = decodeModel(bytes).graph?.initializer?.some((t) => t.dataLocation === 1);
      if (external && path.dirname(path.resolve(o.output)) !== path.dirname(path.resolve(modelPath))) {
        process.stderr.write(`note: ${modelPath} keeps its weights in external data files, which stay where they are; copy them beside ${o.output}\n`);
      }
      process.stderr.write(`wrote ${o.output}: ${Object.entries(props).map(([k, v]) => `${k}=${v.length > 40 ? `${v.slice(0, 37)}...` : v}`).join(' ')}\n`);
    });
}
