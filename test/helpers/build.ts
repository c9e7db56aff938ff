/**
 * Small ONNX graphs written in the tests themselves: residual blocks of every kind the
 * detector must handle, with seeded random weights so they also run in onnxruntime.
 */
import { floatTensor, int64Tensor, makeModel, makeNode, valueInfo, type ModelProto, type NodeProto, type TensorProto } from '../../src/loader/proto.js';
import { Random } from '../../src/random.js';

export interface BlockSpec {
  cout: number;
  stride?: number;
  /** 'post' = ReLU after the Add (He 2015); 'pre' = BN-ReLU before each conv, nothing after (He 2016); 'none' = MobileNetV2-style. */
  act?: 'post' | 'pre' | 'none';
  /** Force a projection shortcut even when shapes match. */
  projection?: boolean;
  bottleneck?: boolean;
  group?: number;
  /** BatchNormalization nodes (false: folded into the conv as a bias). */
  bn?: boolean;
  /** Put Identity and Dropout nodes in the branch. */
  noise?: boolean;
  /** Scale the residual branch by this constant (stochastic depth at test time). */
  scale?: number;
  /** Non-residual layer (glue) after this block, as in MobileNetV2. */
  glueAfter?: boolean;
  /** No shortcut addition at all (a plain-net layer pair). */
  plain?: boolean;
}

export interface NetSpec {
  inChannels?: number;
  size?: number;
  stemChannels?: number;
  blocks: BlockSpec[];
  classes?: number;
  head?: 'flatten' | 'reshape';
  seed?: number;
}

export function buildNet(spec: NetSpec): ModelProto {
  const rng = new Random(spec.seed ?? 1);
  const nodes: NodeProto[] = [];
  const inits: TensorProto[] = [];
  let uid = 0;
  const name = (p: string) => `${p}_${uid++}`;
  const weight = (dims: number[], scale: number) => {
    const n = dims.reduce((a, b) => a * b, 1);
    const t = floatTensor(name('w'), dims, Array.from({ length: n }, () => rng.normal() * scale));
    inits.push(t);
    return t.name!;
  };
  const konst = (dims: number[], f: () => number) => {
    const n = dims.reduce((a, b) => a * b, 1);
    const t = floatTensor(name('c'), dims, Array.from({ length: n }, f));
    inits.push(t);
    return t.name!;
  };
  const conv = (x: string, cin: number, cout: number, k: number, stride: number, group = 1, bias = false) => {
    const y = name('conv');
    const ins = [x, weight([cout, cin / group, k, k], Math.sqrt(2 / ((cin / group) * k * k)))];
    if (bias) ins.push(konst([cout], () => rng.normal() * 0.1));
    const p = (k - 1) / 2;
    nodes.push(makeNode('Conv', ins, [y], { kernel_shape: [k, k], strides: [stride, stride], pads: [p, p, p, p], group }, name('Conv')));
    return y;
  };
  const bnorm = (x: string, c: number) => {
    const y = name('bn');
    nodes.push(makeNode('BatchNormalization', [x, konst([c], () => 1 + 0.1 * rng.normal()), konst([c], () => 0.1 * rng.normal()),
      konst([c], () => 0.1 * rng.normal()), konst([c], () => 1 + 0.2 * rng.next())], [y], { epsilon: { float: 1e-5 } }, name('BN')));
    return y;
  };
  const relu = (x: string) => {
    const y = name('relu');
    nodes.push(makeNode('Relu', [x], [y], {}, name('Relu')));
    return y;
  };
  const cbr = (x: string, cin: number, cout: number, k: number, stride: number, o: BlockSpec, act: boolean, group = 1) => {
    let y = conv(x, cin, cout, k, stride, group, o.bn === false);
    if (o.bn !== false) y = bnorm(y, cout);
    return act ? relu(y) : y;
  };

  const c0 = spec.inChannels ?? 1;
  let c = spec.stemChannels ?? 4;
  let x = relu(conv('input', c0, c, 3, 1, 1, true));
  for (const b of spec.blocks) {
    const stride = b.stride ?? 1;
    const act = b.act ?? 'post';
    const cin = c;
    const cout = b.cout;
    let f: string;
    const xin = act === 'pre' ? relu(bnorm(x, cin)) : x;
    if (b.bottleneck) {
      const mid = Math.max(2, cout / 2);
      f = cbr(xin, cin, mid, 1, 1, b, true);
      f = cbr(f, mid, mid, 3, stride, b, true, b.group ?? 1);
      f = cbr(f, mid, cout, 1, 1, b, false);
    } else if (act === 'pre') {
      f = conv(xin, cin, cout, 3, stride);
      f = conv(relu(bnorm(f, cout)), cout, cout, 3, 1);
    } else {
      f = cbr(x, cin, cout, 3, stride, b, true, b.group ?? 1);
      if (b.noise) {
        const i1 = name('id');
        nodes.push(makeNode('Identity', [f], [i1], {}, name('Identity')));
        const d1 = name('drop');
        nodes.push(makeNode('Dropout', [i1], [d1], {}, name('Dropout')));
        f = d1;
      }
      f = cbr(f, cout, cout, 3, 1, b, false, b.group ?? 1);
    }
    if (b.scale !== undefined) {
      const y = name('scaled');
      nodes.push(makeNode('Mul', [f, konst([], () => b.scale!)], [y], {}, name('Mul')));
      f = y;
    }
    if (b.plain) {
      x = act === 'post' ? relu(f) : f;
    } else {
      let s = x;
      if (b.projection || stride !== 1 || cin !== cout) s = act === 'pre' ? conv(xin, cin, cout, 1, stride) : cbr(x, cin, cout, 1, stride, b, false);
      const sum = name('add');
      nodes.push(makeNode('Add', [s, f], [sum], {}, name('Add')));
      x = act === 'post' ? relu(sum) : sum;
    }
    c = cout;
    if (b.glueAfter) x = relu(conv(x, c, c, 1, 1, 1, true));
  }
  const pooled = name('gap');
  nodes.push(makeNode('GlobalAveragePool', [x], [pooled], {}, name('GAP')));
  const flat = name('flat');
  if (spec.head === 'reshape') nodes.push(makeNode('Reshape', [pooled, (inits.push(int64Tensor(name('shape'), [2], [0, -1])), inits[inits.length - 1]!.name!)], [flat], {}, name('Reshape')));
  else nodes.push(makeNode('Flatten', [pooled], [flat], { axis: 1 }, name('Flatten')));
  const k = spec.classes ?? 10;
  nodes.push(makeNode('Gemm', [flat, weight([k, c], 1 / Math.sqrt(c)), konst([k], () => 0)], ['logits'], { transB: 1 }, name('Gemm')));
  const size = spec.size ?? 8;
  return makeModel({ nodes, inputs: [valueInfo('input', ['N', c0, size, size])], outputs: [valueInfo('logits', ['N', k])], initializers: inits });
}

/** Seeded input batch. */
export function randomInput(n: number, c: number, size: number, seed = 7): Float32Array {
  const r = new Random(seed);
  return Float32Array.from({ length: n * c * size * size }, () => r.normal());
}
