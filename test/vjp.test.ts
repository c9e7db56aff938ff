/**
 * Backward rules against central finite differences of the forward graph, both run with
 * onnxruntime: for random gy and directions v, <gx, v> must match
 * (<gy, f(x + eps v)> - <gy, f(x - eps v)>) / (2 eps).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import { UserError } from '../src/errors.js';
import {
  encodeModel,
  floatTensor,
  int64Tensor,
  makeModel,
  makeNode,
  valueInfo,
  type AttrValue,
  type ModelProto,
  type NodeProto,
  type TensorProto,
} from '../src/loader/proto.js';
import { indexGraph } from '../src/surgery/graph.js';
import { buildSoftmaxCrossEntropyGrad, buildVjp, reluMaskName, withSavedOutputs, type VjpSpec } from '../src/surgery/vjp.js';
import { Random } from '../src/random.js';

// ---------------------------------------------------------------- helpers

function mulberry32(seed: number): () => number {
  const r = new Random(seed);
  return () => r.next();
}

type Rng = () => number;
function randn(rng: Rng, n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(rng(), 1e-12);
    out[i] = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng()) * scale;
  }
  return out;
}
const size = (d: number[]): number => d.reduce((p, q) => p * q, 1);

/** Values away from zero: |x| in [0.2, 1.2]. */
function awayFromZero(rng: Rng, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rng() < 0.5 ? -1 : 1) * (0.2 + rng());
  return out;
}

/** Distinct values spaced 0.05 apart, shuffled (no ties, no near-ties for max pooling). */
function distinct(rng: Rng, n: number): Float32Array {
  const v = Array.from({ length: n }, (_, i) => (i - n / 2) * 0.05);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [v[i], v[j]] = [v[j]!, v[i]!];
  }
  return Float32Array.from(v);
}

class Net {
  nodes: NodeProto[] = [];
  inits: TensorProto[] = [];
  constructor(
    readonly rng: Rng,
    readonly xDims: number[],
  ) {}
  node(op: string, inputs: string[], output: string, attrs: Record<string, AttrValue> = {}): string {
    this.nodes.push(makeNode(op, inputs, [output], attrs, `${op}_${output}`));
    return output;
  }
  w(name: string, dims: number[], scale?: number): string {
    const fanIn = size(dims.slice(1)) || 1;
    this.inits.push(floatTensor(name, dims, randn(this.rng, size(dims), scale ?? 1 / Math.sqrt(fanIn))));
    return name;
  }
  f(name: string, dims: number[], data: number[]): string {
    this.inits.push(floatTensor(name, dims, data));
    return name;
  }
  i(name: string, data: number[]): string {
    this.inits.push(int64Tensor(name, [data.length], data));
    return name;
  }
  conv(x: string, out: string, cin: number, cout: number, k: number, attrs: Record<string, AttrValue> = {}, bias = true): string {
    const group = typeof attrs.group === 'number' ? attrs.group : 1;
    const ins = [x, this.w(`${out}_W`, [cout, cin / group, k, k])];
    if (bias) ins.push(this.w(`${out}_B`, [cout], 0.1));
    return this.node('Conv', ins, out, { kernel_shape: [k, k], ...attrs });
  }
  bn(x: string, out: string, c: number): string {
    const r = this.rng;
    const scale = this.f(`${out}_s`, [c], Array.from({ length: c }, () => 0.5 + r()));
    const bias = this.f(`${out}_b`, [c], Array.from({ length: c }, () => r() - 0.5));
    const mean = this.f(`${out}_m`, [c], Array.from({ length: c }, () => r() - 0.5));
    const v = this.f(`${out}_v`, [c], Array.from({ length: c }, () => 0.5 + r()));
    return this.node('BatchNormalization', [x, scale, bias, mean, v], out, { epsilon: { float: 1e-5 } });
  }
  model(outputs: string[] = ['y'], opset = 13, inputs = ['x']): ModelProto {
    return makeModel(
      {
        nodes: this.nodes,
        inputs: inputs.map((n) => valueInfo(n, n === 'x' ? this.xDims.map((d, i) => (i === 0 ? 'N' : d)) : [])),
        outputs: outputs.map((n) => ({ name: n, type: { tensorType: { elemType: 1 } } })),
        initializers: this.inits,
      },
      opset,
    );
  }
}

