/**
 * Backward rules for the ops residual networks and vision transformers use: each turns the gradient of a node's
 * output into ONNX nodes computing the gradients of its inputs (input gradients only,
 * weights are constants). The emitting side (Builder) collects the nodes, the constants
 * they need and the forward tensors they read (`saved`). Pure: no sessions, no I/O.
 */
import { UserError } from '../errors.js';
import {
  AttrType,
  DataType,
  attrFloat,
  attrInt,
  attrInts,
  attrString,
  floatTensor,
  getAttr,
  int64Tensor,
  makeNode,
  tensorDims,
  tensorFloats,
  tensorInts,
  type AttrValue,
  type NodeProto,
  type TensorProto,
} from '../loader/proto.js';
import { ancestors, type GraphIndex } from './graph.js';

/** The name of the saved input holding ReLU output `y`'s mask (1 where y > 0, else 0). */
export const reluMaskName = (y: string): string => `${y}::relu_mask`;

/** Emits the backward graph: nodes, constants, and the forward tensors it reads. */
export class Builder {
  readonly nodes: NodeProto[] = [];
  readonly initializers = new Map<string, TensorProto>();
  readonly saved: string[] = [];
  /** Highest opset an emitted op needs (ScatterElements reduction='add' needs 16). */
  opset = 13;
  private counter = 0;
  private readonly importedNodes = new Set<number>();

  /** Mask inputs (name → the ReLU output it is read off); see VjpSpec.reluMasks. */
  readonly masks = new Map<string, string>();

  constructor(
    readonly g: GraphIndex,
    readonly shapes: Map<string, number[]>,
    readonly forwardOpset: number,
    readonly reluMasksAsInputs = false,
  ) {}

  /**
   * ReLU's derivative as a float 0/1 tensor. As an input (computed once in the forward pass)
   * a backward's mask is one Mul; computed here it is Greater+Cast on every run.
   */
  reluMask(y: string): string {
    if (!this.reluMasksAsInputs) return this.op('Cast', [this.op('Greater', [this.value(y), this.scalar(0)])], { to: 1 });
    const name = reluMaskName(y);
    if (!this.masks.has(name)) {
      this.masks.set(name, y);
      this.saved.push(name);
    }
    return name;
  }

  fresh(hint: string): string {
    return `__vjp${this.counter++}_${hint.replace(/[^A-Za-z0-9_]/g, '_')}`;
  }

