/**
 * A loaded network ready for analysis: the model, its residual structure with real
 * shapes, and the preprocessing its data needs (from reslens.* metadata, overridden by the options).
 */
import { OptionError, UserError } from '../errors.js';
import { parseNumberList } from '../blocklist.js';
import { loadModel, modelIO, type Model } from '../loader/model.js';
import { restage, detectStructure, StructureError, type ResidualStructure } from '../surgery/blocks.js';
import { indexGraph, type GraphIndex } from '../surgery/graph.js';
import { foldBatchNorm } from '../surgery/fold.js';
import { nchwInput } from '../surgery/layout.js';
import { probeShapes } from './probe.js';
import { inferShapes } from '../surgery/shapes.js';
import type { Runtime } from './session.js';

export interface Preprocessing {
  mean: number[];
  std: number[];
  /** Model input as C,H,W; H and W are 0 when open (only with sizeOptional). */
  inputShape: [number, number, number];
  classNames: string[] | null;
  /** Stochastic-depth survival probabilities per block, when the model says. */
  survival: number[] | null;
  /** Where mean and std came from; 'default' means nothing set them (pixels fed as v/255). */
  normalisedBy: 'flags' | `preset ${string}` | 'model metadata' | 'default';
}

/** Preprocessing given by the user, over the model's reslens.* metadata. */
export interface PreprocessOptions {
  mean?: number[];
  std?: number[];
  /** H,W or one number for both. */
  size?: number[];
  /** A named preset (--preset): its mean and std under the flags, its size where the model leaves it open. */
  preset?: { name: string; mean: number[]; std: number[]; size?: [number, number] };
  /** The structure is wanted without shapes when nothing fixes the input size (inspect). */
  sizeOptional?: boolean;
}

export interface Network {
  model: Model;
  graph: GraphIndex;
  structure: ResidualStructure;
  input: string;
  output: string;
  /** Shapes (batch 1) of every segment boundary. */
  shapes: Map<string, number[]>;
  preprocessing: Preprocessing;
}

function preprocessing(model: Model, inputDims: number[], o: PreprocessOptions): Preprocessing {
  const md = model.metadata;
  const channels = inputDims[1] && inputDims[1] > 0 ? inputDims[1] : 3;
  let hw: number[] = [inputDims[2] ?? 0, inputDims[3] ?? 0];
  if (o.size) hw = o.size;
  else if (md['reslens.input_size']) hw = parseNumberList(md['reslens.input_size'], `${model.path}: metadata reslens.input_size`);
  else if (!(hw[0]! > 0 && hw[1]! > 0) && o.preset?.size) hw = o.preset.size;
  if (hw.length === 1) hw = [hw[0]!, hw[0]!];
  const open = !o.size && hw.length === 2 && hw.every((d) => d === 0);
  if (open && o.sizeOptional) hw = [0, 0];
  else if (open) {
    throw new OptionError('size', (f) => `${model.path}: the model leaves its input's height and width open; pass ${f('size')} H,W (e.g. ${f('size')} 224,224) or store them once with reslens annotate --size`);
  } else if (hw.length !== 2 || hw.some((d) => !(d > 0 && Number.isInteger(d) && d <= 8192))) {
    throw new OptionError('size', (f) => `${o.size ? f('size') : model.path}: input size ${hw.join('x') || 'unknown'} is not usable; pass ${f('size')} H,W (e.g. ${f('size')} 224,224)`);
  }
  const perChannel = (v: number[], name: 'mean' | 'std'): number[] => {
    if (v.length === 1) return Array(channels).fill(v[0]);
    if (v.length !== channels) throw new OptionError(name, (f) => `${f(name)}: ${v.length} values for a model with ${channels} input channels; give 1 or ${channels}`);
    return v;
  };
  const fromMd = (k: string) => (md[k] ? parseNumberList(md[k], `${model.path}: metadata ${k}`) : undefined);
  const mean = perChannel(o.mean ?? o.preset?.mean ?? fromMd('reslens.mean') ?? [0], 'mean');
  const std = perChannel(o.std ?? o.preset?.std ?? fromMd('reslens.std') ?? [1], 'std');
  const normalisedBy: Preprocessing['normalisedBy'] = o.mean || o.std ? 'flags' : o.preset ? `preset ${o.preset.name}` : md['reslens.mean'] || md['reslens.std'] ? 'model metadata' : 'default';
  if (std.some((s) => s <= 0)) throw new OptionError('std', (f) => `${f('std')}: standard deviations must be positive, got ${std.join(',')}`);
  const survival = md['reslens.survival'] ? parseNumberList(md['reslens.survival'], `${model.path}: metadata reslens.survival`) : null;
  const classNames = md['reslens.classes'] ? md['reslens.classes'].split(',') : null;
  return { mean, std, inputShape: [channels, hw[0]!, hw[1]!], classNames, survival, normalisedBy };
}