type Feed = Record<string, ort.Tensor>;
const sessOpts: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: 'all', intraOpNumThreads: 1, interOpNumThreads: 1 };

async function session(m: ModelProto): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(encodeModel(m), sessOpts);
}

/** The model with every node output exposed as a graph output (all float in these tests). */
function exposeAll(m: ModelProto): ModelProto {
  const g = m.graph!;
  const have = new Set((g.output ?? []).map((o) => o.name));
  const extra = (g.node ?? [])
    .flatMap((n) => n.output ?? [])
    .filter((o) => o && !have.has(o))
    .map((name) => ({ name, type: { tensorType: { elemType: 1 } } }));
  return { ...m, graph: { ...g, output: [...(g.output ?? []), ...extra] } };
}

interface Probe {
  sess: ort.InferenceSession;
  shapes: Map<string, number[]>;
  values: Record<string, ort.Tensor>;
}

async function probe(m: ModelProto, feed: Feed): Promise<Probe> {
  const sess = await session(exposeAll(m));
  const values: Record<string, ort.Tensor> = { ...(await sess.run(feed)) };
  const shapes = new Map<string, number[]>();
  for (const [k, v] of Object.entries(values)) shapes.set(k, [...v.dims]);
  for (const [k, v] of Object.entries(feed)) {
    shapes.set(k, [...v.dims]);
    values[k] = v;
  }
  return { sess, shapes, values };
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}
const norm = (a: ArrayLike<number>): number => Math.sqrt(dot(a, a));

async function runVjp(spec: VjpSpec, m: ModelProto, p: Probe, gy: Float32Array): Promise<Float32Array> {
  const vjp = buildVjp(m, indexGraph(m.graph!), spec);
  const bsess = await session(vjp.model);
  const feeds: Feed = { grad_out: new ort.Tensor('float32', gy, p.shapes.get(spec.to)!) };
  for (const s of vjp.saved) {
    const v = p.values[s];
    assert.ok(v, `saved tensor ${s} missing from the probe`);
    feeds[s] = v;
  }
  const r = await bsess.run(feeds);
  const gx = r.grad_in!;
  assert.deepEqual([...gx.dims], p.shapes.get(spec.from), 'grad_in has the shape of from');
  return gx.data as Float32Array;
}

interface CheckOpts {
  x?: Float32Array;
  eps?: number;
  tol?: number;
  seed?: number;
  to?: string;
  cut?: VjpSpec['cut'];
  opset?: number;
}

/** Builds the VJP of y w.r.t. x and checks it against finite differences in 3 directions. */
async function check(net: Net, opts: CheckOpts = {}): Promise<{ gx: Float32Array; gy: Float32Array }> {
  const rng = mulberry32(opts.seed ?? 7);
  const to = opts.to ?? 'y';
  const m = net.model([to], opts.opset ?? 13);
  const x = opts.x ?? randn(rng, size(net.xDims));
  const xFeed = (d: Float32Array): Feed => ({ x: new ort.Tensor('float32', d, net.xDims) });
  const p = await probe(m, xFeed(x));
  const yShape = p.shapes.get(to)!;
  const gy = randn(rng, size(yShape));
  const gx = await runVjp({ from: 'x', to, shapes: p.shapes, cut: opts.cut }, m, p, gy);
  const eps = opts.eps ?? 1e-3;
  const tol = opts.tol ?? 1e-2;
  const f = async (d: Float32Array): Promise<number> => {
    const r = await p.sess.run(xFeed(d));
    return dot(gy, r[to]!.data as Float32Array);
  };
  for (let k = 0; k < 3; k++) {
    const v = randn(rng, x.length);
    const xp = x.map((xi, i) => xi + eps * v[i]!);
    const xm = x.map((xi, i) => xi - eps * v[i]!);
    const fd = ((await f(xp)) - (await f(xm))) / (2 * eps);
    const an = dot(gx, v);
    const scale = Math.max(Math.abs(an), (norm(gx) * norm(v)) / Math.sqrt(v.length), 1e-6);
    assert.ok(Math.abs(fd - an) < tol * scale, `direction ${k}: finite difference ${fd} vs vjp ${an} (scale ${scale})`);
  }
  assert.ok(norm(gx) > 0, 'gradient is not identically zero');
  return { gx, gy };
}

