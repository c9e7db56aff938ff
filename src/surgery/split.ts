/**
 * Graph surgery on a residual structure, all pure: the network cut at block boundaries into
 * sub-models, each block in one of its variants (full, deleted, scaled, mean-replaced), and a
 * whole changed network written back as one ordinary ONNX model.
 */
import { floatTensor, makeNode, type ModelProto, type NodeProto, type TensorProto } from '../loader/proto.js';
import type { ResidualBlock, ResidualStructure, Segment } from './blocks.js';
import { ancestors, extractSubmodel, type GraphIndex } from './graph.js';

/** What becomes of a block (or a plain layer) in a changed network. */
export type BlockMode =
  | { kind: 'full' }
  | { kind: 'delete' }
  | { kind: 'scale'; alpha: number }
  /** The residual branch replaced by a constant: its mean over a data set, shape [1, ...]. */
  | { kind: 'mean'; mean: Float32Array; dims: number[] };

export const FULL: BlockMode = { kind: 'full' };
export const DELETE: BlockMode = { kind: 'delete' };

export function modeKey(m: BlockMode): string {
  return m.kind === 'scale' ? `scale:${m.alpha}` : m.kind;
}

/**
 * A changed network: `order[j]` is the unit (block or layer index) that runs in the j-th unit
 * slot (reordering swaps units with equal shapes), `modes[u]` what becomes of unit u.
 */
export interface Program {
  order: number[];
  modes: BlockMode[];
}

export function intactProgram(units: number): Program {
  return { order: [...Array(units).keys()], modes: Array.from({ length: units }, () => FULL) };
}

export function unitCount(s: ResidualStructure): number {
  return s.kind === 'residual' ? s.blocks.length : s.layers.length;
}

/** The nodes (copied, tensors renamed) computing one variant of a segment from `from` to `to`. */
interface Piece {
  nodes: NodeProto[];
  initializers: TensorProto[];
}

function renamer(inside: Set<string>, suffix: string, boundary: Map<string, string>) {
  return (t: string): string => (boundary.has(t) ? boundary.get(t)! : inside.has(t) ? `${t}${suffix}` : t);
}

function copyNodes(g: GraphIndex, idx: number[], rename: (t: string) => string, suffix: string): NodeProto[] {
  return idx.map((j) => {
    const n = g.nodes[j]!;
    return { ...n, name: `${n.name ?? n.opType}${suffix}`, input: (n.input ?? []).map((t) => (t ? rename(t) : t)), output: (n.output ?? []).map(rename) };
  });
}

/**
 * One segment (a block in `mode`, a layer, glue, stem or head) as nodes reading tensor `inName`
 * and writing `outName`. Internal tensors get `suffix` so the same segment can appear twice.
 */
export function segmentPiece(
  g: GraphIndex,
  s: ResidualStructure,
  seg: Segment,
  unit: number | undefined,
  mode: BlockMode,
  inName: string,
  outName: string,
  suffix: string,
): Piece {
  if (seg.kind === 'layer') {
    const layer = s.layers[unit!]!;
    if (mode.kind === 'delete') return { nodes: [makeNode('Identity', [inName], [outName], {}, `deleted_layer_${unit}${suffix}`)], initializers: [] };
    if (mode.kind !== 'full') throw new Error(`plain layers can only be kept or deleted, not ${mode.kind}`);
    return wholeSegment(g, layer.nodes, layer.input, layer.output, inName, outName, suffix);
  }
  if (seg.kind !== 'block') return wholeSegment(g, seg.nodes, seg.from, seg.to, inName, outName, suffix);
  const b = s.blocks[unit!]!;
  if (mode.kind === 'full') return wholeSegment(g, [...b.residualBranch, ...b.shortcut, addIndex(g, b), ...postIndex(g, b)].sort((a, c) => a - c), b.input, b.output, inName, outName, suffix);
  return blockVariant(g, b, mode, inName, outName, suffix);
}

function addIndex(g: GraphIndex, b: ResidualBlock): number {
  return g.producer.get(b.addOutput)!;
}
function postIndex(g: GraphIndex, b: ResidualBlock): number[] {
  return b.post ? [g.producer.get(b.output)!] : [];
}

