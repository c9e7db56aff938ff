/**
 * A small pre-norm transformer as an ONNX graph written in the tests: tokens from the image
 * rows, layers of x + attention(LN(x)) and x + mlp(LN(x)), mean over tokens, a linear head.
 * Seeded random weights, so it also runs in onnxruntime.
 */
import { floatTensor, int64Tensor, type AttrValue, makeModel, makeNode, valueInfo, type ModelProto, type NodeProto, type TensorProto } from '../../src/loader/proto.js';
import { Random } from '../../src/random.js';

export interface TransformerSpec {
  /** Sublayers in order; default two layers of attention then MLP. */
  sublayers?: ('attention' | 'mlp' | 'gated')[];
  /** Tokens (image rows) and width (image columns). */
  size?: number;
  /** LayerNormalization as one op (opset 17) or decomposed (ReduceMean, Sub, Pow, Sqrt, Div). */
  layerNorm?: 'op' | 'decomposed';
  classes?: number;
  seed?: number;
}

export function buildTransformer(spec: TransformerSpec = {}): ModelProto {
  const rng = new Random(spec.seed ?? 3);
  const d = spec.size ?? 4;
  const nodes: NodeProto[] = [];
  const inits: TensorProto[] = [];
  let uid = 0;
  const name = (p: string) => `${p}_${uid++}`;
  const konst = (dims: number[], f: () => number) => {
    const t = floatTensor(name('c'), dims, Array.from({ length: dims.reduce((a, b) => a * b, 1) }, f));
    inits.push(t);
    return t.name!;
  };
  const op = (type: string, ins: string[], attrs: Record<string, AttrValue> = {}) => {
    const y = name(type.toLowerCase());
    nodes.push(makeNode(type, ins, [y], attrs, name(type)));
    return y;
  };
  const linear = (x: string, cin: number, cout: number) => op('Add', [op('MatMul', [x, konst([cin, cout], () => rng.normal() / Math.sqrt(cin))]), konst([cout], () => 0.1 * rng.normal())]);
  const layerNorm = (x: string) => {
    const gamma = konst([d], () => 1 + 0.1 * rng.normal());
    const beta = konst([d], () => 0.1 * rng.normal());
    if (spec.layerNorm !== 'decomposed') return op('LayerNormalization', [x, gamma, beta], { axis: -1, epsilon: { float: 1e-5 } });
    const mean = op('ReduceMean', [x], { axes: [-1], keepdims: 1 });
    const c = op('Sub', [x, mean]);
    const v = op('ReduceMean', [op('Pow', [c, konst([], () => 2)])], { axes: [-1], keepdims: 1 });
    const n = op('Div', [c, op('Sqrt', [op('Add', [v, konst([], () => 1e-5)])])]);
    return op('Add', [op('Mul', [n, gamma]), beta]);
  };
  const shape = (dims: number[]) => {
    const t = int64Tensor(name('shape'), [dims.length], dims);
    inits.push(t);
    return t.name!;
  };

  let x = op('Reshape', ['input', shape([-1, d, d])]);
  for (const kind of spec.sublayers ?? ['attention', 'mlp', 'attention', 'mlp']) {
    const h = layerNorm(x);
    let f: string;
    if (kind === 'attention') {
      const q = linear(h, d, d);
      const k = linear(h, d, d);
      const v = linear(h, d, d);
      const scores = op('Mul', [op('MatMul', [q, op('Transpose', [k], { perm: [0, 2, 1] })]), konst([], () => 1 / Math.sqrt(d))]);
      f = linear(op('MatMul', [op('Softmax', [scores], { axis: -1 }), v]), d, d);
    } else if (kind === 'mlp') {
      const u = linear(h, d, 2 * d);
      const gelu = op('Mul', [op('Mul', [u, op('Add', [op('Erf', [op('Div', [u, konst([], () => Math.SQRT2)])]), konst([], () => 1)])]), konst([], () => 0.5)]);
      f = linear(gelu, 2 * d, d);
    } else {
      // A softmax over a projection of one token's features (a gate), not over queries times keys.
      f = op('Mul', [h, op('Softmax', [linear(h, d, d)], { axis: -1 })]);
    }
    x = op('Add', [x, f]);
  }
  const pooled = op('ReduceMean', [layerNorm(x)], { axes: [1], keepdims: 0 });
  const k = spec.classes ?? 10;
  nodes.push(makeNode('Gemm', [pooled, konst([k, d], () => rng.normal() / Math.sqrt(d)), konst([k], () => 0)], ['logits'], { transB: 1 }, name('Gemm')));
  const model = makeModel({ nodes, inputs: [valueInfo('input', ['N', 1, d, d])], outputs: [valueInfo('logits', ['N', k])], initializers: inits }, spec.layerNorm === 'decomposed' ? 14 : 17);
  model.irVersion = 8;
  return model;
}