// ---------------------------------------------------------------- convolutions

test('Conv stride 2, pads 1, even input (8x8), with bias', async () => {
  const n = new Net(mulberry32(1), [2, 3, 8, 8]);
  n.conv('x', 'y', 3, 4, 3, { strides: [2, 2], pads: [1, 1, 1, 1] });
  await check(n);
});

test('Conv stride 2, pads 1, odd input (7x7): output_padding from the shapes', async () => {
  const n = new Net(mulberry32(2), [2, 3, 7, 7]);
  n.conv('x', 'y', 3, 4, 3, { strides: [2, 2], pads: [1, 1, 1, 1] });
  await check(n);
});

test('Conv 1x1 stride 2 without bias on odd (9x9) and even (6x6) inputs (projection shortcut)', async () => {
  for (const hw of [9, 6]) {
    const n = new Net(mulberry32(3), [2, 4, hw, hw]);
    n.conv('x', 'y', 4, 6, 1, { strides: [2, 2] }, false);
    await check(n);
  }
});

test('grouped and depthwise Conv', async () => {
  const g = new Net(mulberry32(4), [2, 4, 6, 6]);
  g.conv('x', 'y', 4, 6, 3, { group: 2, pads: [1, 1, 1, 1] });
  await check(g);
  const d = new Net(mulberry32(5), [2, 4, 7, 7]);
  d.conv('x', 'y', 4, 4, 3, { group: 4, strides: [2, 2], pads: [1, 1, 1, 1] });
  await check(d);
});

test('dilated Conv', async () => {
  const n = new Net(mulberry32(6), [1, 2, 9, 9]);
  n.conv('x', 'y', 2, 3, 3, { dilations: [2, 2], pads: [2, 1, 2, 0] });
  await check(n);
});

test('Conv with auto_pad SAME_UPPER (asymmetric pads), SAME_LOWER and VALID', async () => {
  for (const [autoPad, hw, k, s] of [
    ['SAME_UPPER', 7, 4, 2],
    ['SAME_UPPER', 8, 3, 2],
    ['SAME_LOWER', 7, 2, 1],
    ['VALID', 8, 3, 2],
  ] as const) {
    const n = new Net(mulberry32(7), [2, 2, hw, hw]);
    n.conv('x', 'y', 2, 3, k, { auto_pad: autoPad, strides: [s, s] });
    await check(n);
  }
});

test('Conv + BatchNormalization (inference form)', async () => {
  const n = new Net(mulberry32(8), [2, 3, 6, 6]);
  n.bn(n.conv('x', 'c', 3, 4, 3, { pads: [1, 1, 1, 1] }), 'y', 4);
  await check(n);
});

// ---------------------------------------------------------------- activations

test('Relu, LeakyRelu, Sigmoid, Tanh', async () => {
  const rng = mulberry32(9);
  for (const op of ['Relu', 'LeakyRelu', 'Sigmoid', 'Tanh']) {
    const n = new Net(rng, [2, 3, 4, 4]);
    n.node(op, ['x'], 'y', op === 'LeakyRelu' ? { alpha: { float: 0.1 } } : {});
    await check(n, { x: awayFromZero(rng, 96) });
  }
});

test('Clip with min/max inputs (opset 13), a missing min, and attributes (opset 10)', async () => {
  const rng = mulberry32(10);
  const x = (): Float32Array => awayFromZero(rng, 2 * 3 * 16).map((v) => v * 0.8);
  const a = new Net(rng, [2, 3, 4, 4]);
  a.node('Clip', ['x', a.f('lo', [], [-0.1]), a.f('hi', [], [0.6])], 'y');
  await check(a, { x: x().map((v) => (Math.abs(v - 0.6) < 0.05 ? v + 0.1 : v)) });
  const b = new Net(rng, [2, 3, 4, 4]);
  b.node('Clip', ['x', '', b.f('hi', [], [0.5])], 'y');
  await check(b, { x: x().map((v) => (Math.abs(v - 0.5) < 0.05 ? v + 0.1 : v)) });
  const c = new Net(rng, [2, 3, 4, 4]);
  c.node('Clip', ['x'], 'y', { min: { float: 0 }, max: { float: 0.6 } });
  await check(c, { x: x().map((v) => (Math.abs(v - 0.6) < 0.05 ? v + 0.1 : v)), opset: 10 });
});

