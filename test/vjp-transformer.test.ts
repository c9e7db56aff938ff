/**
 * Backward rules of the ops a vision transformer adds to a ResNet's (layer norm, attention,
 * GELU, the reshaping ops), each on one small graph against central finite differences
 * (test/helpers/vjp-check.ts, the tolerances of test/vjp.test.ts), in float64 where
 * onnxruntime has double kernels for every op of the graph.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UserError } from '../src/errors.js';
import type { AttrValue } from '../src/loader/proto.js';
import { indexGraph } from '../src/surgery/graph.js';
import { sliceIndices } from '../src/surgery/vjp-rules.js';
import { buildVjp } from '../src/surgery/vjp.js';
import { awayFromZero, check, mulberry32, Net, type Rng } from './helpers/vjp-check.js';

const f64 = true;
/** Past any end (PyTorch writes END, which a Number cannot hold exactly). */
const END = 2 ** 62;

/** x·W with W [d, e]: a data tensor that is not x itself. */
function proj(n: Net, x: string, name: string, d: number, e: number): string {
  return n.node('MatMul', [x, n.w(`${name}_W`, [d, e])], name);
}

test('LayerNormalization (opset 17): last axis with scale and bias, two axes, no bias, epsilon, scale and bias from the data', async () => {
  const rng = mulberry32(31);
  const a = new Net(rng, [2, 3, 8]);
  a.node('LayerNormalization', ['x', a.w('s', [8], 1), a.w('b', [8], 0.1)], 'y', { axis: -1, epsilon: { float: 1e-5 } });
  await check(a, { opset: 17, f64 });
  // axis 1 of [N, 3, 4]: the statistics over the last two axes, a [3, 4] scale.
  const b = new Net(rng, [2, 3, 4]);
  b.node('LayerNormalization', ['x', b.w('s', [3, 4], 1)], 'y', { axis: 1, epsilon: { float: 0.5 } });
  await check(b, { opset: 17, f64 });
  // A broadcast scale [1, 4] over axes [-2, -1], inside a residual sublayer (x + f(LN(x))).
  const c = new Net(rng, [2, 3, 4]);
  const ln = c.node('LayerNormalization', ['x', c.w('s', [1, 4], 1), c.w('b', [4], 0.1)], 'ln', { axis: -2 });
  c.node('Add', ['x', proj(c, ln, 'f', 4, 4)], 'y');
  await check(c, { opset: 17, f64 });
  // Scale and bias computed from the data too (means over the batch and tokens, [4]).
  const d = new Net(rng, [2, 3, 4]);
  const mu = d.node('ReduceMean', ['x'], 'mu', { axes: [0, 1], keepdims: 0 });
  d.node('LayerNormalization', ['x', d.node('Add', [mu, d.f('one', [], [1])], 's'), d.node('Mul', [mu, mu], 'b')], 'y', { axis: -1 });
  await check(d, { opset: 17, f64 });
});

test('LayerNorm decomposed (ReduceMean axes as attribute at opset 14, as input at 18; Sub, Pow 2, Sqrt, Div, Add of epsilon)', async () => {
  for (const opset of [14, 18]) {
    const n = new Net(mulberry32(32), [2, 3, 6]);
    const mean = (t: string, out: string) => (opset >= 18 ? n.node('ReduceMean', [t, n.i(`${out}_ax`, [-1])], out) : n.node('ReduceMean', [t], out, { axes: [-1] }));
    const c = n.node('Sub', ['x', mean('x', 'mu')], 'c');
    const v = mean(n.node('Pow', [c, n.f('two', [], [2])], 'sq'), 'var');
    const d = n.node('Div', [c, n.node('Sqrt', [n.node('Add', [v, n.f('eps', [], [1e-5])], 've')], 'sd')], 'd');
    n.node('Add', [n.node('Mul', [d, n.w('g', [6], 1)], 'dg'), n.w('b', [6], 0.1)], 'y');
    await check(n, { opset, f64 });
  }
});