  /** Appends a node; returns its output names (fresh unless given). */
  opN(opType: string, inputs: string[], nOut: number, attrs: Record<string, AttrValue> = {}, outs?: string[]): string[] {
    const outputs = outs ?? Array.from({ length: nOut }, () => this.fresh(opType));
    this.nodes.push(makeNode(opType, inputs, outputs, attrs, this.fresh(`n_${opType}`)));
    return outputs;
  }

  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, out?: string): string {
    return this.opN(opType, inputs, 1, attrs, out ? [out] : undefined)[0]!;
  }

  i64(vals: number[], dims: number[] = [vals.length]): string {
    const name = this.fresh('i64');
    this.initializers.set(name, int64Tensor(name, dims, vals));
    return name;
  }

  f32(vals: ArrayLike<number>, dims: number[]): string {
    const name = this.fresh('f32');
    this.initializers.set(name, floatTensor(name, dims, vals));
    return name;
  }

  scalar(v: number): string {
    return this.f32([v], []);
  }

  /**
   * A forward tensor's value in the backward graph: data-dependent tensors become inputs
   * (`saved`, fed by the caller); constants are copied (initializers, and the constant-only
   * nodes that produce them).
   */
  value(t: string): string {
    const g = this.g;
    if (g.computed.has(t)) {
      if (!this.saved.includes(t)) this.saved.push(t);
      return t;
    }
    const init = g.initializers.get(t);
    if (init) {
      this.initializers.set(t, init);
      return t;
    }
    const nodes = [...ancestors(g, [t])].filter((i) => !this.importedNodes.has(i)).sort((a, b) => a - b);
    for (const i of nodes) {
      this.importedNodes.add(i);
      const n = g.nodes[i]!;
      for (const inp of n.input ?? []) {
        const it = inp ? g.initializers.get(inp) : undefined;
        if (it) this.initializers.set(inp, it);
      }
      this.nodes.push(n);
    }
    if (g.producer.get(t) === undefined) throw new Error(`vjp: tensor '${t}' is neither computed, an initializer nor produced by a node`);
    return t;
  }

  /** The tensor behind a constant (initializer or Constant node), or undefined. */
  constTensor(t: string): TensorProto | undefined {
    const init = this.g.initializers.get(t);
    if (init) return init;
    const p = this.g.producer.get(t);
    if (p === undefined) return undefined;
    const n = this.g.nodes[p]!;
    if (n.opType !== 'Constant') return undefined;
    return getAttr(n, 'value')?.t ?? undefined;
  }

  /** Integer values of a constant input (Constant nodes with value_ints included). */
  constInts(t: string, what: string, node: NodeProto): number[] {
    const tp = this.constTensor(t);
    if (tp) return tensorInts(tp);
    const p = this.g.producer.get(t);
    if (p !== undefined && this.g.nodes[p]!.opType === 'Constant') {
      const vi = attrInts(this.g.nodes[p]!, 'value_ints', []);
      if (vi.length) return vi;
      const a = getAttr(this.g.nodes[p]!, 'value_int');
      if (a) return [attrInt(this.g.nodes[p]!, 'value_int', 0)];
    }
    // Exporters compute some of these from shapes (torchvision's vit_b_16 slices q, k and v
    // with starts taken from Shape): with the batch fixed, the shapes are static, so is the value.
    const folded = this.shapeValue(t, 0);
    if (folded) return folded;
    throw new UserError(`node '${node.name}' (${node.opType}): its ${what} must be a constant for reslens gradients`);
  }

  /**
   * The value of a small integer tensor computed only from static shapes and constants
   * (Shape, Gather, Unsqueeze, Squeeze, Concat, Slice, Cast, Reshape, Add, Sub, Mul, Div),
   * flattened; undefined when it depends on data.
   */
  shapeValue(t: string, depth: number): number[] | undefined {
    if (depth > 64) return undefined;
    const c = this.constTensor(t);
    if (c) return c.dataType === DataType.FLOAT ? undefined : tensorInts(c);
    const p = this.g.producer.get(t);
    if (p === undefined) return undefined;
    const n = this.g.nodes[p]!;
    const ins = n.input ?? [];
    const arg = (i: number) => (ins[i] ? this.shapeValue(ins[i]!, depth + 1) : undefined);
    switch (n.opType) {
      case 'Constant': {
        const vi = attrInts(n, 'value_ints', []);
        return vi.length ? vi : getAttr(n, 'value_int') ? [attrInt(n, 'value_int', 0)] : undefined;
      }
      case 'Shape': {
        const s = this.shapes.get(ins[0]!);
        if (!s) return undefined;
        const r = s.length;
        const clamp = (v: number) => Math.min(r, Math.max(0, v < 0 ? v + r : v));
        return s.slice(clamp(attrInt(n, 'start', 0)), getAttr(n, 'end') ? clamp(attrInt(n, 'end', r)) : r);
      }
      case 'Gather': {
        const data = arg(0), idx = arg(1);
        if (!data || !idx || attrInt(n, 'axis', 0) !== 0) return undefined;
        return idx.map((i) => data[i < 0 ? i + data.length : i]!);
      }
      case 'Unsqueeze': case 'Squeeze': case 'Cast': case 'Reshape': case 'Identity':
        return arg(0);
      case 'Concat': {
        const parts = ins.map((_, i) => arg(i));
        return parts.every((x) => x) ? parts.flat() as number[] : undefined;
      }
      case 'Slice': {
        const data = arg(0), st = arg(1), en = arg(2);
        if (!data || !st || !en || (ins[3] && (arg(3)?.[0] ?? 0) !== 0) || (ins[4] && (arg(4)?.[0] ?? 1) !== 1)) return undefined;
        const L = data.length, c = (v: number) => Math.min(L, Math.max(0, v < 0 ? v + L : v));
        return data.slice(c(st[0]!), c(en[0]!));
      }
      case 'Add': case 'Sub': case 'Mul': case 'Div': {
        const a = arg(0), b = arg(1);
        if (!a || !b || (a.length !== b.length && a.length !== 1 && b.length !== 1)) return undefined;
        const len = Math.max(a.length, b.length);
        const f = { Add: (x: number, y: number) => x + y, Sub: (x: number, y: number) => x - y, Mul: (x: number, y: number) => x * y, Div: (x: number, y: number) => Math.trunc(x / y) }[n.opType];
        return Array.from({ length: len }, (_, i) => f(a[a.length === 1 ? 0 : i]!, b[b.length === 1 ? 0 : i]!));
      }
      default:
        return undefined;
    }
  }

  /** Static shape of a forward tensor (batch dim included), from the probe. */
  shape(t: string, node: NodeProto): number[] {
    const s = this.shapes.get(t);
    if (s) return s;
    const c = this.constTensor(t);
    if (c) return tensorDims(c);
    throw new Error(`vjp: no static shape for tensor '${t}' (needed by the backward of ${node.opType} node '${node.name}'); include it in VjpSpec.shapes`);
  }

  /** A target shape for Reshape: the static shape with the leading (batch) dim inferred. */
  reshapeTo(grad: string, shape: number[]): string {
    const dims = shape.length ? [-1, ...shape.slice(1)] : [];
    return this.op('Reshape', [grad, this.i64(dims)]);
  }

  /**
   * Sum over `axes`, kept as size-1 axes (ReduceSum reads its axes as an input from opset 13
   * on, which every backward model has; ReduceMean only from 18, so means are sums here).
   */
  sum(t: string, axes: number[]): string {
    return this.op('ReduceSum', [t, this.i64(axes)], { keepdims: 1 });
  }

  /** The mean over `axes` of a tensor of static shape `shape`, kept as size-1 axes. */
  mean(t: string, axes: number[], shape: number[]): string {
    return this.op('Mul', [this.sum(t, axes), this.scalar(1 / axes.reduce((p, a) => p * shape[a]!, 1))]);
  }

  /** Sums `grad` (of broadcast shape `from`) down to `to` (NumPy broadcasting rules). */
  reduceTo(grad: string, from: number[], to: number[]): string {
    if (from.length === to.length && from.every((d, i) => d === to[i])) return grad;
    const lead = from.length - to.length;
    if (lead < 0) throw new Error(`vjp: cannot reduce a gradient of shape [${from}] to [${to}]`);
    const axes: number[] = [];
    from.forEach((d, i) => {
      if (i < lead || (to[i - lead] === 1 && d !== 1)) axes.push(i);
    });
    let r = grad;
    if (axes.length) r = this.op('ReduceSum', [r, this.i64(axes)], { keepdims: 1 });
    if (lead > 0) r = this.op('Squeeze', [r, this.i64(Array.from({ length: lead }, (_, i) => i))]);
    return r;
  }
}

/** What a rule sees of one node during the backward sweep. */
export interface RuleCtx {
  b: Builder;
  node: NodeProto;
  /**
   * Gradient of output 0 (always present when a rule runs), or for the ops in ALL_OUTPUTS
   * the first output's that has one.
   */
  gy: string;
  /** Gradients of all outputs (null where none flows). */
  grads: (string | null)[];
  /** Whether input slot i should receive a gradient (data-dependent on `from`, not cut). */
  wants(i: number): boolean;
  /** Contributes `grad` to input slot i. */
  emit(i: number, grad: string): void;
}

type Rule = (c: RuleCtx) => void;

const inp = (n: NodeProto, i: number): string => (n.input ?? [])[i] ?? '';
const out = (n: NodeProto, i = 0): string => (n.output ?? [])[i] ?? '';

// ---------------------------------------------------------------- helpers for windows