// ---------------------------------------------------------------- elementwise

test('Add/Sub/Mul/Div with broadcasting, constants and both sides computed; Sum', async () => {
  const rng = mulberry32(11);
  // A live smaller side: x + mean(x) over space ([N,C,1,1] broadcast back).
  const a = new Net(rng, [2, 3, 4, 4]);
  a.node('Sub', [a.node('Add', ['x', a.node('GlobalAveragePool', ['x'], 'm')], 's'), a.w('k', [3, 1, 1])], 'y');
  await check(a);
  // Constant on the left of Sub, per-channel Mul, scalar Div (stochastic-depth style scaling).
  const b = new Net(rng, [2, 3, 4, 4]);
  const t = b.node('Mul', [b.w('pc', [1, 3, 1, 1]), 'x'], 't');
  b.node('Div', [b.node('Sub', [b.f('one', [], [1]), t], 'u'), b.f('p', [], [0.8])], 'y');
  await check(b);
  // Squeeze-and-excitation: x * sigmoid(gap(x)), both sides depend on x; and x / (1 + x^2).
  const c = new Net(rng, [2, 3, 4, 4]);
  const gate = c.node('Sigmoid', [c.node('GlobalAveragePool', ['x'], 'g')], 'gs');
  const se = c.node('Mul', ['x', gate], 'se');
  const den = c.node('Add', [c.node('Mul', ['x', 'x'], 'x2'), c.f('one', [], [1])], 'den');
  c.node('Sum', [se, c.node('Div', ['x', den], 'q'), 'x'], 'y');
  await check(c);
});

// ---------------------------------------------------------------- pooling

test('MaxPool 3x3 stride 2 pads 1 (ResNet stem) on even and odd inputs, and ceil_mode', async () => {
  const rng = mulberry32(12);
  for (const [hw, attrs] of [
    [8, { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] }],
    [7, { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] }],
    [7, { kernel_shape: [2, 2], strides: [2, 2], ceil_mode: 1 }],
    [6, { kernel_shape: [3, 3], strides: [1, 1], auto_pad: 'SAME_UPPER' }],
  ] as [number, Record<string, AttrValue>][]) {
    const n = new Net(rng, [2, 3, hw, hw]);
    n.node('MaxPool', ['x'], 'y', attrs);
    await check(n, { x: distinct(rng, 2 * 3 * hw * hw) });
  }
});

test('AveragePool: count_include_pad 0/1 with pads, and ResNet-D style ceil_mode', async () => {
  const rng = mulberry32(13);
  for (const [hw, attrs] of [
    [8, { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], count_include_pad: 0 }],
    [7, { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], count_include_pad: 1 }],
    [7, { kernel_shape: [2, 2], strides: [2, 2], ceil_mode: 1, count_include_pad: 0 }],
    [7, { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 0, 1, 0], ceil_mode: 1, count_include_pad: 1 }],
    // The last window overhangs the padded input: onnxruntime divides by the clipped count.
    [6, { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], ceil_mode: 1, count_include_pad: 1 }],
    [6, { kernel_shape: [2, 2], strides: [1, 1] }],
  ] as [number, Record<string, AttrValue>][]) {
    const n = new Net(rng, [2, 3, hw, hw]);
    n.node('AveragePool', ['x'], 'y', attrs);
    await check(n);
  }
});

