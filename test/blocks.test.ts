/** Residual-block detection, one small graph per kind of network the detector must handle. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { detectStructure, notSplittable } from '../src/surgery/blocks.js';
import { floatTensor, makeModel, makeNode, valueInfo } from '../src/loader/proto.js';
import { buildNet, type BlockSpec } from './helpers/build.js';

function detect(blocks: BlockSpec[], extra: { head?: 'flatten' | 'reshape' } = {}) {
  return detectStructure(buildNet({ blocks, ...extra }));
}

test('post-activation basic blocks: identity and projection shortcuts, ReLU after the Add', () => {
  const s = detect([{ cout: 4 }, { cout: 4 }, { cout: 8, stride: 2 }, { cout: 8 }]);
  assert.equal(s.kind, 'residual');
  assert.equal(s.blocks.length, 4);
  assert.deepEqual(s.blocks.map((b) => b.shortcutKind), ['identity', 'identity', 'projection', 'identity']);
  assert.deepEqual(s.blocks.map((b) => b.post), ['Relu', 'Relu', 'Relu', 'Relu']);
  assert.deepEqual(s.blocks.map((b) => b.downsampling), [false, false, true, false]);
  assert.deepEqual(s.blocks[0]!.branchOps, ['Conv', 'BatchNormalization', 'Relu', 'Conv', 'BatchNormalization']);
  assert.deepEqual(s.blocks[2]!.shortcutOps, ['Conv', 'BatchNormalization']);
  // Each block's input is the previous block's output: a chain with no glue.
  for (let i = 1; i < 4; i++) assert.equal(s.blocks[i]!.input, s.blocks[i - 1]!.output);
  assert.deepEqual(s.segments.map((x) => x.kind), ['stem', 'block', 'block', 'block', 'block', 'head']);
  assert.deepEqual(s.stemOps, ['Conv', 'Relu']);
  assert.deepEqual(s.headOps, ['GlobalAveragePool', 'Flatten', 'Gemm']);
  assert.deepEqual(s.blocks.map((b) => b.stage), [0, 0, 1, 1]);
});

test('pre-activation blocks: nothing after the Add, BN-ReLU inside the branch', () => {
  const s = detect([{ cout: 4, act: 'pre' }, { cout: 8, act: 'pre', stride: 2 }, { cout: 8, act: 'pre' }]);
  assert.equal(s.blocks.length, 3);
  assert.deepEqual(s.blocks.map((b) => b.post), [null, null, null]);
  assert.equal(s.blocks[0]!.shortcutKind, 'identity');
  assert.equal(s.blocks[0]!.branchOps[0], 'BatchNormalization');
  // The projection reads the pre-activated input, so the block input is that ReLU's output
  // and the shared BN-ReLU stands as glue before the block.
  assert.equal(s.blocks[1]!.shortcutKind, 'projection');
  assert.ok(s.segments.some((x) => x.kind === 'glue'));
});

test('bottleneck and grouped (ResNeXt) blocks', () => {
  const s = detect([{ cout: 8, bottleneck: true, projection: true }, { cout: 8, bottleneck: true, group: 2 }]);
  assert.equal(s.blocks.length, 2);
  assert.equal(s.blocks[0]!.branchOps.filter((o) => o === 'Conv').length, 3);
  assert.equal(s.blocks[0]!.shortcutKind, 'projection');
  assert.equal(s.blocks[1]!.shortcutKind, 'identity');
});

test('BatchNormalization folded into Conv, Identity/Dropout nodes, Reshape head', () => {
  const s = detect([{ cout: 4, bn: false, noise: true }, { cout: 4, bn: false }], { head: 'reshape' });
  assert.equal(s.blocks.length, 2);
  assert.deepEqual(s.blocks[0]!.branchOps, ['Conv', 'Relu', 'Identity', 'Dropout', 'Conv']);
  assert.deepEqual(s.headOps, ['GlobalAveragePool', 'Reshape', 'Gemm']);
});

test('MobileNetV2-style: no op after the Add, non-residual layers between blocks start new stages', () => {
  const s = detect([{ cout: 4, act: 'none' }, { cout: 4, act: 'none', glueAfter: true }, { cout: 4, act: 'none' }]);
  assert.equal(s.blocks.length, 3);
  assert.deepEqual(s.blocks.map((b) => b.post), [null, null, null]);
  assert.deepEqual(s.segments.map((x) => x.kind), ['stem', 'block', 'block', 'glue', 'block', 'head']);
  assert.deepEqual(s.blocks.map((b) => b.stage), [0, 0, 1]);
});

test('a scaled residual branch (stochastic depth at test time) keeps its Mul in the branch', () => {
  const s = detect([{ cout: 4, scale: 0.9 }, { cout: 4, scale: 0.5 }]);
  assert.equal(s.blocks.length, 2);
  assert.equal(s.blocks[1]!.branchOps.at(-1), 'Mul');
});

test('plain networks have no blocks; their conv(+BN)+ReLU layers are listed', () => {
  const s = detect([{ cout: 4, plain: true }, { cout: 4, plain: true }, { cout: 8, stride: 2, plain: true }]);
  assert.equal(s.kind, 'plain');
  assert.equal(s.blocks.length, 0);
  // stem conv+relu, then 2 convs per plain "block", then the classifier.
  assert.equal(s.layers.length, 1 + 6 + 1);
  assert.deepEqual(s.layers[1]!.ops, ['Conv', 'BatchNormalization', 'Relu']);
  for (let i = 1; i < s.layers.length - 1; i++) assert.equal(s.layers[i]!.input, s.layers[i - 1]!.output);
});

/** A graph from [op, inputs, output] triples: convs 3x3 with random weights, C channels, 8x8. */
function graphOf(ops: [string, string[], string][], channels: Record<string, number>) {
  const nodes = [];
  const inits = [];
  for (const [op, ins, out] of ops) {
    if (op === 'Conv') {
      const cin = channels[ins[0]!]!;
      const w = `${out}_w`;
      inits.push(floatTensor(w, [channels[out]!, cin, 3, 3], Array.from({ length: channels[out]! * cin * 9 }, (_, i) => Math.sin(i))));
      nodes.push(makeNode('Conv', [ins[0]!, w], [out], { pads: [1, 1, 1, 1] }, out));
    } else if (op === 'Concat') nodes.push(makeNode('Concat', ins, [out], { axis: 1 }, out));
    else nodes.push(makeNode(op, ins, [out], {}, out));
  }
  inits.push(floatTensor('fc_w', [3, channels['pooled']!], Array.from({ length: 3 * channels['pooled']! }, (_, i) => Math.cos(i))));
  nodes.push(makeNode('GlobalAveragePool', ['last'], ['gap'], {}, 'gap'));
  nodes.push(makeNode('Flatten', ['gap'], ['flat'], {}, 'flat'));
  nodes.push(makeNode('Gemm', ['flat', 'fc_w'], ['logits'], { transB: 1 }, 'fc'));
  return makeModel({ nodes, inputs: [valueInfo('input', ['N', 1, 8, 8])], outputs: [valueInfo('logits', ['N', 3])], initializers: inits });
}

