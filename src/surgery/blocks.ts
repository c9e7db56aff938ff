/**
 * Residual-block detection as docs/science.md defines it: a block ends at an Add whose two
 * inputs both depend on the data and meet again at one tensor x, the Add's immediate
 * dominator. Pure: graph in, structure out.
 */
import { num, tensorDims, type ModelProto, type NodeProto } from '../loader/proto.js';
import { ancestors, dominators, indexGraph, type GraphIndex } from './graph.js';

export type ShortcutKind = 'identity' | 'projection';

export interface ResidualBlock {
  index: number;
  /** x: the block input (the Add's immediate dominator). */
  input: string;
  /** y = post(s(x) + f(x)): the block output. */
  output: string;
  /** The Add node's name and output tensor. */
  addNode: string;
  addOutput: string;
  /** Which Add input slot (0 or 1) carries the residual branch f(x). */
  residualSlot: 0 | 1;
  /** The tensor f(x) and s(x) entering the Add. */
  residualOutput: string;
  shortcutOutput: string;
  /** Node indices (into GraphIndex.nodes) of f and of s; s is [] for an identity shortcut. */
  residualBranch: number[];
  shortcut: number[];
  shortcutKind: ShortcutKind;
  /** The op applied after the Add ('Relu' in post-activation ResNets), null when none. */
  post: string | null;
  postNode: string | null;
  /** A strided op or pooling in f or s: the block changes resolution. */
  downsampling: boolean;
  branchOps: string[];
  shortcutOps: string[];
  params: number;
  stage: number;
}

/** A conv(+BN)+activation group of a plain or dense network. */
export interface Layer {
  index: number;
  input: string;
  output: string;
  nodes: number[];
  ops: string[];
  params: number;
  stage: number;
}

/** One step of the network read as a sequence: everything between two tensors. */
export interface Segment {
  kind: 'stem' | 'block' | 'glue' | 'head' | 'layer';
  from: string;
  to: string;
  /** Block or layer index for kind 'block' / 'layer'. */
  unit?: number;
  nodes: number[];
}

export interface ResidualStructure {
  kind: 'residual' | 'plain' | 'dense';
  input: string;
  output: string;
  blocks: ResidualBlock[];
  /** For plain and dense networks: their layers. Empty for residual ones. */
  layers: Layer[];
  /** The network as a chain of segments from input to output. */
  segments: Segment[];
  stemOps: string[];
  headOps: string[];
  params: number;
  /** Things seen but not used (e.g. Adds that are not clean blocks), for the user. */
  notes: string[];
}

const WEIGHTED = new Set(['Conv', 'ConvTranspose', 'Gemm', 'MatMul']);
const STRIDED = new Set(['Conv', 'MaxPool', 'AveragePool']);

export class StructureError extends Error {}

function paramsOf(g: GraphIndex, nodes: Iterable<number>): number {
  let total = 0;
  const seen = new Set<string>();
  for (const i of nodes) {
    for (const t of g.nodes[i]!.input ?? []) {
      const init = g.initializers.get(t);
      if (!init || seen.has(t)) continue;
      seen.add(t);
      total += tensorDims(init).reduce((a, b) => a * b, 1);
    }
  }
  return total;
}

function isStrided(node: NodeProto): boolean {
  if (!STRIDED.has(node.opType!)) return false;
  if (node.opType === 'MaxPool' || node.opType === 'AveragePool') return true;
  const s = node.attribute?.find((a) => a.name === 'strides');
  return !!s?.ints?.some((v) => num(v) > 1);
}

/** Computed nodes strictly between tensor `from` and tensor `to` (those `to` needs). */
function between(g: GraphIndex, from: string, to: string): number[] {
  if (from === to) return [];
  return [...ancestors(g, [to], new Set([from]))].filter((i) => (g.nodes[i]!.output ?? []).some((o) => g.computed.has(o))).sort((a, b) => a - b);
}

/** The output of node `d` (or the data input, for the virtual root) through which `t` is reached. */
function dominatingTensor(g: GraphIndex, d: number, t: string): string {
  if (d === -1) return g.inputs[0]!;
  const outs = (g.nodes[d]!.output ?? []).filter((o) => o);
  if (outs.length === 1) return outs[0]!;
  for (const o of outs) if (o === t || between(g, o, t).length) return o;
  return outs[0]!;
}

interface Candidate {
  add: number;
  x: string;
  regions: [number[], number[]];
}