interface Window {
  k: number[];
  s: number[];
  d: number[];
  pb: number[];
  pe: number[];
  xs: number[]; // spatial input sizes
  ys: number[]; // spatial output sizes
}

function windowOf(c: RuleCtx, kernel: number[] | null): Window {
  const { b, node } = c;
  const xShape = b.shape(inp(node, 0), node);
  const yShape = b.shape(out(node), node);
  const r = xShape.length - 2;
  const k = kernel ?? attrInts(node, 'kernel_shape', []);
  if (k.length !== r) throw new UserError(`node '${node.name}' (${node.opType}): cannot tell its kernel shape`);
  const s = attrInts(node, 'strides', Array(r).fill(1));
  const d = attrInts(node, 'dilations', Array(r).fill(1));
  const xs = xShape.slice(2);
  const ys = yShape.slice(2);
  const autoPad = attrString(node, 'auto_pad', 'NOTSET');
  let pb: number[];
  let pe: number[];
  if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
    pb = [];
    pe = [];
    for (let i = 0; i < r; i++) {
      const total = Math.max((ys[i]! - 1) * s[i]! + (k[i]! - 1) * d[i]! + 1 - xs[i]!, 0);
      const small = Math.floor(total / 2);
      pb.push(autoPad === 'SAME_UPPER' ? small : total - small);
      pe.push(total - pb[i]!);
    }
  } else if (autoPad === 'VALID') {
    pb = Array(r).fill(0);
    pe = Array(r).fill(0);
  } else {
    const p = attrInts(node, 'pads', Array(2 * r).fill(0));
    pb = p.slice(0, r);
    pe = p.slice(r);
  }
  return { k, s, d, pb, pe, xs, ys };
}

/**
 * Attributes of the ConvTranspose that maps a gradient of the window op's output back onto
 * its input exactly: begin pads as in the forward op, end pads/output_padding chosen from
 * the static shapes so that the result has the input's size.
 */
function transposeAttrs(w: Window): Record<string, AttrValue> {
  const r = w.k.length;
  const pe: number[] = [];
  const op: number[] = [];
  for (let i = 0; i < r; i++) {
    const full = w.s[i]! * (w.ys[i]! - 1) + (w.k[i]! - 1) * w.d[i]! + 1 - w.pb[i]!;
    const diff = full - w.xs[i]!;
    pe.push(Math.max(diff, 0));
    op.push(Math.max(-diff, 0));
  }
  const a: Record<string, AttrValue> = {
    kernel_shape: w.k,
    strides: w.s,
    dilations: w.d,
    pads: [...w.pb, ...pe],
  };
  if (op.some((v) => v > 0)) a.output_padding = op;
  return a;
}

/**
 * For a stride-1 conv the input gradient is itself a conv: of the output gradient with the
 * kernel flipped and its channel axes swapped, padded by (kernel extent - 1 - forward pad).
 * onnxruntime runs Conv several times faster than ConvTranspose, and most convs in a ResNet
 * have stride 1. Returns null when the fast form does not apply.
 */
function flippedConv(b: Builder, w: Window, W: Float32Array, dims: number[], group: number): ((gy: string) => string) | null {
  if (w.s.some((v) => v !== 1) || dims.length !== 4) return null;
  const [co, cig, kh, kw] = dims as [number, number, number, number];
  const ext = w.k.map((k, i) => (k - 1) * w.d[i]! + 1);
  const pads = [...ext.map((e, i) => e - 1 - w.pb[i]!), ...ext.map((e, i) => e - 1 - w.pe[i]!)];
  if (pads.some((p) => p < 0)) return null;
  const cog = co / group;
  const ci = cig * group;
  const out = new Float32Array(W.length);
  // W'[g*cig + i][o][y][x] = W[g*cog + o][i][kh-1-y][kw-1-x]
  for (let g = 0; g < group; g++) {
    for (let o = 0; o < cog; o++) {
      for (let i = 0; i < cig; i++) {
        const src = ((g * cog + o) * cig + i) * kh * kw;
        const dst = ((g * cig + i) * cog + o) * kh * kw;
        for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) out[dst + y * kw + x] = W[src + (kh - 1 - y) * kw + (kw - 1 - x)]!;
      }
    }
  }
  const wf = b.f32(out, [ci, cog, kh, kw]);
  return (gy) => b.op('Conv', [gy, wf], { kernel_shape: [kh, kw], strides: [1, 1], dilations: w.d, pads, group });
}


// ---------------------------------------------------------------- helpers for transformer ops

const normAxis = (a: number, rank: number): number => (a < 0 ? a + rank : a);

/** Values of a constant float, double or integer tensor (a Pow exponent), or a UserError. */
function constNumbers(b: Builder, t: string, what: string, node: NodeProto): { values: number[]; dims: number[] } {
  const tp = b.constTensor(t);
  if (!tp) throw new UserError(`node '${node.name}' (${node.opType}): its ${what} depends on the data; reslens gradients needs it constant`);
  const dims = tensorDims(tp);
  if (tp.dataType === DataType.FLOAT) return { values: Array.from(tensorFloats(tp)), dims };
  if (tp.dataType === DataType.DOUBLE) {
    const raw = tp.rawData && tp.rawData.byteLength ? Array.from(new Float64Array(Uint8Array.from(tp.rawData).buffer)) : (tp.doubleData ?? []);
    return { values: raw.map(Number), dims };
  }
  if (tp.dataType === DataType.INT64 || tp.dataType === DataType.INT32) return { values: tensorInts(tp), dims };
  throw new UserError(`node '${node.name}' (${node.opType}): its ${what} has data type ${tp.dataType}, which reslens gradients does not read`);
}

/**
 * The adjoint of picking entries idx (flat) along `axis` of a tensor of static shape
 * `target`: g, shaped like target but with idx.length entries on that axis, summed back onto
 * the entries it was picked from (a repeated index receives each of its copies). A MatMul by
 * a constant 0/1 matrix [n, m]: no scatter, and the leading axes (batch included, whatever
 * its size in a stack of cotangents) ride along as -1.
 */
