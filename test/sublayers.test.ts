/** Transformer sublayers: attention or MLP, grouped into layers; convolutional ResNets have none. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { detectStructure } from '../src/surgery/blocks.js';
import { indexGraph } from '../src/surgery/graph.js';
import { layerBlocks, sublayerName, transformerSublayers } from '../src/surgery/sublayers.js';
import { buildNet } from './helpers/build.js';
import { buildTransformer, type TransformerSpec } from './helpers/transformer.js';

function sublayersOf(spec: TransformerSpec) {
  const model = buildTransformer(spec);
  const g = indexGraph(model.graph!);
  return { s: detectStructure(model, g), subs: transformerSublayers(g, detectStructure(model, g)) };
}

for (const layerNorm of ['op', 'decomposed'] as const) {
  test(`pre-norm transformer (LayerNorm ${layerNorm}): every sublayer is a block, named and grouped by layer`, () => {
    const { s, subs } = sublayersOf({ layerNorm, sublayers: ['attention', 'mlp', 'attention', 'mlp', 'attention', 'mlp'] });
    assert.equal(s.kind, 'residual');
    assert.equal(s.blocks.length, 6);
    assert.deepEqual(s.blocks.map((b) => b.shortcutKind), Array(6).fill('identity'));
    assert.ok(subs);
    assert.deepEqual(subs.map((x) => x.kind), ['attention', 'mlp', 'attention', 'mlp', 'attention', 'mlp']);
    assert.deepEqual(subs.map((x) => x.layer), [0, 0, 1, 1, 2, 2]);
    assert.deepEqual(layerBlocks(subs), [[0, 1], [2, 3], [4, 5]]);
    assert.equal(sublayerName(subs[3]!), 'layer 1 · mlp');
  });
}

test('a Softmax over a weight projection (a gate) is not attention; layers start at attention or at a second MLP', () => {
  const { subs } = sublayersOf({ sublayers: ['gated', 'attention', 'mlp', 'mlp', 'attention'] });
  assert.ok(subs);
  assert.deepEqual(subs.map((x) => x.kind), ['mlp', 'attention', 'mlp', 'mlp', 'attention']);
  assert.deepEqual(subs.map((x) => x.layer), [0, 1, 1, 2, 3]);
  assert.deepEqual(layerBlocks(subs), [[0], [1, 2], [3], [4]]);
});

test('no attention anywhere: not a transformer (convolutional ResNets and gated MLP stacks)', () => {
  const resnet = buildNet({ blocks: [{ cout: 4 }, { cout: 4 }] });
  const g = indexGraph(resnet.graph!);
  assert.equal(transformerSublayers(g, detectStructure(resnet, g)), null);
  assert.equal(sublayersOf({ sublayers: ['gated', 'mlp'] }).subs, null);
});