function findCandidates(g: GraphIndex, idom: number[]): { cands: Candidate[]; notes: string[] } {
  const notes: string[] = [];
  const cands: Candidate[] = [];
  g.nodes.forEach((n, i) => {
    if (n.opType !== 'Add' && !(n.opType === 'Sum' && n.input?.length === 2)) return;
    const [a, b] = n.input ?? [];
    if (!a || !b || a === b || !g.computed.has(a) || !g.computed.has(b)) return;
    const x = dominatingTensor(g, idom[i]!, a);
    const ra = between(g, x, a);
    const rb = between(g, x, b);
    const sa = new Set(ra);
    if (rb.some((j) => sa.has(j))) {
      notes.push(`Add '${n.name}': its two inputs share nodes after ${x}; not a residual block`);
      return;
    }
    cands.push({ add: i, x, regions: [ra, rb] });
  });
  return { cands, notes };
}

function weightedCount(g: GraphIndex, region: number[]): number {
  return region.filter((j) => WEIGHTED.has(g.nodes[j]!.opType!)).length;
}

/** Finds the residual blocks, or the layers of a plain or dense network. */
export function detectStructure(model: ModelProto, gIn?: GraphIndex): ResidualStructure {
  const g = gIn ?? indexGraph(model.graph!);
  if (g.inputs.length !== 1) throw new StructureError(`the graph has ${g.inputs.length} data inputs; reslens needs one image input`);
  const input = g.inputs[0]!;
  const output = g.outputs[0]!;
  const idom = dominators(g);
  const { cands, notes } = findCandidates(g, idom);

  // An Add whose branch holds another candidate wraps blocks (nested residuals): not a block of the chain.
  const addIdx = new Set(cands.map((c) => c.add));
  const flat = cands.filter((c) => {
    const nested = [...c.regions[0], ...c.regions[1]].some((j) => addIdx.has(j));
    if (nested) notes.push(`Add '${g.nodes[c.add]!.name}' wraps other residual blocks; treated as part of the network, not as a block`);
    return !nested;
  });

  const blocks: ResidualBlock[] = [];
  for (const c of flat) {
    const addNode = g.nodes[c.add]!;
    const [wa, wb] = [weightedCount(g, c.regions[0]), weightedCount(g, c.regions[1])];
    // f is the branch with more weighted layers; ties go to the longer branch.
    let residualSlot: 0 | 1 = wa > wb || (wa === wb && c.regions[0].length >= c.regions[1].length) ? 0 : 1;
    if (c.regions[0].length === 0) residualSlot = 1;
    if (c.regions[1].length === 0) residualSlot = 0;
    const f = c.regions[residualSlot];
    const s = c.regions[1 - residualSlot]!;
    if (f.length === 0) {
      notes.push(`Add '${addNode.name}' adds two unprocessed copies of ${c.x}; not a residual block`);
      continue;
    }
    const addOut = addNode.output![0]!;
    const users = g.consumers.get(addOut) ?? [];
    const only = users.length === 1 ? g.nodes[users[0]!]! : null;
    const post = only && (only.opType === 'Relu' || only.opType === 'Clip') && !g.outputs.includes(addOut) ? only : null;
    const all = [...f, ...s];
    blocks.push({
      index: blocks.length,
      input: c.x,
      output: post ? post.output![0]! : addOut,
      addNode: addNode.name ?? '',
      addOutput: addOut,
      residualSlot,
      residualOutput: addNode.input![residualSlot]!,
      shortcutOutput: addNode.input![1 - residualSlot]!,
      residualBranch: f,
      shortcut: s,
      shortcutKind: s.length ? 'projection' : 'identity',
      post: post ? post.opType! : null,
      postNode: post ? post.name ?? '' : null,
      downsampling: all.some((j) => isStrided(g.nodes[j]!)),
      branchOps: f.map((j) => g.nodes[j]!.opType!),
      shortcutOps: s.map((j) => g.nodes[j]!.opType!),
      params: paramsOf(g, [...all, c.add]),
      stage: 0,
    });
  }

  if (blocks.length === 0) return nonResidual(g, input, output, notes);

  // Blocks must form a chain: each block's input is reached from the previous block's output
  // and from nothing before it.
  const segments: Segment[] = [];
  const stem = between(g, input, blocks[0]!.input);
  segments.push({ kind: 'stem', from: input, to: blocks[0]!.input, nodes: stem });
  blocks.forEach((b, i) => {
    const nodes = between(g, b.input, b.output);
    segments.push({ kind: 'block', from: b.input, to: b.output, unit: i, nodes });
    const next = blocks[i + 1];
    const to = next ? next.input : output;
    const glue = between(g, b.output, to);
    const reach = ancestors(g, [to], new Set([b.output]));
    for (const j of reach) {
      for (const t of g.nodes[j]!.input ?? []) {
        if (g.computed.has(t) && !g.producer.has(t) && t !== b.output) {
          throw new StructureError(`block ${i} ('${b.addNode}') is not followed by a chain: '${to}' also depends on the input directly`);
        }
      }
    }
    // Everything the next segment needs must come through b.output.
    for (const j of glue) {
      for (const t of g.nodes[j]!.input ?? []) {
        if (!g.computed.has(t) || t === b.output) continue;
        const p = g.producer.get(t);
        if (p !== undefined && !glue.includes(p)) {
          throw new StructureError(`blocks ${i} and ${i + 1} are not in sequence: '${to}' also uses '${t}' from before block ${i}'s output (a dense or multi-branch connection)`);
        }
      }
    }
    if (next || glue.length) segments.push({ kind: next ? 'glue' : 'head', from: b.output, to, nodes: glue });
  });
  if (segments[segments.length - 1]!.kind !== 'head') {
    segments.push({ kind: 'head', from: blocks[blocks.length - 1]!.output, to: output, nodes: [] });
  }
  // Drop empty glue (block i's output is block i+1's input).
  const segs = segments.filter((s) => s.kind !== 'glue' || s.nodes.length > 0);
  assignStages(blocks, segs);
  return {
    kind: 'residual',
    input,
    output,
    blocks,
    layers: [],
    segments: segs,
    stemOps: stem.map((j) => g.nodes[j]!.opType!),
    headOps: segs[segs.length - 1]!.nodes.map((j) => g.nodes[j]!.opType!),
    params: paramsOf(g, g.nodes.keys()),
    notes,
  };
}

