/**
 * Backward rules of the ResNet ops against central finite differences of the forward graph
 * (test/helpers/vjp-check.ts); the transformer ops are in test/vjp-transformer.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import { UserError } from '../src/errors.js';
import { type AttrValue } from '../src/loader/proto.js';
import { indexGraph } from '../src/surgery/graph.js';
import { buildSoftmaxCrossEntropyGrad, buildVjp, reluMaskName, withSavedOutputs, type VjpSpec } from '../src/surgery/vjp.js';
import { awayFromZero, check, distinct, dot, Net, mulberry32, norm, probe, randn, runVjp, session, size, type Feed, type Rng } from './helpers/vjp-check.js';

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
  const labels = new Float32Array([0, 3, 4, 1]);
  const run = async (l: Float32Array) =>
    s.run({ logits: new ort.Tensor('float32', l, [N, K]), labels: new ort.Tensor('float32', labels, [N]) });
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