export async function openNetwork(rt: Runtime, file: string, o: PreprocessOptions = {}): Promise<Network> {
  const model = loadModel(file);
  return analyseModel(rt, model, o);
}

/** The indexed graph and residual structure, with every graph fault as a one-line UserError. */
export function structureOf(model: Model): { graph: GraphIndex; structure: ResidualStructure } {
  try {
    const graph = indexGraph(model.proto.graph!);
    return { graph, structure: detectStructure(model.proto, graph) };
  } catch (e) {
    if (e instanceof StructureError) throw new UserError(`${model.path}: ${e.message}`);
    if (e instanceof Error && /cycle|never produced/.test(e.message)) throw new UserError(`${model.path}: the graph is broken (${e.message}); the file is damaged`);
    throw e;
  }
}

export async function analyseModel(rt: Runtime, loaded: Model, o: PreprocessOptions = {}): Promise<Network> {
  // Unfolded BatchNormalization is folded once here, so that the engine's many copies of a
  // step share the Conv weights (surgery/fold.ts says why).
  const nchw = nchwInput(loaded.proto);
  const { model: proto, folded } = foldBatchNorm(nchw.model);
  const model = folded || nchw.transposed ? { ...loaded, proto } : loaded;
  const { input, output, inputDims } = modelIO(model);
  const { graph, structure } = structureOf(model);
  if (nchw.transposed) structure.notes.push(`the input is channels-last (NHWC); the Transpose to NCHW that opens the graph is left out and reslens feeds ${input} as N×C×H×W`);
  if (folded) structure.notes.push(`${folded} BatchNormalization node${folded === 1 ? '' : 's'} folded into the Conv before ${folded === 1 ? 'it' : 'them'}`);
  const pre = preprocessing(model, inputDims, o);
  if (pre.survival && pre.survival.length !== structure.blocks.length) {
    throw new UserError(`${model.path}: metadata reslens.survival has ${pre.survival.length} values but the network has ${structure.blocks.length} residual blocks`);
  }
  const boundaries = new Set<string>();
  for (const s of structure.segments) {
    boundaries.add(s.from);
    boundaries.add(s.to);
  }
  for (const b of structure.blocks) {
    boundaries.add(b.residualOutput);
    boundaries.add(b.shortcutOutput);
  }
  for (const l of structure.layers) {
    boundaries.add(l.input);
    boundaries.add(l.output);
  }
  boundaries.delete(input);
  if (pre.inputShape[1] === 0) {
    structure.notes.push(`the input size is open (${inputDims.map((d) => d || '?').join('×')}); pass --size H,W for shapes and stages measured on it`);
    return { model, graph, structure, input, output, shapes: new Map(), preprocessing: pre };
  }
  // Shapes by static inference where every op is covered; otherwise one probe run.
  let shapes = inferShapes(graph, [1, ...pre.inputShape]);
  if (!shapes) {
    try {
      shapes = await probeShapes(rt, model.proto, input, [1, ...pre.inputShape], [...boundaries], model.path);
    } catch (e) {
      if (e instanceof UserError) throw e;
      const why = e instanceof Error ? e.message.split('\n')[0] : String(e);
      throw new OptionError('size', (f) => `${model.path}: onnxruntime cannot run this model on a 1x${pre.inputShape.join('x')} input (${why}); check ${f('size')} or the model`);
    }
  }
  shapes.set(input, [1, ...pre.inputShape]);
  restage(structure, shapes);
  return { model, graph, structure, input, output, shapes, preprocessing: pre };
}
