/**
 * The exact decomposition of the gradient by path length (docs/science.md): G_k against the
 * brute-force sum of the path-restricted gradients over all 2^n subsets (the engine's
 * PathGradients, an independent implementation) on ResNets and pre-norm transformers, the
 * identity Σ_k G_k = G on every residual fixture, PyTorch float64 (fixtures/torch_exact.py) on
 * resnet56 and resnet110, and the CLI.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { openDataFor } from '../src/commands/common.js';
import { ExactGradients } from '../src/engine/exact.js';
import { PathGradients } from '../src/engine/gradients.js';
import { analyseModel, openNetwork, type Network } from '../src/engine/network.js';
import { Runtime } from '../src/engine/session.js';
import { UserError } from '../src/errors.js';
import { modelFromBytes } from '../src/loader/model.js';
import { encodeModel } from '../src/loader/proto.js';
import { effectiveRange, exactSession, makeExactPlan, runExact, summarizeExact } from '../src/studies/exact.js';
import { buildNet, randomInput } from './helpers/build.js';
import { buildTransformer } from './helpers/transformer.js';

function subsets(n: number): number[][] {
  const out: number[][] = [];
  for (let m = 0; m < 1 << n; m++) out.push([...Array(n).keys()].filter((i) => m & (1 << i)));
  return out;
}

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

/** G_k from ExactGradients against Σ over the C(n,k) subsets of PathGradients' restricted gradients. */
async function bruteForce(rt: Runtime, net: Network, images: Float32Array, labels: Int32Array, classes: number, tol: number, maxRows?: number): Promise<void> {
  const n = net.structure.blocks.length;
  const B = labels.length;
  const pg = await PathGradients.create(rt, net, B, classes);
  const all = subsets(n);
  const { gradients } = await pg.runBatch(images, labels, all, undefined, true);
  const eg = await ExactGradients.create(rt, net, B, classes, { maxRows });
  const r = await eg.runBatch(images, labels, undefined, true);
  assert.equal(r.gradients!.length, n + 1);
  for (let k = 0; k <= n; k++) {
    const sum = new Float64Array(r.gradients![k]!.length);
    all.forEach((s, i) => {
      if (s.length === k) for (let j = 0; j < sum.length; j++) sum[j]! += gradients![i]![j]!;
    });
    const e = relErr(r.gradients![k]!, sum);
    assert.ok(e < tol, `k = ${k}: G_k is ${e} away from the sum over its ${all.filter((s) => s.length === k).length} paths`);
  }
  assert.ok(Math.sqrt(r.residual2 / r.gg) < 1e-5, `identity ${Math.sqrt(r.residual2 / r.gg)}`);
  // The per-batch sums agree with the kept tensors.
  r.gradients!.forEach((gk, k) => assert.ok(Math.abs(Math.hypot(...gk) - r.norms[k]!) <= 1e-9 * r.norms[k]! + 1e-300));
}

const SIZE = 6;
for (const [name, blocks] of [
  ['post-activation, projection, glue, a scaled branch', [{ cout: 3 }, { cout: 3 }, { cout: 4, stride: 2 }, { cout: 4, glueAfter: true }, { cout: 4 }, { cout: 4, scale: 0.6 }]],
  ['pre-activation, strided projection', Array.from({ length: 7 }, (_, i) => ({ cout: i < 4 ? 3 : 4, stride: i === 4 ? 2 : 1, act: 'pre' as const }))],
  ['bottleneck, grouped convs, no post-activation', [{ cout: 4, bottleneck: true, group: 2 }, { cout: 4, act: 'none' as const }, { cout: 6, stride: 2, bottleneck: true }, { cout: 6, act: 'none' as const, glueAfter: true }, { cout: 6 }]],
] as const) {
  test(`G_k is the sum of the path-restricted gradients of all paths of length k (${name})`, async () => {
    const m = modelFromBytes(encodeModel(buildNet({ size: SIZE, blocks: blocks as never, classes: 5 })), 'exact-net.onnx');
    m.metadata['reslens.input_size'] = `${SIZE},${SIZE}`;
    const rt = new Runtime({ threads: 1 });
    try {
      const net = await analyseModel(rt, m);
      assert.equal(net.structure.blocks.length, blocks.length);
      const images = randomInput(5, 1, SIZE, 3);
      const labels = Int32Array.from([0, 3, 4, 1, 2]);
      await bruteForce(rt, net, images, labels, 5, 1e-5);
      // Slices of two images per backward (maxRows) give the same G_k.
      await bruteForce(rt, net, images, labels, 5, 1e-5, 2 * (blocks.length + 1));
    } finally {
      await rt.close();
    }
  });
}

