/**
 * Static shape inference for the ops residual networks are made of, so that inspecting a
 * 100 MB model needs no onnxruntime session (which would copy and optimise every weight).
 * Returns null when an op is not covered; callers then probe shapes with a real run.
 */
import { attrInt, attrInts, attrString, tensorDims, tensorInts, type NodeProto } from '../loader/proto.js';
import type { GraphIndex } from './graph.js';

type Shape = number[];

function broadcast(a: Shape, b: Shape): Shape {
  const n = Math.max(a.length, b.length);
  const out: Shape = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    out.push(x === 1 ? y : x);
  }
  return out;
}

function poolOut(node: NodeProto, x: Shape, kernel: number[], channelsOut: number): Shape | null {
  const sp = x.length - 2;
  const strides = attrInts(node, 'strides', Array(sp).fill(1));
  const dil = attrInts(node, 'dilations', Array(sp).fill(1));
  const autoPad = attrString(node, 'auto_pad', 'NOTSET');
  const pads = attrInts(node, 'pads', Array(2 * sp).fill(0));
  const ceil = attrInt(node, 'ceil_mode', 0) === 1;
  const out: Shape = [x[0]!, channelsOut];
  for (let i = 0; i < sp; i++) {
    const inp = x[2 + i]!;
    const k = (kernel[i]! - 1) * dil[i]! + 1;
    if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') out.push(Math.ceil(inp / strides[i]!));
    else {
      const p = autoPad === 'VALID' ? 0 : pads[i]! + pads[i + sp]!;
      const v = (inp + p - k) / strides[i]! + 1;
      out.push(ceil ? Math.ceil(v) : Math.floor(v));
    }
  }
  return out;
}

function constValue(g: GraphIndex, name: string): number[] | null {
  const init = g.initializers.get(name);
  if (init) return tensorInts(init);
  const p = g.producer.get(name);
  if (p !== undefined && g.nodes[p]!.opType === 'Constant') {
    const t = g.nodes[p]!.attribute?.find((a) => a.name === 'value')?.t;
    if (t) return tensorInts(t);
  }
  return null;
}

/** Shapes of every computed tensor for an input of `inputShape` (batch included), or null. */
export function inferShapes(g: GraphIndex, inputShape: Shape): Map<string, Shape> | null {
  const shapes = new Map<string, Shape>();
  shapes.set(g.inputs[0]!, inputShape);
  for (const [name, t] of g.initializers) shapes.set(name, tensorDims(t));
  for (const node of g.nodes) {
    const outs = node.output ?? [];
    if (!outs.some((o) => g.computed.has(o))) {
      if (node.opType === 'Constant') {
        const t = node.attribute?.find((a) => a.name === 'value')?.t;
        if (t) shapes.set(outs[0]!, tensorDims(t));
      }
      continue;
    }
    const ins = (node.input ?? []).map((i) => (i ? shapes.get(i) : undefined));
    const x = ins[0];
    if (!x) return null;
    let y: Shape | null = null;
    switch (node.opType) {
      case 'Relu': case 'Clip': case 'LeakyRelu': case 'Sigmoid': case 'Tanh': case 'HardSwish': case 'HardSigmoid':
      case 'Identity': case 'Dropout': case 'BatchNormalization': case 'Softmax': case 'LogSoftmax': case 'Elu': case 'Selu': case 'PRelu':
        y = x;
        break;
      case 'Add': case 'Sub': case 'Mul': case 'Div': case 'Sum': case 'Max': case 'Min':
        y = ins.reduce<Shape>((a, b) => broadcast(a, b ?? []), x);
        break;
      case 'Conv': {
        const w = ins[1];
        if (!w) return null;
        y = poolOut(node, x, attrInts(node, 'kernel_shape', w.slice(2)), w[0]!);
        break;
      }
      case 'MaxPool': case 'AveragePool':
        y = poolOut(node, x, attrInts(node, 'kernel_shape', []), x[1]!);
        break;
      case 'GlobalAveragePool': case 'GlobalMaxPool':
        y = [x[0]!, x[1]!, ...x.slice(2).map(() => 1)];
        break;
      case 'Flatten': {
        let axis = attrInt(node, 'axis', 1);
        if (axis < 0) axis += x.length;
        y = [x.slice(0, axis).reduce((a, b) => a * b, 1), x.slice(axis).reduce((a, b) => a * b, 1)];
        break;
      }
      case 'Reshape': {
        const target = constValue(g, node.input![1]!);
        if (!target) return null;
        const total = x.reduce((a, b) => a * b, 1);
        const dims = target.map((d, i) => (d === 0 ? x[i]! : d));
        const known = dims.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
        y = dims.map((d) => (d === -1 ? total / known : d));
        break;
      }
      case 'Gemm': {
        const b = ins[1];
        if (!b) return null;
        const transA = attrInt(node, 'transA', 0);
        const transB = attrInt(node, 'transB', 0);
        y = [transA ? x[1]! : x[0]!, transB ? b[0]! : b[1]!];
        break;
      }
      case 'MatMul': {
        const b = ins[1];
        if (!b || x.length < 2 || b.length < 2) return null;
        y = [...x.slice(0, -1), b[b.length - 1]!];
        break;
      }
      case 'Concat': {
        let axis = attrInt(node, 'axis', 0);
        if (axis < 0) axis += x.length;
        if (ins.some((s) => !s)) return null;
        y = x.slice();
        y[axis] = ins.reduce((a, s) => a + s![axis]!, 0);
        break;
      }
      case 'ReduceMean': case 'ReduceSum': case 'ReduceMax': {
        const axes = (node.input?.[1] ? constValue(g, node.input[1]) : attrInts(node, 'axes', [])) ?? [];
        const keep = attrInt(node, 'keepdims', 1) === 1;
        const all = axes.length ? axes.map((a) => (a < 0 ? a + x.length : a)) : x.map((_, i) => i);
        y = keep ? x.map((d, i) => (all.includes(i) ? 1 : d)) : x.filter((_, i) => !all.includes(i));
        break;
      }
      case 'Squeeze': case 'Unsqueeze': {
        const axes = (node.input?.[1] ? constValue(g, node.input[1]) : attrInts(node, 'axes', [])) ?? [];
        if (node.opType === 'Squeeze') {
          const all = axes.length ? axes.map((a) => (a < 0 ? a + x.length : a)) : x.map((d, i) => (d === 1 ? i : -1));
          y = x.filter((_, i) => !all.includes(i));
        } else {
          const rank = x.length + axes.length;
          const norm = axes.map((a) => (a < 0 ? a + rank : a));
          y = [];
          let j = 0;
          for (let i = 0; i < rank; i++) y.push(norm.includes(i) ? 1 : x[j++]!);
        }
        break;
      }
      case 'Transpose': {
        const perm = attrInts(node, 'perm', x.map((_, i) => x.length - 1 - i));
        y = perm.map((p) => x[p]!);
        break;
      }
      case 'Pad': {
        const pads = node.input?.[1] ? constValue(g, node.input[1]) : attrInts(node, 'pads', []);
        if (!pads || pads.length !== 2 * x.length) return null;
        y = x.map((d, i) => d + pads[i]! + pads[i + x.length]!);
        break;
      }
      default:
        return null;
    }
    if (!y || y.some((d) => !Number.isInteger(d) || d < 0)) return null;
    shapes.set(outs[0]!, y);
  }
  return shapes;
}