function wholeSegment(g: GraphIndex, idx: number[], from: string, to: string, inName: string, outName: string, suffix: string): Piece {
  if (from === to) return { nodes: [makeNode('Identity', [inName], [outName], {}, `pass${suffix}`)], initializers: [] };
  const inside = new Set<string>();
  for (const j of idx) for (const o of g.nodes[j]!.output ?? []) inside.add(o);
  const rename = renamer(inside, suffix, new Map([[from, inName], [to, outName]]));
  return { nodes: copyNodes(g, idx, rename, suffix), initializers: [] };
}

/** y = post(s(x) + m(f(x))) where m deletes, scales or replaces the residual branch. */
function blockVariant(g: GraphIndex, b: ResidualBlock, mode: BlockMode, inName: string, outName: string, suffix: string): Piece {
  const inside = new Set<string>();
  for (const j of [...b.residualBranch, ...b.shortcut]) for (const o of g.nodes[j]!.output ?? []) inside.add(o);
  const rename = renamer(inside, suffix, new Map([[b.input, inName]]));
  const nodes: NodeProto[] = copyNodes(g, b.shortcut, rename, suffix);
  const initializers: TensorProto[] = [];
  const sOut = rename(b.shortcutOutput);
  const sum = `${b.addOutput}${suffix}`;
  const postIn = mode.kind === 'delete' ? sOut : sum;
  if (mode.kind === 'scale') {
    nodes.push(...copyNodes(g, b.residualBranch, rename, suffix));
    const alpha = `reslens_alpha_${b.index}${suffix}`;
    initializers.push(floatTensor(alpha, [], [mode.alpha]));
    nodes.push(makeNode('Mul', [rename(b.residualOutput), alpha], [`${b.residualOutput}_scaled${suffix}`], {}, `scale_block_${b.index}${suffix}`));
    nodes.push(makeNode('Add', [sOut, `${b.residualOutput}_scaled${suffix}`], [sum], {}, `add_block_${b.index}${suffix}`));
  } else if (mode.kind === 'mean') {
    const mean = `reslens_mean_${b.index}${suffix}`;
    initializers.push(floatTensor(mean, mode.dims, mode.mean));
    nodes.push(makeNode('Add', [sOut, mean], [sum], {}, `add_block_${b.index}${suffix}`));
  }
  if (b.post) {
    const post = g.nodes[g.producer.get(b.output)!]!;
    nodes.push({ ...post, name: `${post.name ?? 'post'}${suffix}`, input: [postIn, ...(post.input ?? []).slice(1)], output: [outName] });
  } else {
    nodes.push(makeNode('Identity', [postIn], [outName], {}, `block_${b.index}_out${suffix}`));
  }
  return { nodes, initializers };
}

/** The steps a program runs, in order: (segment index, unit or undefined, mode). */
export interface Step {
  seg: number;
  unit?: number;
  mode: BlockMode;
  /** Identifies the computation from the start of the network up to and including this step. */
  key: string;
}

export function programSteps(s: ResidualStructure, p: Program): Step[] {
  const steps: Step[] = [];
  let slot = 0;
  let key = '';
  s.segments.forEach((seg, i) => {
    if (seg.kind === 'block' || seg.kind === 'layer') {
      const unit = p.order[slot++]!;
      const mode = p.modes[unit] ?? FULL;
      key += `|${unit}${mode.kind === 'full' ? '' : ':' + modeKey(mode)}`;
      steps.push({ seg: i, unit, mode, key });
    } else {
      key += `|s${i}`;
      steps.push({ seg: i, mode: FULL, key });
    }
  });
  return steps;
}

/** One step as a standalone model (input tensor 'x', output 'y'). */
export function stepModel(model: ModelProto, g: GraphIndex, s: ResidualStructure, step: Step): ModelProto {
  const seg = s.segments[step.seg]!;
  if (step.mode.kind === 'full' && seg.kind !== 'layer') {
    const from = seg.kind === 'block' ? s.blocks[step.unit!]!.input : seg.from;
    const to = seg.kind === 'block' ? s.blocks[step.unit!]!.output : seg.to;
    if (from !== to) return extractSubmodel(model, g, [from], [to], `${seg.kind}_${step.unit ?? step.seg}`);
  }
  const piece = segmentPiece(g, s, seg, step.unit, step.mode, 'x', 'y', '');
  return assemble(model, g, [piece], 'x', 'y', `${seg.kind}_${step.unit ?? step.seg}_${modeKey(step.mode)}`);
}