for (const layerNorm of ['op', 'decomposed'] as const) {
  test(`G_k is the sum of the path-restricted gradients of all paths of length k (pre-norm transformer, LayerNorm ${layerNorm})`, async () => {
    const m = modelFromBytes(encodeModel(buildTransformer({ size: 4, layerNorm, classes: 5 })), 'tiny-vit.onnx');
    m.metadata['reslens.input_size'] = '4,4';
    const rt = new Runtime({ threads: 1 });
    try {
      const net = await analyseModel(rt, m);
      assert.equal(net.structure.blocks.length, 4);
      await bruteForce(rt, net, randomInput(5, 1, 4, 3), Int32Array.from([0, 3, 4, 1, 2]), 5, 1e-5);
    } finally {
      await rt.close();
    }
  });
}

test('resnet20: G_k equals the brute-force sum over all 2^9 subsets, for every k', async () => {
  const rt = new Runtime({});
  try {
    const net = await openNetwork(rt, 'fixtures/models/resnet20.onnx');
    const data = await openDataFor(net, {});
    const batch = await data.batch([0, 1, 2]);
    await data.close();
    await bruteForce(rt, net, batch.images, batch.labels, 10, 1e-5);
  } finally {
    await rt.close();
  }
});

test('two lanes (worker threads) give the same numbers as one, bit for bit: slices are added in their order', async () => {
  // 8 slices of one image on two lanes finish out of order most runs; a merge in completion
  // order would then put images' gradients in the wrong rows and change the float64 sums.
  const run = async (threads: number, lanes: number) => {
    const rt = new Runtime({ threads });
    try {
      const net = await openNetwork(rt, 'fixtures/models/resnet20.onnx');
      const data = await openDataFor(net, { limit: 8 });
      const batch = await data.batch([...Array(8).keys()]);
      await data.close();
      const eg = await ExactGradients.create(rt, net, 8, 10, { maxRows: 10, lanes });
      assert.equal(eg.slices(8).length, 8);
      assert.equal(eg.laneCount, lanes);
      return await eg.runBatch(batch.images, batch.labels, undefined, true);
    } finally {
      await rt.close();
    }
  };
  const one = await run(1, 1);
  const two = await run(2, 2);
  assert.deepEqual(two, one);
  assert.ok(Math.sqrt(one.residual2 / one.gg) < 1e-5);
});

test('the lengths sum to the full gradient on every residual fixture; plain and dense nets are refused', async () => {
  const rt = new Runtime({});
  try {
    for (const name of ['resnet20', 'resnet56', 'resnet110', 'preact56', 'sd56', 'resnext']) {
      const net = await openNetwork(rt, `fixtures/models/${name}.onnx`);
      const data = await openDataFor(net, { limit: 5 });
      const eg = await exactSession(rt, net, data, 5);
      const { summary } = await runExact(eg, data, makeExactPlan(data.size, { batchSize: 5 }), 0.9);
      await data.close();
      assert.equal(summary.perLength.length, net.structure.blocks.length + 1, name);
      assert.ok(summary.identityError < 1e-5, `${name}: identity ${summary.identityError}`);
      const total = summary.perLength.reduce((a, p) => a + p.share, 0);
      assert.ok(Math.abs(total - 1) < 1e-5, `${name}: shares sum to ${total}`);
      assert.ok(summary.perLength.every((p) => p.norm > 0), `${name}: a length with no gradient`);
    }
    for (const name of ['densenet', 'plain20']) {
      const net = await openNetwork(rt, `fixtures/models/${name}.onnx`);
      await assert.rejects(exactSession(rt, net, { classes: 10 }, 4), (e: unknown) => e instanceof UserError && /has no residual blocks/.test(e.message) && !e.message.includes('\n'));
    }
  } finally {
    await rt.close();
  }
});

interface TorchExact {
  model: string;
  onnx: string;
  onnx_sha256: string;
  dtype: string;
  images: number;
  batch: number;
  batches: number;
  perLength: { k: number; norm: number; share: number }[];
}

