/**
 * Backward graphs over a stack of cotangents, one per path length, for the exact decomposition
 * of the gradient by path length (docs/science.md). Block i's backward is M_i (S_i + R_i): the
 * post-Add mask, the shortcut's VJP and the residual branch's VJP. Fed the stack c[0..L-1]
 * (batch L·N, length-major), a block's graph returns c'[k] = S M c[k] + R M c[k-1] for
 * k = 0..L, so the whole recursion from the last block to the first is one call per block.
 * The forward's saved tensors have batch N and are tiled L times. Pure: graph
 * in, model out.
 */
import { makeModel, type ModelProto, type NodeProto, type TensorProto, DataType, type ValueInfoProto } from '../loader/proto.js';
import type { ResidualBlock } from './blocks.js';
import type { GraphIndex } from './graph.js';
import { Builder } from './vjp-rules.js';
import { buildVjp, GRAD_IN, GRAD_OUT, type Vjp } from './vjp.js';

/** Per-row factors (exact powers of two, one per length) on the incoming stack, [L·N]. */
export const SCALE_IN = 'scale_in';
/** Per-row factors on the residual branch's result before it joins length k + 1, [L·N]. */
export const SCALE_R = 'scale_r';
/** Largest magnitude of each row of the outgoing stack, [L'·N] (to choose the next factors). */
export const MAX_ABS = 'max_abs';

export interface StackedVjp {
  /** Inputs GRAD_OUT (the stack) and the saved forward tensors, SCALE_IN/SCALE_R for blocks; outputs GRAD_IN and MAX_ABS. */
  model: ModelProto;
  saved: string[];
  masks: Map<string, string>;
  /** Lengths in and out: L and L + 1 for a block, L and L for glue. */
  lengths: [number, number];
}

function opsetOf(m: ModelProto): number {
  const o = (m.opsetImport ?? []).find((x) => !x.domain || x.domain === 'ai.onnx');
  return o?.version === undefined || o?.version === null ? 13 : Number(o.version);
}

/** Appends a VJP's nodes to `b` with its own names prefixed; returns the name of its GRAD_IN. */
function inline(b: Builder, v: Vjp, prefix: string, gradOut: string, L: number, shapes: Map<string, number[]>, tiled: Map<string, string>): string {
  const g = v.model.graph!;
  const keep = new Set(v.saved);
  const rename = (t: string) => (!t ? t : t === GRAD_OUT ? gradOut : keep.has(t) ? t : `${prefix}${t}`);
  for (const init of g.initializer ?? []) b.initializers.set(rename(init.name!), { ...init, name: rename(init.name!) } as TensorProto);
  /** The forward shape (batch N) of a saved tensor; masks have their ReLU output's. */
  const savedShape = (t: string) => shapes.get(v.masks.get(t) ?? t) ?? shapes.get(t);
  /** A saved tensor repeated L times along the batch axis, built once per model. */
  const tile = (t: string): string => {
    if (L === 1) return t;
    let name = tiled.get(t);
    if (!name) {
      const rank = savedShape(t)?.length;
      if (!rank) throw new Error(`stack: no shape for saved tensor '${t}'`);
      name = b.op('Tile', [t, b.i64([L, ...Array(rank - 1).fill(1)])]);
      tiled.set(t, name);
    }
    return name;
  };
  for (const n of g.node ?? []) {
    const ins = (n.input ?? []).map(rename);
    const outs = (n.output ?? []).map(rename);
    const savedIn = (n.input ?? []).map((t, i) => (keep.has(t) ? i : -1)).filter((i) => i >= 0);
    for (const i of savedIn) ins[i] = tile(n.input![i]!);
    b.nodes.push({ ...n, input: ins, output: outs, name: `${prefix}${n.name ?? ''}` } as NodeProto);
  }
  return rename(GRAD_IN);
}

/** A per-row factor [R] → [R, 1, ..., 1], to scale the rows of a stack of the given rank. */
function perRow(b: Builder, t: string, rank: number): string {
  return b.op('Unsqueeze', [t, b.i64(Array.from({ length: rank - 1 }, (_, i) => i + 1))]);
}

/** ReduceMax(|x|) over all axes but the first: the largest magnitude of each row. */
function maxAbs(b: Builder, x: string, rank: number, opset: number, out: string): void {
  const axes = Array.from({ length: rank - 1 }, (_, i) => i + 1);
  const a = b.op('Abs', [x]);
  if (opset >= 18) b.op('ReduceMax', [a, b.i64(axes)], { keepdims: 0 }, out);
  else b.op('ReduceMax', [a], { axes, keepdims: 0 }, out);
}

function finish(b: Builder, name: string, saved: Set<string>, scales: string[], opset: number, info: Map<string, ValueInfoProto>): ModelProto {
  const io = (n: string, t = DataType.FLOAT): ValueInfoProto => ({ name: n, type: { tensorType: { elemType: info.get(n)?.type?.tensorType?.elemType ?? t } } });
  return makeModel(
    {
      name,
      nodes: b.nodes,
      inputs: [io(GRAD_OUT), ...scales.map((s) => io(s)), ...[...saved].map((t) => io(t))],
      outputs: [io(GRAD_IN), io(MAX_ABS)],
      initializers: [...b.initializers.values()],
    },
    opset,
  );
}

function forwardInfo(g: GraphIndex): Map<string, ValueInfoProto> {
  const info = new Map<string, ValueInfoProto>();
  for (const v of [...(g.graph.input ?? []), ...(g.graph.valueInfo ?? []), ...(g.graph.output ?? [])]) info.set(v.name!, v);
  return info;
}