test('head: GlobalAveragePool, Flatten, Gemm (transB 1 and 0, alpha); ReduceMean; Reshape/Squeeze/Unsqueeze; MatMul', async () => {
  const rng = mulberry32(14);
  const a = new Net(rng, [2, 4, 3, 3]);
  a.node('Gemm', [a.node('Flatten', [a.node('GlobalAveragePool', ['x'], 'p')], 'f', { axis: 1 }), a.w('fc', [5, 4]), a.w('fb', [5], 0.1)], 'y', {
    transB: 1,
  });
  await check(a);
  const b = new Net(rng, [2, 4, 3, 3]);
  const r = b.node('ReduceMean', ['x'], 'r', { axes: [2, 3], keepdims: 0 });
  b.node('Gemm', [r, b.w('fc', [4, 5])], 'y', { alpha: { float: 0.5 } });
  await check(b);
  const c = new Net(rng, [2, 4, 3, 3]);
  const r2 = c.node('ReduceMean', ['x'], 'r', { axes: [-1, -2], keepdims: 1 });
  const sq = c.node('Squeeze', [r2, c.i('ax', [2, 3])], 'sq');
  const us = c.node('Unsqueeze', [sq, c.i('ax1', [1])], 'us');
  const rs = c.node('Reshape', [us, c.i('shp', [-1, 4])], 'rs');
  c.node('MatMul', [rs, c.w('mm', [4, 3])], 'y');
  await check(c);
  const d = new Net(rng, [2, 4, 3, 3]);
  d.node('ReduceSum', ['x', d.i('ax', [1])], 'y', { keepdims: 0 });
  await check(d);
  // Gemm with transA and the constant on the left.
  const e = new Net(rng, [3, 4]);
  e.node('Gemm', ['x', e.w('m', [3, 5])], 'y', { transA: 1, alpha: { float: 2 } });
  await check(e);
  const f = new Net(rng, [3, 4]);
  f.node('Gemm', [f.w('m', [4, 5]), 'x'], 'y', { transA: 1, transB: 1 });
  await check(f);
});

test('Concat (with a constant part), Transpose, Pad, Identity, Dropout', async () => {
  const rng = mulberry32(15);
  const n = new Net(rng, [2, 2, 4, 4]);
  const a = n.conv('x', 'a', 2, 3, 3, { pads: [1, 1, 1, 1] });
  const b = n.node('Identity', [n.node('Dropout', ['x'], 'dr')], 'b');
  const cat = n.node('Concat', [a, n.w('k', [2, 1, 4, 4]), b], 'cat', { axis: 1 });
  const tr = n.node('Transpose', [cat], 'tr', { perm: [0, 2, 3, 1] });
  n.node('Pad', [tr, n.i('pads', [0, 1, 0, 0, 0, 2, 1, 0])], 'y', { mode: 'constant' });
  await check(n);
});

test('Add of x with itself and multi-use tensors sum their gradients', async () => {
  const n = new Net(mulberry32(16), [2, 2, 4, 4]);
  const c = n.conv('x', 'c', 2, 2, 3, { pads: [1, 1, 1, 1] });
  n.node('Add', [n.node('Add', ['x', 'x'], 'xx'), n.node('Mul', [c, c], 'cc')], 'y');
  await check(n);
});

// ---------------------------------------------------------------- residual block

function residualBlock(rng: Rng): Net {
  const n = new Net(rng, [2, 4, 7, 7]);
  const r1 = n.node('Relu', [n.bn(n.conv('x', 'c1', 4, 6, 3, { strides: [2, 2], pads: [1, 1, 1, 1] }, false), 'b1', 6)], 'r1');
  const f = n.bn(n.conv(r1, 'c2', 6, 6, 3, { pads: [1, 1, 1, 1] }, false), 'b2', 6);
  const s = n.bn(n.conv('x', 'cs', 4, 6, 1, { strides: [2, 2] }, false), 'bs', 6);
  n.node('Relu', [n.node('Add', [f, s], 'add')], 'y');
  return n;
}