for (const file of ['fixtures/torch-exact-resnet56.json', 'fixtures/torch-exact-resnet110.json']) {
  test(`agrees with PyTorch float64 at every length (${path.basename(file)})`, async () => {
    const ref = JSON.parse(readFileSync(file, 'utf8')) as TorchExact;
    assert.equal(ref.dtype, 'float64');
    const rt = new Runtime({});
    try {
      const net = await openNetwork(rt, ref.onnx);
      assert.equal(net.model.sha256, ref.onnx_sha256, `${ref.onnx} is not the export ${file} was made from`);
      const data = await openDataFor(net, { limit: ref.images });
      const eg = await exactSession(rt, net, data, ref.batch);
      const { summary } = await runExact(eg, data, makeExactPlan(data.size, { batchSize: ref.batch }), 0.9);
      await data.close();
      assert.equal(summary.batches, ref.batches);
      assert.equal(summary.perLength.length, ref.perLength.length);
      for (const p of ref.perLength) {
        const got = summary.perLength[p.k]!;
        assert.ok(Math.abs(got.norm - p.norm) <= 1e-3 * p.norm, `k = ${p.k}: |G_k| ${got.norm} against ${p.norm}`);
        // Shares of near-zero lengths: relative to the share, with a floor of 1e-3 of the largest.
        const top = Math.max(...ref.perLength.map((q) => Math.abs(q.share)));
        assert.ok(Math.abs(got.share - p.share) <= 1e-3 * Math.max(Math.abs(p.share), 1e-3 * top), `k = ${p.k}: share ${got.share} against ${p.share}`);
      }
    } finally {
      await rt.close();
    }
  });
}

test('the effective range is the shortest range of lengths holding the mass, negative shares included', () => {
  assert.deepEqual(effectiveRange([0, 0.05, 0.5, 0.4, 0.05], 0.9), [2, 3]);
  // A negative share inside a range costs it mass: [1, 3] holds 0.95 - 0.1 < 0.9.
  assert.deepEqual(effectiveRange([0.45, 0.1, -0.1, 0.5, 0.05], 0.9), [0, 3]);
  assert.deepEqual(effectiveRange([1], 0.9), [0, 0]);
  const s = summarizeExact(2, new Map([[0, { images: 2, loss: 1, norms: [1, 2, 3], dots: [1, 2, 1], gg: 4, residual2: 0 }], [1, { images: 2, loss: 1, norms: [3, 2, 1], dots: [0, 0, 0], gg: 0, residual2: 0 }]]), 0.5);
  assert.deepEqual(s.perLength, [{ k: 0, norm: 2, share: 0.25 }, { k: 1, norm: 2, share: 0.5 }, { k: 2, norm: 2, share: 0.25 }]);
  assert.deepEqual(s.effectiveRange, [1, 1]);
  assert.equal(s.images, 4);
});

test('reslens gradients --exact: table, JSON part, and one line for what it refuses', () => {
  const cli = (...args: string[]) => spawnSync(process.execPath, [path.resolve('dist/cli.js'), 'gradients', ...args], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
  const r = cli('fixtures/models/resnet20.onnx', '--exact', '--limit', '40', '--json');
  assert.equal(r.status, 0, r.stderr);
  const doc = JSON.parse(r.stdout);
  assert.deepEqual(Object.keys(doc.exact), ['batches', 'images', 'fullNorm', 'identityError', 'perLength', 'effectiveRange']);
  assert.equal(doc.exact.batches, 2);
  assert.equal(doc.exact.images, 40);
  assert.equal(doc.batchSize, 32);
  assert.equal(doc.exact.perLength.length, 10);
  assert.ok(doc.exact.identityError < 1e-5);
  const t = cli('fixtures/models/resnet20.onnx', '--exact', '--limit', '32', '--samples', '2');
  assert.equal(t.status, 0, t.stderr);
  assert.match(t.stdout, /C\(n,k\)·E\|g_k\|/);
  assert.match(t.stdout, /effective range: lengths \d+ to \d+ hold/);
  assert.match(t.stdout, /sampled estimate \(20 paths\)/);
  for (const args of [['fixtures/models/plain20.onnx', '--exact'], ['fixtures/models/resnet20.onnx', '--exact', '--plan', 'x.json'], ['fixtures/models/resnet20.onnx', '--exact', '--k', '3']]) {
    const e = cli(...args);
    assert.equal(e.status, 2, e.stderr);
    assert.equal(e.stderr.trim().split('\n').filter((l) => !l.startsWith('device:')).length, 1, e.stderr);
  }
});