test('Pow with other constant exponents (3, a per-element [4] exponent, an int64 exponent) and Sqrt', async () => {
  const rng = mulberry32(33);
  const a = new Net(rng, [2, 3, 4]);
  a.node('Pow', ['x', a.f('p', [], [3])], 'y');
  await check(a, { f64 });
  const b = new Net(rng, [2, 3, 4]);
  const pos = b.node('Add', [b.node('Mul', ['x', 'x'], 'xx'), b.f('one', [], [0.5])], 'pos');
  b.node('Pow', [pos, b.f('p', [4], [0.5, 1.5, -1, 2])], 'y');
  await check(b, { f64 });
  const c = new Net(rng, [2, 3, 4]);
  c.node('Sqrt', [c.node('Pow', ['x', c.i('p', [2])], 'x2')], 'y');
  await check(c, { x: awayFromZero(rng, 24), f64 });
});

test('Add, Sub, Mul, Div of two data tensors with broadcasting, the smaller side reduced', async () => {
  const rng = mulberry32(34);
  const n = new Net(rng, [2, 3, 4]);
  const rows = n.node('ReduceMean', ['x'], 'rows', { axes: [2] }); // [N, 3, 1]
  const cols = n.node('ReduceMean', ['x'], 'cols', { axes: [1] }); // [N, 1, 4]
  const u = n.node('Mul', [n.node('Sub', ['x', rows], 'c'), cols], 'u');
  const den = n.node('Add', [n.node('Mul', [rows, rows], 'r2'), n.f('one', [], [1])], 'den');
  n.node('Add', [n.node('Div', [u, den], 'q'), n.node('Div', [cols, den], 'q2')], 'y'); // [N,1,4] / [N,3,1]
  await check(n, { f64 });
  // A lower-rank data side ([3, 4], the mean over the batch): its gradient sums the leading axis.
  const m = new Net(rng, [2, 3, 4]);
  const over = m.node('ReduceMean', ['x'], 'over', { axes: [0], keepdims: 0 });
  m.node('Sub', [m.node('Mul', ['x', over], 'xo'), m.node('Div', [over, m.f('k', [], [3])], 'o3')], 'y');
  await check(m, { f64 });
});

test('MatMul of two data tensors: batched, and broadcast leading axes on either side', async () => {
  const rng = mulberry32(35);
  // Attention scores: [N, T, D] x [N, D, T].
  const a = new Net(rng, [2, 3, 4]);
  a.node('MatMul', [proj(a, 'x', 'q', 4, 4), a.node('Transpose', [proj(a, 'x', 'k', 4, 4)], 'kt', { perm: [0, 2, 1] })], 'y');
  await check(a, { f64 });
  // [N, 1, 3, 4] x [N, 2, 4, 5] and [N, 2, 3, 4] x [N, 1, 4, 5], both sides from x.
  for (const left of [true, false]) {
    const n = new Net(rng, [2, 3, 4]);
    const flat = n.node('Reshape', ['x', n.i('flat_shape', [2, 12])], 'flat');
    const fromFlat = (name: string, shape: number[]) =>
      n.node('Reshape', [n.node('MatMul', [flat, n.w(`${name}_W`, [12, shape.slice(1).reduce((p, d) => p * d, 1)])], `${name}_wide`), n.i(`${name}_shape`, shape)], name);
    if (left) n.node('MatMul', [n.node('Unsqueeze', ['x', n.i('ax', [1])], 'one'), fromFlat('two', [2, 2, 4, 5])], 'y');
    else n.node('MatMul', [fromFlat('two', [2, 2, 3, 4]), n.node('Unsqueeze', [fromFlat('b', [2, 4, 5]), n.i('ax', [1])], 'one')], 'y');
    await check(n, { f64 });
  }
});

test('Softmax: opset 13 along the last axis and along axis 1; opset 11 over every axis from 1 on', async () => {
  const rng = mulberry32(36);
  for (const [opset, axis] of [
    [13, -1],
    [13, 1],
    [11, 1],
  ] as const) {
    const n = new Net(rng, [2, 3, 4]);
    n.node('Softmax', [n.node('Mul', ['x', n.f('t', [], [2])], 'sx')], 'y', { axis });
    await check(n, { opset, f64 });
  }
});