function scatterAlong(b: Builder, g: string, target: number[], axis: number, idx: number[]): string {
  const n = target[axis]!;
  const m = idx.length;
  const q = target.slice(axis + 1).reduce((p, d) => p * d, 1);
  const onehot = new Float32Array(n * m);
  idx.forEach((i, j) => (onehot[i * m + j] = 1));
  const g3 = b.op('Reshape', [g, b.i64([-1, m, q])]);
  const r = b.op('MatMul', [b.f32(onehot, [n, m]), g3]);
  return b.op('Reshape', [r, b.i64([-1, ...target.slice(1)])]);
}

/** A UserError for ops that would mix the images of a batch (and the lengths of a stack). */
function batchAxis(node: NodeProto, what: string): UserError {
  return new UserError(`node '${node.name}' (${node.opType}): ${what} along axis 0, the batch axis, which reslens gradients does not support`);
}

/** The entries Slice keeps along an axis of size n (ONNX clamping rules, negative steps included). */
export function sliceIndices(n: number, start: number, end: number, step: number): number[] {
  if (step === 0) throw new Error('Slice: step 0');
  let s = start < 0 ? start + n : start;
  let e = end < 0 ? end + n : end;
  if (step > 0) {
    s = Math.min(Math.max(s, 0), n);
    e = Math.min(Math.max(e, 0), n);
  } else {
    s = Math.min(Math.max(s, 0), n - 1);
    e = Math.min(Math.max(e, -1), n - 1);
  }
  const out: number[] = [];
  for (let i = s; step > 0 ? i < e : i > e; i += step) out.push(i);
  return out;
}

// ---------------------------------------------------------------- rules

const passThrough: Rule = (c) => {
  if (c.wants(0)) c.emit(0, c.gy);
};

const reshapeBack: Rule = (c) => {
  if (!c.wants(0)) return;
  const x = inp(c.node, 0);
  c.emit(0, c.b.reshapeTo(c.gy, c.b.shape(x, c.node)));
};

/** Elementwise binary ops with broadcasting: grad of each side, reduced to its shape. */
function binary(c: RuleCtx, ga: () => string, gb: () => string): void {
  const { b, node } = c;
  const yS = b.shape(out(node), node);
  if (c.wants(0)) c.emit(0, b.reduceTo(ga(), yS, b.shape(inp(node, 0), node)));
  if (c.wants(1)) c.emit(1, b.reduceTo(gb(), yS, b.shape(inp(node, 1), node)));
}

function perChannel(b: Builder, t: string, rank: number): string {
  // [C] → [C, 1, ..., 1] so it broadcasts against [N, C, spatial...].
  if (rank <= 2) return t;
  return b.op('Unsqueeze', [t, b.i64(Array.from({ length: rank - 2 }, (_, i) => i + 1))]);
}

function reduceAxes(c: RuleCtx, rank: number): number[] {
  const { b, node } = c;
  let axes: number[] | null = null;
  const ax = getAttr(node, 'axes');
  if (ax) axes = attrInts(node, 'axes', []);
  else if (inp(node, 1)) axes = b.constInts(inp(node, 1), 'axes input', node);
  if (axes && axes.length === 0) axes = null;
  if (!axes) {
    if (attrInt(node, 'noop_with_empty_axes', 0)) return [];
    return Array.from({ length: rank }, (_, i) => i);
  }
  return axes.map((a) => (a < 0 ? a + rank : a)).sort((p, q) => p - q);
}

function reduceRule(mean: boolean): Rule {
  return (c) => {
    if (!c.wants(0)) return;
    const { b, node } = c;
    const xS = b.shape(inp(node, 0), node);
    const axes = reduceAxes(c, xS.length);
    if (axes.length === 0) return c.emit(0, c.gy);
    let g = c.gy;
    if (!attrInt(node, 'keepdims', 1)) g = b.op('Unsqueeze', [g, b.i64(axes)]);
    if (mean) {
      const count = axes.reduce((p, a) => p * xS[a]!, 1);
      g = b.op('Div', [g, b.scalar(count)]);
    }
    // Expand broadcasts the kept-1 axes; the batch dim comes from g when it is not reduced.
    const target = xS.map((d, i) => (i === 0 && !axes.includes(0) ? 1 : d));
    c.emit(0, b.op('Expand', [g, b.i64(target)]));
  };
}