function assemble(model: ModelProto, g: GraphIndex, pieces: Piece[], input: string, output: string | string[], name: string): ModelProto {
  let nodes = pieces.flatMap((p) => p.nodes);
  const extra = pieces.flatMap((p) => p.initializers);
  // Constants computed by nodes (Constant, shape arithmetic) come along once, unrenamed.
  const produced = new Set(nodes.flatMap((n) => n.output ?? []));
  const needed = nodes.flatMap((n) => n.input ?? []).filter((t) => t && !produced.has(t) && !g.initializers.has(t) && g.producer.has(t) && !g.computed.has(t));
  if (needed.length) {
    const consts = [...ancestors(g, needed)].sort((a, b) => a - b).map((j) => g.nodes[j]!);
    nodes = [...consts, ...nodes];
  }
  const used = new Set<string>();
  for (const n of nodes) for (const t of n.input ?? []) if (t) used.add(t);
  const initializer = [...[...used].filter((t) => g.initializers.has(t)).map((t) => g.initializers.get(t)!), ...extra];
  const io = (n: string) => ({ name: n, type: { tensorType: { elemType: 1 } } });
  return {
    irVersion: model.irVersion,
    opsetImport: model.opsetImport,
    producerName: 'reslens',
    graph: { name, node: nodes, initializer, input: [io(input)], output: (Array.isArray(output) ? output : [output]).map(io) },
  };
}

/** A run of consecutive steps as one model from tensor `input` to tensor `output`. */
export function stepsModel(model: ModelProto, g: GraphIndex, s: ResidualStructure, steps: Step[], input = 'x', output = 'y', name = 'steps', everyStep = false): ModelProto {
  const pieces: Piece[] = [];
  let cur = input;
  steps.forEach((st, i) => {
    const out = i === steps.length - 1 ? output : `reslens_step_${i}`;
    pieces.push(segmentPiece(g, s, s.segments[st.seg]!, st.unit, st.mode, cur, out, `__p${i}`));
    cur = out;
  });
  const m = assemble(model, g, pieces, input, output, name);
  // Optionally every step's output too (reslens_step_0, ...), for the engine's intact spine.
  if (everyStep) m.graph!.output = steps.map((_, i) => ({ name: i === steps.length - 1 ? output : `reslens_step_${i}`, type: { tensorType: { elemType: 1 } } }));
  return m;
}

/**
 * Many programs as one model: a step that programs share (same key: same computation from
 * the input on) appears once, so the graph is the programs' prefix trie. Output i,
 * `reslens_out_i`, is program i's result. Activations then stay inside onnxruntime (in its
 * blocked layout, buffers reused) instead of crossing into JavaScript at every branch point.
 */
export function programsModel(model: ModelProto, g: GraphIndex, s: ResidualStructure, stepLists: Step[][], input = 'x'): ModelProto {
  const pieces: Piece[] = [];
  const made = new Map<string, string>();
  const outputs: string[] = [];
  stepLists.forEach((steps, pi) => {
    let cur = input;
    for (const st of steps) {
      let out = made.get(st.key);
      if (!out) {
        out = `reslens_t${made.size}`;
        pieces.push(segmentPiece(g, s, s.segments[st.seg]!, st.unit, st.mode, cur, out, `__q${made.size}`));
        made.set(st.key, out);
      }
      cur = out;
    }
    const o = `reslens_out_${pi}`;
    pieces.push({ nodes: [makeNode('Identity', [cur], [o], {}, `program_${pi}_out`)], initializers: [] });
    outputs.push(o);
  });
  return assemble(model, g, pieces, input, outputs, 'programs');
}

/** The number of distinct steps in programsModel's graph (its size, in blocks and layers). */
export function distinctSteps(stepLists: Step[][]): number {
  return new Set(stepLists.flatMap((steps) => steps.map((st) => st.key))).size;
}

/**
 * The whole changed network as one ONNX model with the original input and output names,
 * for `reslens export` and as the reference the engine is tested against.
 */
export function exportProgram(model: ModelProto, g: GraphIndex, s: ResidualStructure, p: Program): ModelProto {
  const sub = stepsModel(model, g, s, programSteps(s, p), s.input, s.output, `${model.graph?.name ?? 'model'}_reslens`);
  // Keep the original input/output declarations (shapes, dynamic batch) and the metadata.
  sub.graph!.input = (model.graph!.input ?? []).filter((v) => v.name === s.input);
  sub.graph!.output = (model.graph!.output ?? []).filter((v) => v.name === s.output);
  return { ...sub, metadataProps: model.metadataProps, producerName: 'reslens export' };
}