test('Erf and the GELU it makes (x/2 (1 + erf(x/√2)), as PyTorch exports it before opset 20), in float32', async () => {
  const rng = mulberry32(37);
  const a = new Net(rng, [2, 3, 4]);
  a.node('Erf', ['x'], 'y');
  await check(a);
  const b = new Net(rng, [2, 3, 4]);
  const e = b.node('Erf', [b.node('Div', ['x', b.f('r2', [], [Math.SQRT2])], 'xs')], 'e');
  b.node('Mul', [b.node('Mul', ['x', b.node('Add', [e, b.f('one', [], [1])], 'e1')], 'xe'), b.f('half', [], [0.5])], 'y');
  await check(b);
});

test('Gelu (opset 20): exact (float32) and tanh approximation (float64)', async () => {
  const rng = mulberry32(38);
  const a = new Net(rng, [2, 3, 4]);
  a.node('Gelu', ['x'], 'y');
  await check(a, { opset: 20 });
  const b = new Net(rng, [2, 3, 4]);
  b.node('Gelu', ['x'], 'y', { approximate: 'tanh' });
  await check(b, { opset: 20, f64 });
});

test('Transpose of attention heads, Reshape, and Squeeze/Unsqueeze with axes as attribute (opset 11) and input (13)', async () => {
  const rng = mulberry32(39);
  // [N, T, D] → [N, T, H, D/H] → [N, H, T, D/H] → back.
  const a = new Net(rng, [2, 3, 4]);
  const heads = a.node('Transpose', [a.node('Reshape', [proj(a, 'x', 'q', 4, 4), a.i('s4', [-1, 3, 2, 2])], 'r4')], 'h', { perm: [0, 2, 1, 3] });
  const back = a.node('Reshape', [a.node('Transpose', [a.node('Mul', [heads, heads], 'hh')], 'ht', { perm: [0, 2, 1, 3] }), a.i('s3', [-1, 3, 4])], 'r3');
  a.node('Add', [back, 'x'], 'y');
  await check(a, { f64 });
  for (const opset of [11, 13]) {
    const n = new Net(rng, [2, 3, 4]);
    const axes = (name: string, v: number[], ins: string[]) => (opset >= 13 ? [...ins, n.i(name, v)] : ins);
    const attrs = (v: number[]): Record<string, AttrValue> => (opset >= 13 ? {} : { axes: v });
    const u = n.node('Unsqueeze', axes('ua', [1, -1], ['x']), 'u', attrs([1, -1])); // [N, 1, 3, 4, 1]
    const m = n.node('Mul', [u, n.w('k', [1, 1, 3, 4, 1], 1)], 'm');
    n.node('Squeeze', axes('sa', [1, 4], [m]), 'y', attrs([1, 4]));
    await check(n, { opset, f64 });
  }
});

test('Gather with constant indices: a scalar index (a class token), 2-D indices with a repeat, a negative index', async () => {
  const rng = mulberry32(40);
  const a = new Net(rng, [2, 3, 4]);
  a.node('Mul', [a.node('Gather', ['x', a.i('i0', [0], [])], 'g', { axis: 1 }), a.w('k', [4], 1)], 'y'); // [N, 4]
  await check(a, { f64 });
  const b = new Net(rng, [2, 3, 4]);
  b.node('Gather', ['x', b.i('idx', [0, 2, 2, -3], [2, 2])], 'y', { axis: 2 }); // [N, 3, 2, 2]
  await check(b, { f64 });
});

test('Slice: constant inputs with axes and steps (2, -1, -2), negative starts, ends past the end; attributes at opset 9', async () => {
  const rng = mulberry32(41);
  assert.deepEqual(sliceIndices(6, 1, END, 2), [1, 3, 5]);
  assert.deepEqual(sliceIndices(6, -1, -END, -2), [5, 3, 1]);
  assert.deepEqual(sliceIndices(6, 4, 1, 1), []);
  const a = new Net(rng, [2, 5, 6]);
  a.node('Slice', ['x', a.i('st', [1, -4]), a.i('en', [END, 5]), a.i('ax', [2, 1]), a.i('sp', [2, 1])], 'y'); // [N, 3, 3]
  await check(a, { f64 });
  const b = new Net(rng, [2, 5, 6]);
  b.node('Slice', ['x', b.i('st', [-1, 3]), b.i('en', [-END, 0]), b.i('ax', [-1, 1]), b.i('sp', [-2, -1])], 'y'); // [N, 3, 3]
  await check(b, { f64 });
  // The whole batch axis, explicitly (a no-op there), and the first token, as attributes.
  const c = new Net(rng, [2, 5, 6]);
  c.node('Slice', ['x'], 'y', { starts: [0, 0], ends: [END, 1], axes: [0, 1] });
  await check(c, { opset: 9, f64 });
});