/**
 * Stages without shapes: a new stage starts at a downsampling or projection block, or after
 * glue (e.g. MobileNetV2's non-residual layers). `restage` refines this with real shapes.
 */
function assignStages(blocks: ResidualBlock[], segs: Segment[]): void {
  let stage = 0;
  let prevEnd = -1;
  blocks.forEach((b, i) => {
    const segIdx = segs.findIndex((s) => s.kind === 'block' && s.unit === i);
    const glueBefore = i > 0 && segIdx - 1 !== prevEnd;
    if (i > 0 && (b.downsampling || b.shortcutKind === 'projection' || glueBefore)) stage++;
    b.stage = stage;
    prevEnd = segIdx;
  });
}

/** Stages from real output shapes: runs of blocks with the same output shape. */
export function restage(s: ResidualStructure, shapes: Map<string, number[]>): void {
  let stage = 0;
  let prev = '';
  const units = s.kind === 'residual' ? s.blocks : s.layers;
  units.forEach((u, i) => {
    const shape = (shapes.get(u.output) ?? []).slice(1).join('x');
    if (i > 0 && shape !== prev) stage++;
    u.stage = stage;
    prev = shape;
  });
}

const ACT = new Set(['Relu', 'Clip', 'LeakyRelu', 'Sigmoid', 'Tanh', 'HardSigmoid', 'HardSwish', 'Elu', 'Selu', 'PRelu']);
const FOLLOWERS = new Set([...ACT, 'BatchNormalization', 'Dropout', 'Identity', 'MaxPool', 'AveragePool']);

/** Plain (VGG-style) or dense networks: list conv(+BN)+activation layers. */
const BRANCHING = 'layers branch and merge (parallel paths concatenated, as in Inception), so they are not a chain from which one layer can be deleted';

/**
 * Why units cannot be deleted from this network (a sentence for a UserError after the file
 * name), or null when the engine can split it: dense networks and branching plain ones.
 */
export function notSplittable(s: ResidualStructure): string | null {
  if (s.kind === 'dense') return 'a dense network (Concat feature reuse) has no blocks or layers to delete; reslens deletes residual blocks and layers of plain chains';
  if (s.kind === 'plain' && s.segments.length === 0) return `a network without residual Adds whose ${BRANCHING}; reslens deletes residual blocks and layers of plain chains`;
  return null;
}

/** Whether tensor t is computed (through any number of nodes) from tensor u. */
function computedFrom(g: GraphIndex, t: string, u: string): boolean {
  const anc = ancestors(g, [t]);
  const pu = g.producer.get(u);
  // u with no producer (the graph input) counts when a node t depends on reads it.
  return pu !== undefined ? anc.has(pu) : [...anc].some((i) => (g.nodes[i]!.input ?? []).includes(u));
}