test('residual block: full VJP matches finite differences and equals residual part + shortcut part', async () => {
  const n = residualBlock(mulberry32(17));
  const { gy } = await check(n);
  const m = n.model();
  const p = await probe(m, { x: new ort.Tensor('float32', randn(mulberry32(18), size(n.xDims)), n.xDims) });
  const spec = (cut?: VjpSpec['cut']): VjpSpec => ({ from: 'x', to: 'y', shapes: p.shapes, cut });
  const full = await runVjp(spec(), m, p, gy);
  const residual = await runVjp(spec([{ node: 'Add_add', input: 1 }]), m, p, gy);
  const shortcut = await runVjp(spec([{ node: 'Add_add', input: 0 }]), m, p, gy);
  const sum = residual.map((v, i) => v + shortcut[i]!);
  const diff = sum.map((v, i) => v - full[i]!);
  assert.ok(norm(diff) <= 1e-5 * norm(full), `|res + short - full| = ${norm(diff)} vs |full| = ${norm(full)}`);
  assert.ok(norm(residual) > 0.05 * norm(full) && norm(shortcut) > 0.05 * norm(full), 'both parts carry gradient');
  // The residual part alone does not read the shortcut's tensors.
  const vjpRes = buildVjp(m, indexGraph(m.graph!), spec([{ node: 'Add_add', input: 1 }]));
  assert.ok(!vjpRes.model.graph!.initializer!.some((t) => t.name === 'cs_W'), 'shortcut weights absent from the residual part');
  // Cutting both sides leaves a zero gradient of x's shape.
  const none = await runVjp(spec([{ node: 'Add_add', input: 0 }, { node: 'Add_add', input: 1 }]), m, p, gy);
  assert.equal(norm(none), 0);
});

test('ReLU masks fed from the forward (reluMasks) give the same gradient as masks computed in the backward', async () => {
  const rng = mulberry32(23);
  const n = new Net(rng, [2, 3, 5, 5]);
  const r1 = n.node('Relu', [n.bn(n.conv('x', 'c1', 3, 3, 3, { pads: [1, 1, 1, 1] }), 'b1', 3)], 'r1');
  const s = n.node('Add', [n.conv(r1, 'c2', 3, 3, 3, { pads: [1, 1, 1, 1] }), 'x'], 's');
  n.node('Relu', [s], 'y');
  const m = n.model();
  const x = new ort.Tensor('float32', randn(rng, 150), [2, 3, 5, 5]);
  const p = await probe(m, { x });
  const gy = randn(rng, 150);
  const ref = await runVjp({ from: 'x', to: 'y', shapes: p.shapes }, m, p, gy);
  const vjp = buildVjp(m, indexGraph(m.graph!), { from: 'x', to: 'y', shapes: p.shapes, reluMasks: true });
  assert.deepEqual([...vjp.masks.values()].sort(), ['r1', 'y']);
  assert.ok(vjp.saved.includes(reluMaskName('y')) && !vjp.model.graph!.node!.some((nd) => nd.opType === 'Greater'), 'the masks are inputs, not recomputed');
  const fwd = await (await session(withSavedOutputs(m, vjp.saved, vjp.masks))).run({ x });
  const mask = fwd[reluMaskName('y')]!.data as Float32Array;
  const yv = p.values.y!.data as Float32Array;
  assert.ok(mask.every((v, i) => v === (yv[i]! > 0 ? 1 : 0)), 'the mask is 1 exactly where the ReLU output is positive');
  const feeds: Feed = { grad_out: new ort.Tensor('float32', gy, [2, 3, 5, 5]) };
  for (const t of vjp.saved) feeds[t] = t === 'x' ? x : fwd[t]!;
  const gx = (await (await session(vjp.model)).run(feeds)).grad_in!.data as Float32Array;
  for (let i = 0; i < gx.length; i++) assert.ok(Math.abs(gx[i]! - ref[i]!) <= 1e-6 * (1 + Math.abs(ref[i]!)), `element ${i}: ${gx[i]} vs ${ref[i]}`);
});