test('Split: sizes as input (opset 13), as attribute (11), num_outputs (18); unused parts get zeros', async () => {
  const rng = mulberry32(42);
  for (const opset of [11, 13, 18]) {
    const n = new Net(rng, [2, 3, 6]);
    const outs = ['p0', 'p1', 'p2'];
    const sizes = opset === 18 ? [2, 2, 2] : [1, 3, 2];
    const ins = opset === 13 ? ['x', n.i('sz', sizes)] : ['x'];
    const attrs: Record<string, AttrValue> = opset === 18 ? { axis: -1, num_outputs: 3 } : opset === 11 ? { axis: 2, split: sizes } : { axis: 2 };
    n.nodeN('Split', ins, outs, attrs);
    // Part 0 unused; parts 1 and 2 used, part 2 twice.
    n.node('Concat', [n.node('Mul', ['p2', 'p2'], 'q2'), n.node('Mul', ['p1', n.w('k', [sizes[1]!], 1)], 'q1')], 'y', { axis: 2 });
    await check(n, { opset, f64 });
  }
  // Only the middle part reaches y: the rule runs without a gradient for output 0.
  const m = new Net(rng, [2, 4, 3]);
  m.nodeN('Split', ['x', m.i('sz', [1, 2, 1])], ['a', 'b', 'c'], { axis: 1 });
  m.node('Mul', ['b', m.w('k', [2, 3], 1)], 'y');
  await check(m, { f64 });
});

test('Expand: a size-1 axis, a size-1 batch in the shape, more axes than the input', async () => {
  const rng = mulberry32(43);
  const a = new Net(rng, [2, 3, 4]);
  const mean = a.node('ReduceMean', ['x'], 'mu', { axes: [1] }); // [N, 1, 4]
  a.node('Mul', [a.node('Expand', [mean, a.i('sh', [1, 3, 4])], 'e'), 'x'], 'y');
  await check(a, { f64 });
  const b = new Net(rng, [2, 3]);
  b.node('Expand', [b.node('Unsqueeze', ['x', b.i('ax', [1])], 'u'), b.i('sh', [1, 4, 3])], 'y');
  await check(b, { f64 });
});

test('transformer rules refuse what they cannot do, naming the node', () => {
  const shapes = new Map([
    ['x', [2, 3, 4]],
    ['y', [3, 4]],
    ['p', [2, 3, 4]],
  ]);
  const refuse = (net: Net, re: RegExp, opset = 13) => {
    const m = net.model(['y'], opset);
    assert.throws(
      () => buildVjp(m, indexGraph(m.graph!), { from: 'x', to: 'y', shapes }),
      (e: unknown) => e instanceof UserError && re.test(e.message) && !e.message.includes('\n'),
    );
  };
  const rng: Rng = mulberry32(44);
  const a = new Net(rng, [2, 3, 4]);
  a.node('Gather', ['x', a.i('i0', [1], [])], 'y', { axis: 0 });
  refuse(a, /node 'Gather_y' \(Gather\): it gathers along axis 0, the batch axis/);
  const b = new Net(rng, [2, 3, 4]);
  b.node('Pow', ['x', b.node('Abs', ['x'], 'p')], 'y');
  refuse(b, /node 'Pow_y' \(Pow\): its exponent depends on the data/);
  const c = new Net(rng, [2, 3, 4]);
  c.node('Slice', ['x', c.i('s', [1]), c.i('e', [2]), c.i('a', [0])], 'y');
  refuse(c, /node 'Slice_y' \(Slice\): it slices along axis 0/);
});