function nonResidual(g: GraphIndex, input: string, output: string, notes: string[]): ResidualStructure {
  // Feature reuse: one concatenated input is computed from another (in an Inception-style
  // Concat the branches share an input but none is computed from another).
  const dense = g.nodes.some((n) => {
    if (n.opType !== 'Concat') return false;
    const ins = (n.input ?? []).filter((t) => g.computed.has(t));
    return ins.some((t) => ins.some((u) => u !== t && computedFrom(g, t, u)));
  });
  const layers: Layer[] = [];
  const segments: Segment[] = [];
  if (dense) {
    // A dense layer computes new feature maps from the concatenation so far; its output is a
    // conv result that enters a Concat. Its input is the nearest dominating Concat (or input).
    const idom = dominators(g);
    const fresh = new Set<string>();
    for (const n of g.nodes) {
      if (n.opType !== 'Concat') continue;
      const ins = (n.input ?? []).filter((t) => g.computed.has(t));
      for (const t of ins) {
        const p = g.producer.get(t);
        if (p === undefined || !WEIGHTED.has(g.nodes[p]!.opType!)) continue;
        // New maps come from a conv over what they are concatenated with. The stem's or a
        // transition's output is concatenated too, but is not computed from its partners
        // (a CIFAR-style stem is a bare conv, so its op alone does not tell).
        if (ins.some((u) => u !== t && computedFrom(g, t, u))) fresh.add(t);
      }
    }
    for (const t of fresh) {
      let d = idom[g.producer.get(t)!]!;
      while (d >= 0 && g.nodes[d]!.opType !== 'Concat' && (g.consumers.get(g.nodes[d]!.output![0]!) ?? []).length < 2) d = idom[d]!;
      const x = d >= 0 ? g.nodes[d]!.output![0]! : input;
      const nodes = between(g, x, t);
      layers.push({
        index: layers.length, input: x, output: t, nodes, ops: nodes.map((j) => g.nodes[j]!.opType!),
        params: paramsOf(g, nodes), stage: 0,
      });
    }
  } else {
    // A plain layer starts at each weighted op and takes the activations/norms/pools that follow.
    let cur: number[] | null = null;
    const flush = () => {
      if (!cur) return;
      const first = g.nodes[cur[0]!]!;
      const last = g.nodes[cur[cur.length - 1]!]!;
      layers.push({
        index: layers.length, input: first.input![0]!, output: last.output![0]!, nodes: cur,
        ops: cur.map((j) => g.nodes[j]!.opType!), params: paramsOf(g, cur), stage: 0,
      });
      cur = null;
    };
    g.nodes.forEach((n, i) => {
      if (!(n.output ?? []).some((o) => g.computed.has(o))) return;
      if (WEIGHTED.has(n.opType!)) {
        flush();
        cur = [i];
      } else if (cur && FOLLOWERS.has(n.opType!) && (n.input ?? []).includes(g.nodes[cur[cur.length - 1]!]!.output![0]!)) {
        cur.push(i);
      } else {
        flush();
      }
    });
    flush();
    let prev = input;
    // The layers must form a chain, each computed from the one before; parallel branches
    // merged by a Concat (Inception) do not, and the network is then not split at all.
    const chain = layers.every((l, i) => (i === 0 ? l.input === input || computedFrom(g, l.input, input) : l.input === layers[i - 1]!.output || computedFrom(g, l.input, layers[i - 1]!.output)));
    if (!chain) {
      notes.push(`its ${BRANCHING}`);
    } else {
      for (const l of layers) {
        if (l.input !== prev) segments.push({ kind: 'glue', from: prev, to: l.input, nodes: between(g, prev, l.input) });
        segments.push({ kind: 'layer', from: l.input, to: l.output, unit: l.index, nodes: l.nodes });
        prev = l.output;
      }
      if (prev !== output) segments.push({ kind: 'head', from: prev, to: output, nodes: between(g, prev, output) });
      if (segments[0]?.kind === 'glue') segments[0].kind = 'stem';
    }
  }
  return {
    kind: dense ? 'dense' : 'plain',
    input,
    output,
    blocks: [],
    layers,
    segments,
    stemOps: [],
    headOps: [],
    params: paramsOf(g, g.nodes.keys()),
    notes,
  };
}