test('a VJP built for one batch size runs on another (Conv, BN, Relu, MaxPool, GAP, Flatten, Gemm)', async () => {
  const rng = mulberry32(19);
  const n = new Net(rng, [2, 2, 6, 6]);
  const c = n.node('Relu', [n.bn(n.conv('x', 'c', 2, 3, 3, { strides: [2, 2], pads: [1, 1, 1, 1] }), 'b', 3)], 'r');
  const mp = n.node('MaxPool', [c], 'mp', { kernel_shape: [2, 2], strides: [1, 1] });
  const fl = n.node('Flatten', [n.node('GlobalAveragePool', [mp], 'g')], 'fl');
  n.node('Gemm', [fl, n.w('fc', [5, 3])], 'y', { transB: 1 });
  const m = n.model();
  const p2 = await probe(m, { x: new ort.Tensor('float32', randn(rng, 2 * 72), [2, 2, 6, 6]) });
  const p3 = await probe(m, { x: new ort.Tensor('float32', randn(rng, 3 * 72), [3, 2, 6, 6]) });
  const gy = randn(rng, 15);
  const vjp = buildVjp(m, indexGraph(m.graph!), { from: 'x', to: 'y', shapes: p2.shapes });
  const s = await session(vjp.model);
  const feeds: Feed = { grad_out: new ort.Tensor('float32', gy, [3, 5]) };
  for (const t of vjp.saved) feeds[t] = p3.values[t]!;
  const gx = (await s.run(feeds)).grad_in!;
  assert.deepEqual([...gx.dims], [3, 2, 6, 6]);
  // Same numbers as a VJP built for batch 3.
  const ref = await runVjp({ from: 'x', to: 'y', shapes: p3.shapes }, m, p3, gy);
  const d = (gx.data as Float32Array).map((v, i) => v - ref[i]!);
  assert.ok(norm(d) <= 1e-6 * norm(ref));
});

// ---------------------------------------------------------------- loss and errors

test('softmax cross-entropy gradient matches finite differences of the loss', async () => {
  const rng = mulberry32(20);
  const N = 4;
  const K = 5;
  const s = await session(buildSoftmaxCrossEntropyGrad(K));
  const logits = randn(rng, N * K, 2);
  const labels = new BigInt64Array([0n, 3n, 4n, 1n]);
  const run = async (l: Float32Array) =>
    s.run({ logits: new ort.Tensor('float32', l, [N, K]), labels: new ort.Tensor('int64', labels, [N]) });
  const r = await run(logits);
  const g = r.grad_logits!.data as Float32Array;
  assert.deepEqual([...r.grad_logits!.dims], [N, K]);
  assert.deepEqual([...r.loss!.dims], []);
  // Reference loss in double precision.
  let ref = 0;
  for (let i = 0; i < N; i++) {
    const row = Array.from(logits.slice(i * K, i * K + K));
    const mx = Math.max(...row);
    const lse = mx + Math.log(row.reduce((a, v) => a + Math.exp(v - mx), 0));
    ref += lse - row[Number(labels[i])]!;
  }
  assert.ok(Math.abs((r.loss!.data as Float32Array)[0]! - ref / N) < 1e-5);
  const eps = 1e-2;
  for (let k = 0; k < 3; k++) {
    const v = randn(rng, N * K);
    const lp = (await run(logits.map((x, i) => x + eps * v[i]!))).loss!.data as Float32Array;
    const lm = (await run(logits.map((x, i) => x - eps * v[i]!))).loss!.data as Float32Array;
    const fd = (lp[0]! - lm[0]!) / (2 * eps);
    const an = dot(g, v);
    assert.ok(Math.abs(fd - an) < 1e-2 * Math.max(Math.abs(an), (norm(g) * norm(v)) / Math.sqrt(v.length)), `${fd} vs ${an}`);
  }
});

test('an op without a backward rule is a UserError naming the op and the node', async () => {
  const n = new Net(mulberry32(21), [2, 3]);
  n.node('Relu', [n.node('Sin', ['x'], 's')], 'y');
  const m = n.model();
  const shapes = new Map([
    ['x', [2, 3]],
    ['s', [2, 3]],
    ['y', [2, 3]],
  ]);
  assert.throws(
    () => buildVjp(m, indexGraph(m.graph!), { from: 'x', to: 'y', shapes }),
    (e: unknown) => e instanceof UserError && /no backward rule for Sin \(node 'Sin_s'\)/.test(e.message) && /supports: .*Conv/.test(e.message),
  );
  // A cut that keeps the gradient away from Sin builds fine (zero gradient).
  const ok = buildVjp(m, indexGraph(m.graph!), { from: 'x', to: 'y', shapes, cut: [{ node: 'Relu_y', input: 0 }] });
  assert.deepEqual(ok.saved, []);
  // `to` not depending on `from` is a UserError too.
  assert.throws(() => buildVjp(m, indexGraph(m.graph!), { from: 'y', to: 'x', shapes }), UserError);
});