/** One step of a chain, in backward order: a block's backward (adds a length) or glue's (keeps them). */
export type ChainStep = { block: ResidualBlock } | { glue: { from: string; to: string } };

/**
 * The stacked backward of consecutive steps (blocks and the glue between them, in backward
 * order: the last block first) for L0 incoming lengths, in one model so that onnxruntime
 * keeps one arena and one layout for the whole run. The stack's rows are length-major (row
 * l·N + i: length l, image i). Inputs: GRAD_OUT [L0·N, ...] at the chain's output, SCALE_IN
 * [L0·N] (per row, applied on entry), SCALE_R [(L0 + blocks - 1)·N] (per row: the factor on
 * the residual branch's result of length l before it joins length l + 1; a block with L
 * lengths reads the first L·N), the saved tensors. Outputs GRAD_IN [(L0 + blocks)·N, ...] at
 * the chain's input and MAX_ABS, each of its rows' largest magnitude. Within a block, length
 * k becomes S M c[k] + R M c[k-1]·r[k-1]. Everything stays 4-D, the masks tiled L times.
 */
export function stackedChainBackward(model: ModelProto, g: GraphIndex, steps: ChainStep[], shapes: Map<string, number[]>, L0: number): StackedVjp {
  const common = { shapes, reluMasks: true };
  const vjps: Vjp[] = [];
  const opsetNeeded = (v: Vjp) => (vjps.push(v), v);
  type Built = { kind: 'glue'; glue: Vjp; rank: number } | { kind: 'block'; post: Vjp | null; viaR: Vjp; viaS: Vjp; rank: number; dims: number[] };
  const built = steps.map((st): Built => {
    if ('glue' in st) return { kind: 'glue', glue: opsetNeeded(buildVjp(model, g, { ...common, from: st.glue.from, to: st.glue.to })), rank: shapes.get(st.glue.from)!.length };
    const block = st.block;
    return {
      kind: 'block',
      post: block.output !== block.addOutput ? opsetNeeded(buildVjp(model, g, { ...common, from: block.addOutput, to: block.output })) : null,
      viaR: opsetNeeded(buildVjp(model, g, { ...common, from: block.input, to: block.addOutput, cut: [{ node: block.addNode, input: 1 - block.residualSlot }] })),
      viaS: opsetNeeded(buildVjp(model, g, { ...common, from: block.input, to: block.addOutput, cut: [{ node: block.addNode, input: block.residualSlot }] })),
      rank: shapes.get(block.input)!.length,
      dims: shapes.get(block.input)!.slice(1),
    };
  });
  const opset = Math.max(13, ...vjps.map((v) => opsetOf(v.model)));
  const b = new Builder(g, new Map(), opset);
  const first = steps[0]!;
  const rankIn = 'glue' in first ? shapes.get(first.glue.to)!.length : shapes.get(first.block.output)!.length;
  // Lengths are cut apart by reshaping [L·N, ...] to [L, N, ...] and slicing lengths with
  // constants: no arithmetic on the shape, whose int64 ops a GPU provider leaves to the CPU.
  const byLength = (t: string, lengths: number, dims: number[]) => b.op('Reshape', [t, b.i64([lengths, -1, ...dims])]);
  const lengthsOf = (t: string, lo: number, hi: number) => b.op('Slice', [t, b.i64([lo]), b.i64([hi]), b.i64([0])]);
  const flat = (t: string, dims: number[]) => b.op('Reshape', [t, b.i64([-1, ...dims])]);
  const scaleRows = L0 + built.filter((st) => st.kind === 'block').length - 1;
  let c = b.op('Mul', [GRAD_OUT, perRow(b, SCALE_IN, rankIn)]);
  let L = L0;
  let rank = rankIn;
  let p = 0;
  for (const st of built) {
    // Tiled masks are per step: the next block has one length more.
    const tiled = new Map<string, string>();
    const pre = `c${p++}/`;
    if (st.kind === 'glue') {
      c = inline(b, st.glue, `${pre}v/`, c, L, shapes, tiled);
      rank = st.rank;
      continue;
    }
    const masked = st.post ? inline(b, st.post, `${pre}p/`, c, L, shapes, tiled) : c;
    const scaleR = L === scaleRows ? SCALE_R : flat(lengthsOf(byLength(SCALE_R, scaleRows, []), 0, L), []);
    const r = b.op('Mul', [inline(b, st.viaR, `${pre}r/`, masked, L, shapes, tiled), perRow(b, scaleR, st.rank)]);
    const s = inline(b, st.viaS, `${pre}s/`, masked, L, shapes, tiled);
    if (L === 1) c = b.op('Concat', [s, r], { axis: 0 });
    else {
      const [sl, rl] = [byLength(s, L, st.dims), byLength(r, L, st.dims)];
      c = flat(b.op('Concat', [lengthsOf(sl, 0, 1), b.op('Add', [lengthsOf(sl, 1, L), lengthsOf(rl, 0, L - 1)]), lengthsOf(rl, L - 1, L)], { axis: 0 }), st.dims);
    }
    L++;
    rank = st.rank;
  }
  b.op('Identity', [c], {}, GRAD_IN);
  maxAbs(b, GRAD_IN, rank, opset, MAX_ABS);
  const saved = new Set(vjps.flatMap((v) => v.saved));
  const masks = new Map(vjps.flatMap((v) => [...v.masks]));
  return { model: finish(b, `stacked_chain_${L0}`, saved, [SCALE_IN, SCALE_R], opset, forwardInfo(g)), saved: [...saved], masks, lengths: [L0, L] };
}