export const RULES: Record<string, Rule> = {
  Identity: passThrough,
  Dropout: passThrough,

  Relu: (c) => {
    if (!c.wants(0)) return;
    // Mul by a float mask: Where on a bool mask costs several times more in onnxruntime.
    c.emit(0, c.b.op('Mul', [c.gy, c.b.reluMask(out(c.node))]));
  },

  LeakyRelu: (c) => {
    if (!c.wants(0)) return;
    const { b, node } = c;
    const alpha = attrFloat(node, 'alpha', 0.01);
    const x = b.value(inp(node, 0));
    const mask = b.op('Greater', [x, b.scalar(0)]);
    c.emit(0, b.op('Where', [mask, c.gy, b.op('Mul', [c.gy, b.scalar(alpha)])]));
  },

  Clip: (c) => {
    if (!c.wants(0)) return;
    const { b, node } = c;
    const x = b.value(inp(node, 0));
    let lo: string | null = null;
    let hi: string | null = null;
    if (c.b.forwardOpset < 11) {
      if (getAttr(node, 'min')) lo = b.scalar(attrFloat(node, 'min', 0));
      if (getAttr(node, 'max')) hi = b.scalar(attrFloat(node, 'max', 0));
    } else {
      if (inp(node, 1)) lo = b.value(inp(node, 1));
      if (inp(node, 2)) hi = b.value(inp(node, 2));
    }
    let mask: string | null = null;
    if (lo) mask = b.op('Greater', [x, lo]);
    if (hi) {
      const m = b.op('Less', [x, hi]);
      mask = mask ? b.op('And', [mask, m]) : m;
    }
    c.emit(0, mask ? b.op('Where', [mask, c.gy, b.scalar(0)]) : c.gy);
  },

  Sigmoid: (c) => {
    if (!c.wants(0)) return;
    const { b } = c;
    const y = b.value(out(c.node));
    const d = b.op('Mul', [y, b.op('Sub', [b.scalar(1), y])]);
    c.emit(0, b.op('Mul', [c.gy, d]));
  },

  Tanh: (c) => {
    if (!c.wants(0)) return;
    const { b } = c;
    const y = b.value(out(c.node));
    const d = b.op('Sub', [b.scalar(1), b.op('Mul', [y, y])]);
    c.emit(0, b.op('Mul', [c.gy, d]));
  },

  Add: (c) => binary(c, () => c.gy, () => c.gy),
  Sub: (c) => binary(c, () => c.gy, () => c.b.op('Neg', [c.gy])),
  Mul: (c) => {
    const { b, node } = c;
    binary(
      c,
      () => b.op('Mul', [c.gy, b.value(inp(node, 1))]),
      () => b.op('Mul', [c.gy, b.value(inp(node, 0))]),
    );
  },
  Div: (c) => {
    const { b, node } = c;
    binary(
      c,
      () => b.op('Div', [c.gy, b.value(inp(node, 1))]),
      // d(a/b)/db = -y/b
      () => b.op('Neg', [b.op('Div', [b.op('Mul', [c.gy, b.value(out(node))]), b.value(inp(node, 1))])]),
    );
  },
  Sum: (c) => {
    const { b, node } = c;
    const yS = b.shape(out(node), node);
    (node.input ?? []).forEach((t, i) => {
      if (t && c.wants(i)) c.emit(i, b.reduceTo(c.gy, yS, b.shape(t, node)));
    });
  },

  Conv: (c) => {
    const { b, node } = c;
    if (c.wants(1) || c.wants(2)) {
      throw new UserError(`node '${node.name}' (Conv): its weights depend on the data; reslens gradients needs constant weights`);
    }
    if (!c.wants(0)) return;
    const wName = inp(node, 1);
    const wt = b.constTensor(wName);
    const wDims = wt ? tensorDims(wt) : b.shapes.get(wName);
    const kAttr = attrInts(node, 'kernel_shape', []);
    const kernel = kAttr.length ? kAttr : wDims ? wDims.slice(2) : null;
    const w = windowOf(c, kernel);
    const group = attrInt(node, 'group', 1);
    const flipped = wt && wDims ? flippedConv(b, w, tensorFloats(wt), wDims, group) : null;
    if (flipped) {
      c.emit(0, flipped(c.gy));
      return;
    }
    const attrs = transposeAttrs(w);
    attrs.group = group;
    c.emit(0, b.op('ConvTranspose', [c.gy, b.value(wName)], attrs));
  },

  BatchNormalization: (c) => {
    const { b, node } = c;
    if (attrInt(node, 'training_mode', 0)) {
      throw new UserError(`node '${node.name}' (BatchNormalization): training_mode=1 is not supported; export the model in eval mode`);
    }
    if ([1, 2, 3, 4].some((i) => c.wants(i))) {
      throw new UserError(`node '${node.name}' (BatchNormalization): its parameters depend on the data; reslens gradients needs constant parameters`);
    }
    if (!c.wants(0)) return;
    const rank = b.shape(inp(node, 0), node).length;
    const eps = attrFloat(node, 'epsilon', 1e-5);
    const std = b.op('Sqrt', [b.op('Add', [b.value(inp(node, 4)), b.scalar(eps)])]);
    const factor = perChannel(b, b.op('Div', [b.value(inp(node, 1)), std]), rank);
    c.emit(0, b.op('Mul', [c.gy, factor]));
  },

  MaxPool: (c) => {
    if (!c.wants(0)) return;
    const { b, node } = c;
    const x = b.value(inp(node, 0));
    const attrs: Record<string, AttrValue> = {};
    // Recompute the pooling with its Indices output (row-major: storage_order dropped) and
    // scatter-add the gradient onto the argmax positions of the flattened input.
    for (const a of node.attribute ?? []) {
      if (a.name === 'storage_order' || !a.name) continue;
      if (a.type === AttrType.STRING) attrs[a.name] = attrString(node, a.name, '');
      else if (a.type === AttrType.INTS) {
        const v = attrInts(node, a.name, []);
        if (v.length) attrs[a.name] = v;
      } else if (a.type === AttrType.INT) attrs[a.name] = attrInt(node, a.name, 0);
    }
    const [, idx] = b.opN('MaxPool', [x], 2, attrs);
    const shapeX = b.op('Shape', [x]);
    const flat = b.i64([-1]);
    const zeros = b.op('ConstantOfShape', [b.op('Reshape', [b.op('ReduceProd', [shapeX], { keepdims: 1 }), flat])], {
      value: floatTensor('value', [1], [0]),
    });
    b.opset = Math.max(b.opset, 16);
    const scattered = b.op(
      'ScatterElements',
      [zeros, b.op('Reshape', [idx!, flat]), b.op('Reshape', [c.gy, flat])],
      { axis: 0, reduction: 'add' },
    );
    c.emit(0, b.op('Reshape', [scattered, shapeX]));
  },

  AveragePool: (c) => {
    if (!c.wants(0)) return;
    const { b, node } = c;
    const w = windowOf(c, null);
    if (w.d.some((d) => d !== 1)) throw new UserError(`node '${node.name}' (AveragePool): dilations are not supported by reslens gradients`);
    const includePad = attrInt(node, 'count_include_pad', 0) === 1;
    // Divisor of each output position, as onnxruntime counts it: the window clipped to the
    // input (exclude pad) or to the padded input (include pad); separable per axis.
    const r = w.k.length;
    const perAxis: number[][] = [];
    for (let i = 0; i < r; i++) {
      const counts: number[] = [];
      for (let o = 0; o < w.ys[i]!; o++) {
        const start = o * w.s[i]! - w.pb[i]!;
        const end = start + w.k[i]!;
        counts.push(
          includePad ? Math.min(end, w.xs[i]! + w.pe[i]!) - start : Math.min(end, w.xs[i]!) - Math.max(start, 0),
        );
      }
      perAxis.push(counts);
    }
    const total = w.ys.reduce((p, q) => p * q, 1);
    const inv = new Float32Array(total);
    for (let f = 0; f < total; f++) {
      let rem = f;
      let cnt = 1;
      for (let i = r - 1; i >= 0; i--) {
        cnt *= perAxis[i]![rem % w.ys[i]!]!;
        rem = Math.floor(rem / w.ys[i]!);
      }
      inv[f] = 1 / Math.max(cnt, 1);
    }
    const C = b.shape(inp(node, 0), node)[1]!;
    const kSize = w.k.reduce((p, q) => p * q, 1);
    const g = b.op('Mul', [c.gy, b.f32(inv, [1, 1, ...w.ys])]);
    const ones = b.f32(new Float32Array(C * kSize).fill(1), [C, 1, ...w.k]);
    const attrs = transposeAttrs(w);
    attrs.group = C;
    c.emit(0, b.op('ConvTranspose', [g, ones], attrs));
  },

  GlobalAveragePool: (c) => {
    if (!c.wants(0)) return;
    const { b, node } = c;
    const xS = b.shape(inp(node, 0), node);
    const hw = xS.slice(2).reduce((p, q) => p * q, 1);
    const g = b.op('Div', [c.gy, b.scalar(hw)]);
    c.emit(0, b.op('Expand', [g, b.i64([1, ...xS.slice(1)])]));
  },

  ReduceMean: reduceRule(true),
  ReduceSum: reduceRule(false),

  Flatten: reshapeBack,
  Reshape: reshapeBack,
  Squeeze: reshapeBack,
  Unsqueeze: reshapeBack,

  Transpose: (c) => {
    if (!c.wants(0)) return;
    const { b, node } = c;
    const rank = b.shape(inp(node, 0), node).length;
    const perm = attrInts(node, 'perm', Array.from({ length: rank }, (_, i) => rank - 1 - i));
    const inv: number[] = Array(rank).fill(0);
    perm.forEach((p, i) => (inv[p] = i));
    c.emit(0, b.op('Transpose', [c.gy], { perm: inv }));
  },

  Gemm: (c) => {
    const { b, node } = c;
    const alpha = attrFloat(node, 'alpha', 1);
    const beta = attrFloat(node, 'beta', 1);
    const tA = attrInt(node, 'transA', 0);
    const tB = attrInt(node, 'transB', 0);
    const a = inp(node, 0);
    const bb = inp(node, 1);
    if (c.wants(0)) {
      const B = b.value(bb);
      // A' = op(A): gA' = alpha gy op(B)^T; gA = tA ? gA'^T.
      c.emit(
        0,
        tA
          ? b.op('Gemm', [B, c.gy], { alpha: { float: alpha }, transA: tB, transB: 1 })
          : b.op('Gemm', [c.gy, B], { alpha: { float: alpha }, transB: 1 - tB }),
      );
    }
    if (c.wants(1)) {
      const A = b.value(a);
      c.emit(
        1,
        tB
          ? b.op('Gemm', [c.gy, A], { alpha: { float: alpha }, transA: 1, transB: tA })
          : b.op('Gemm', [A, c.gy], { alpha: { float: alpha }, transA: 1 - tA }),
      );
    }
    if (inp(node, 2) && c.wants(2)) {
      const g = beta === 1 ? c.gy : b.op('Mul', [c.gy, b.scalar(beta)]);
      c.emit(2, b.reduceTo(g, b.shape(out(node), node), b.shape(inp(node, 2), node)));
    }
  },

  MatMul: (c) => {
    const { b, node } = c;
    const aS = b.shape(inp(node, 0), node);
    const bS = b.shape(inp(node, 1), node);
    const yS = b.shape(out(node), node);
    if (aS.length < 2 || bS.length < 2) {
      throw new UserError(`node '${node.name}' (MatMul): 1-D operands are not supported by reslens gradients`);
    }
    const swap = (t: string, rank: number): string => {
      const perm = Array.from({ length: rank }, (_, i) => i);
      [perm[rank - 1], perm[rank - 2]] = [perm[rank - 2]!, perm[rank - 1]!];
      return b.op('Transpose', [t], { perm });
    };
    if (c.wants(0)) {
      const g = b.op('MatMul', [c.gy, swap(b.value(inp(node, 1)), bS.length)]);
      c.emit(0, b.reduceTo(g, [...yS.slice(0, -1), aS[aS.length - 1]!], aS));
    }
    if (c.wants(1)) {
      const g = b.op('MatMul', [swap(b.value(inp(node, 0)), aS.length), c.gy]);
      c.emit(1, b.reduceTo(g, [...yS.slice(0, -2), bS[bS.length - 2]!, yS[yS.length - 1]!], bS));
    }
  },

  Concat: (c) => {
    const { b, node } = c;
    const yS = b.shape(out(node), node);
    let axis = attrInt(node, 'axis', 0);
    if (axis < 0) axis += yS.length;
    let off = 0;
    (node.input ?? []).forEach((t, i) => {
      const len = b.shape(t, node)[axis]!;
      if (c.wants(i)) c.emit(i, b.op('Slice', [c.gy, b.i64([off]), b.i64([off + len]), b.i64([axis])]));
      off += len;
    });
  },

  Pad: (c) => {
    if (!c.wants(0)) return;
    const { b, node } = c;
    const mode = attrString(node, 'mode', 'constant');
    if (mode !== 'constant') throw new UserError(`node '${node.name}' (Pad): mode '${mode}' is not supported by reslens gradients (constant only)`);
    const xS = b.shape(inp(node, 0), node);
    const rank = xS.length;
    const pads = b.forwardOpset < 11 ? attrInts(node, 'pads', []) : b.constInts(inp(node, 1), 'pads input', node);
    let axes = Array.from({ length: rank }, (_, i) => i);
    if (inp(node, 3)) axes = b.constInts(inp(node, 3), 'axes input', node).map((a) => (a < 0 ? a + rank : a));
    const n = axes.length;
    if (pads.length !== 2 * n) throw new UserError(`node '${node.name}' (Pad): expected ${2 * n} pads, got ${pads.length}`);
    if (pads.some((p) => p < 0)) throw new UserError(`node '${node.name}' (Pad): negative pads are not supported by reslens gradients`);
    // Only the padded axes are sliced: an unpadded batch axis keeps whatever batch the
    // gradient has (a stack of cotangents has several times the forward's).
    const padded = axes.map((a, i) => ({ a, lo: pads[i]!, hi: pads[i + n]! })).filter((p) => p.lo > 0 || p.hi > 0);
    if (!padded.length) return c.emit(0, c.gy);
    const starts = padded.map((p) => p.lo);
    const ends = padded.map((p) => p.lo + xS[p.a]!);
    c.emit(0, b.op('Slice', [c.gy, b.i64(starts), b.i64(ends), b.i64(padded.map((p) => p.a))]));
  },

  // ------------------------------------------------------------ transformer ops

  LayerNormalization: (c) => {
    const { b, node } = c;
    if (c.grads.slice(1).some(Boolean)) {
      throw new UserError(`node '${node.name}' (LayerNormalization): a gradient through its Mean or InvStdDev output is not supported by reslens gradients`);
    }
    const xS = b.shape(inp(node, 0), node);
    const yS = b.shape(out(node), node);
    const rank = xS.length;
    const axis = normAxis(attrInt(node, 'axis', -1), rank);
    const axes = Array.from({ length: rank - axis }, (_, i) => axis + i);
    // The statistics again, from the saved input: one tensor to save instead of three.
    const xc = b.op('Sub', [b.value(inp(node, 0)), b.mean(b.value(inp(node, 0)), axes, xS)]);
    const variance = b.mean(b.op('Mul', [xc, xc]), axes, xS);
    const rstd = b.op('Reciprocal', [b.op('Sqrt', [b.op('Add', [variance, b.scalar(attrFloat(node, 'epsilon', 1e-5))])])]);
    const xhat = b.op('Mul', [xc, rstd]);
    if (c.wants(0)) {
      // gx = rstd (g - mean(g) - xhat mean(g xhat)), g = gy scale, means over the normalised axes.
      const g = b.op('Mul', [c.gy, b.value(inp(node, 1))]);
      const mg = b.mean(g, axes, xS);
      const mgx = b.mean(b.op('Mul', [g, xhat]), axes, xS);
      c.emit(0, b.op('Mul', [rstd, b.op('Sub', [b.op('Sub', [g, mg]), b.op('Mul', [xhat, mgx])])]));
    }
    if (c.wants(1)) c.emit(1, b.reduceTo(b.op('Mul', [c.gy, xhat]), yS, b.shape(inp(node, 1), node)));
    if (inp(node, 2) && c.wants(2)) c.emit(2, b.reduceTo(c.gy, yS, b.shape(inp(node, 2), node)));
  },

  Softmax: (c) => {
    if (!c.wants(0)) return;
    const { b, node } = c;
    const rank = b.shape(out(node), node).length;
    // Opset 13 normalises along one axis (default -1); before, over every axis from `axis`
    // (default 1) on, the input seen as 2-D.
    const old = b.forwardOpset < 13;
    const axis = normAxis(attrInt(node, 'axis', old ? 1 : -1), rank);
    const axes = old ? Array.from({ length: rank - axis }, (_, i) => axis + i) : [axis];
    const y = b.value(out(node));
    // gx = y (gy - Σ gy y) = gy y - y Σ gy y
    const gyy = b.op('Mul', [c.gy, y]);
    c.emit(0, b.op('Sub', [gyy, b.op('Mul', [y, b.sum(gyy, axes)])]));
  },

  Erf: (c) => {
    if (!c.wants(0)) return;
    const { b, node } = c;
    const x = b.value(inp(node, 0));
    // erf'(x) = 2/√π exp(-x²)
    const d = b.op('Mul', [b.op('Exp', [b.op('Neg', [b.op('Mul', [x, x])])]), b.scalar(2 / Math.sqrt(Math.PI))]);
    c.emit(0, b.op('Mul', [c.gy, d]));
  },

  Gelu: (c) => {
    if (!c.wants(0)) return;
    const { b, node } = c;
    const x = b.value(inp(node, 0));
    const x2 = b.op('Mul', [x, x]);
    let d: string;
    if (attrString(node, 'approximate', 'none') === 'tanh') {
      // y = x/2 (1 + tanh u), u = √(2/π)(x + 0.044715 x³): y' = (1 + t)/2 + x/2 (1 - t²) u'
      const k = Math.sqrt(2 / Math.PI);
      const u = b.op('Mul', [b.op('Mul', [x, b.op('Add', [b.op('Mul', [x2, b.scalar(0.044715)]), b.scalar(1)])]), b.scalar(k)]);
      const t = b.op('Tanh', [u]);
      const du = b.op('Add', [b.op('Mul', [x2, b.scalar(3 * 0.044715 * k)]), b.scalar(k)]);
      const half = b.op('Mul', [b.op('Add', [t, b.scalar(1)]), b.scalar(0.5)]);
      const sech2 = b.op('Sub', [b.scalar(1), b.op('Mul', [t, t])]);
      d = b.op('Add', [half, b.op('Mul', [b.op('Mul', [b.op('Mul', [x, b.scalar(0.5)]), sech2]), du])]);
    } else {
      // y = x Φ(x): y' = Φ(x) + x φ(x), Φ(x) = (1 + erf(x/√2))/2, φ(x) = exp(-x²/2)/√(2π)
      const cdf = b.op('Mul', [b.op('Add', [b.op('Erf', [b.op('Mul', [x, b.scalar(Math.SQRT1_2)])]), b.scalar(1)]), b.scalar(0.5)]);
      const pdf = b.op('Mul', [b.op('Exp', [b.op('Mul', [x2, b.scalar(-0.5)])]), b.scalar(1 / Math.sqrt(2 * Math.PI))]);
      d = b.op('Add', [cdf, b.op('Mul', [x, pdf])]);
    }
    c.emit(0, b.op('Mul', [c.gy, d]));
  },

  Pow: (c) => {
    const { b, node } = c;
    if (c.wants(1)) throw new UserError(`node '${node.name}' (Pow): its exponent depends on the data; reslens gradients needs a constant exponent`);
    if (!c.wants(0)) return;
    const { values, dims } = constNumbers(b, inp(node, 1), 'exponent', node);
    const x = b.value(inp(node, 0));
    // d(x^p) = p x^(p-1); the layer norm's p = 2 is one Mul.
    let d: string;
    if (values.every((p) => p === 2)) d = b.op('Mul', [x, b.scalar(2)]);
    else if (values.every((p) => p === 1)) d = b.scalar(1);
    else d = b.op('Mul', [b.op('Pow', [x, b.f32(values.map((p) => p - 1), dims)]), b.f32(values, dims)]);
    c.emit(0, b.reduceTo(b.op('Mul', [c.gy, d]), b.shape(out(node), node), b.shape(inp(node, 0), node)));
  },

  Sqrt: (c) => {
    if (!c.wants(0)) return;
    const { b } = c;
    // (√x)' = 1 / (2 √x)
    c.emit(0, b.op('Div', [c.gy, b.op('Mul', [b.value(out(c.node)), b.scalar(2)])]));
  },

  Gather: (c) => {
    if (!c.wants(0)) return;
    const { b, node } = c;
    const xS = b.shape(inp(node, 0), node);
    const axis = normAxis(attrInt(node, 'axis', 0), xS.length);
    if (axis === 0) throw batchAxis(node, 'it gathers');
    const idx = b.constInts(inp(node, 1), 'indices input', node).map((i) => normAxis(i, xS[axis]!));
    c.emit(0, scatterAlong(b, c.gy, xS, axis, idx));
  },

  Slice: (c) => {
    if (!c.wants(0)) return;
    const { b, node } = c;
    const xS = b.shape(inp(node, 0), node);
    const rank = xS.length;
    let starts: number[];
    let ends: number[];
    let axes: number[] | null = null;
    let steps: number[] | null = null;
    if (b.forwardOpset < 10) {
      starts = attrInts(node, 'starts', []);
      ends = attrInts(node, 'ends', []);
      if (getAttr(node, 'axes')) axes = attrInts(node, 'axes', []);
    } else {
      starts = b.constInts(inp(node, 1), 'starts input', node);
      ends = b.constInts(inp(node, 2), 'ends input', node);
      if (inp(node, 3)) axes = b.constInts(inp(node, 3), 'axes input', node);
      if (inp(node, 4)) steps = b.constInts(inp(node, 4), 'steps input', node);
    }
    const ax = (axes ?? starts.map((_, i) => i)).map((a) => normAxis(a, rank));
    // Entries kept per axis; a run of consecutive ones is a Pad back, any other pattern a scatter.
    const cur = [...b.shape(out(node), node)];
    const pads = Array(2 * rank).fill(0);
    let g = c.gy;
    ax.forEach((a, i) => {
      const n = xS[a]!;
      const keep = sliceIndices(n, starts[i]!, ends[i]!, steps?.[i] ?? 1);
      const full = keep.length === n && keep.every((v, j) => v === j);
      if (full) return;
      if (a === 0) throw batchAxis(node, 'it slices');
      if (keep.length && keep.every((v, j) => v === keep[0]! + j)) {
        pads[a] = keep[0]!;
        pads[a + rank] = n - keep[0]! - keep.length;
      } else {
        cur[a] = n;
        g = scatterAlong(b, g, cur, a, keep);
      }
    });
    if (pads.some((p) => p > 0)) g = b.op('Pad', [g, b.i64(pads)]);
    c.emit(0, g);
  },

  Split: (c) => {
    if (!c.wants(0)) return;
    const { b, node } = c;
    const xS = b.shape(inp(node, 0), node);
    const axis = normAxis(attrInt(node, 'axis', 0), xS.length);
    if (axis === 0) throw batchAxis(node, 'it splits');
    const outs = node.output ?? [];
    // The parts' sizes from their static shapes: the same whether they came from the split
    // input, the attribute or num_outputs.
    const sizes = outs.map((o) => b.shape(o, node)[axis]!);
    if (c.grads.every(Boolean) && outs.length > 1) return c.emit(0, b.op('Concat', c.grads as string[], { axis }));
    // Parts without a gradient are zeros: pad the others back to full length and add them.
    const parts: string[] = [];
    let off = 0;
    outs.forEach((_, i) => {
      const gi = c.grads[i];
      if (gi) {
        const pads = Array(2 * xS.length).fill(0);
        pads[axis] = off;
        pads[axis + xS.length] = xS[axis]! - off - sizes[i]!;
        parts.push(b.op('Pad', [gi, b.i64(pads)]));
      }
      off += sizes[i]!;
    });
    c.emit(0, parts.length === 1 ? parts[0]! : b.op('Sum', parts));
  },

  Expand: (c) => {
    if (!c.wants(0)) return;
    const { b, node } = c;
    c.emit(0, b.reduceTo(c.gy, b.shape(out(node), node), b.shape(inp(node, 0), node)));
  },
};

/** Ops whose rule reads the gradients of all their outputs and runs when any of them has one. */
export const ALL_OUTPUTS = new Set(['Split']);

export const SUPPORTED_OPS = Object.keys(RULES).sort();

/** The rule for a node (only output 0 of any op is differentiable), or a UserError. */
export function ruleFor(node: NodeProto): Rule {
  const r = RULES[node.opType ?? ''];
  if (!r || (node.domain && node.domain !== 'ai.onnx')) {
    throw new UserError(
      `no backward rule for ${node.opType} (node '${node.name}'); reslens gradients supports: ${SUPPORTED_OPS.join(', ')}`,
    );
  }
  return r;
}
