/** Transformer sublayers: attention or MLP, grouped into layers; convolutional ResNets have none. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { detectStructure } from '../src/surgery/blocks.js';
import { indexGraph } from '../src/surgery/graph.js';
import { layerBlocks, sublayerName, transformerSublayers } from '../src/surgery/sublayers.js';
import { Engine } from '../src/engine/engine.js';
import { analyseModel } from '../src/engine/network.js';
import { Runtime } from '../src/engine/session.js';
import { modelFromBytes } from '../src/loader/model.js';
import { encodeModel } from '../src/loader/proto.js';
import { runLesion, toProgram } from '../src/studies/lesion.js';
import { unitBlocks } from '../src/studies/network.js';
import { DELETE } from '../src/surgery/split.js';
import { buildNet, randomInput } from './helpers/build.js';
import { memoryDataset } from './helpers/memory-dataset.js';
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

test('lesion --unit layer on a small transformer: deleting layer l is deleting both its sublayers', async () => {
  const rt = new Runtime({ threads: 1 });
  try {
    const model = modelFromBytes(encodeModel(buildTransformer({ size: 4 })), 'tiny-vit.onnx');
    model.metadata['reslens.input_size'] = '4,4';
    const net = await analyseModel(rt, model);
    const engine = new Engine(rt, net);
    const x = randomInput(40, 1, 4);
    const labels = Int32Array.from({ length: 40 }, (_, i) => i % 10);
    const data = memoryDataset(x, labels, [1, 4, 4], 10);
    const byLayer = await runLesion(engine, data, { mode: { kind: 'delete' }, single: true, k: [2], samples: 2, seed: 1, unit: 'layer', blocks: [1] });
    assert.equal(byLayer.unit, 'layer');
    assert.deepEqual(byLayer.single.map((s) => s.blocks), [[0, 1], [2, 3]]);
    // The same deletions spelled out as blocks, through the engine directly.
    const progs = [[0, 1], [2, 3], [0, 1, 2, 3]].map((bs) => toProgram({ changed: bs }, 4, () => DELETE));
    const direct = await engine.evaluate(progs, data);
    assert.deepEqual(byLayer.single.map((s) => s.correct), [direct[0]!.correct, direct[1]!.correct]);
    assert.equal(byLayer.k[0]!.samples[0]!.correct, direct[2]!.correct);
    assert.deepEqual(byLayer.explicit?.blocks, [1]);
    assert.equal(byLayer.explicit?.correct, direct[1]!.correct);
    // Unit block names each row by its sublayer.
    const byBlock = await runLesion(engine, data, { mode: { kind: 'delete' }, single: true, k: [], samples: 1, seed: 1 });
    assert.deepEqual(byBlock.single.map((s) => s.sublayer && sublayerName(s.sublayer)), ['layer 0 · attention', 'layer 0 · mlp', 'layer 1 · attention', 'layer 1 · mlp']);
    // A convolutional ResNet has no layers to group: a clear error naming the flag.
    const resnet = await analyseModel(rt, modelFromBytes(encodeModel(buildNet({ blocks: [{ cout: 4 }] })), 'resnet.onnx'));
    assert.throws(() => unitBlocks(resnet, 'layer'), /resnet\.onnx: --unit layer needs a transformer/);
  } finally {
    await rt.close();
  }
});