test('dense means feature reuse: an Inception-style Concat of parallel branches is not a dense network', () => {
  // Two branches read the same stem output and are concatenated: neither is computed from the other.
  const inception = detectStructure(graphOf([
    ['Conv', ['input'], 'stem'], ['Conv', ['stem'], 'a'], ['Conv', ['stem'], 'b'], ['Concat', ['a', 'b'], 'cat'], ['Conv', ['cat'], 'last'],
  ], { input: 1, stem: 4, a: 4, b: 4, cat: 8, last: 6, pooled: 6 }));
  assert.equal(inception.kind, 'plain');
  // Its layers are no chain, so the engine must not split it, and lesion says why.
  assert.equal(inception.segments.length, 0);
  assert.match(notSplittable(inception) ?? '', /branch and merge/);
  // DenseNet: each layer's output is computed from what it is concatenated with.
  const dense = detectStructure(graphOf([
    ['Conv', ['input'], 'stem'], ['Conv', ['stem'], 'l1'], ['Concat', ['stem', 'l1'], 'c1'], ['Conv', ['c1'], 'l2'], ['Concat', ['c1', 'l2'], 'last'],
  ], { input: 1, stem: 4, l1: 2, c1: 6, l2: 2, last: 8, pooled: 8 }));
  assert.equal(dense.kind, 'dense');
  assert.deepEqual(dense.layers.map((l) => l.output), ['l1', 'l2']);
  assert.deepEqual(dense.layers.map((l) => l.input), ['stem', 'c1']);
  assert.match(notSplittable(dense) ?? '', /dense network/);
  // A plain chain is split at its layers.
  assert.equal(notSplittable(detect([{ cout: 4, plain: true }, { cout: 4, plain: true }])), null);
});
