/** Path-restricted gradients: the path-sum identity and the full gradient's agreement with a direct VJP. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PathGradients, rescale } from '../src/engine/gradients.js';
import { makePlan } from '../src/studies/gradients.js';
import { analyseModel } from '../src/engine/network.js';
import { Runtime } from '../src/engine/session.js';
import { modelFromBytes } from '../src/loader/model.js';
import { encodeModel } from '../src/loader/proto.js';
import { buildSoftmaxCrossEntropyGrad, buildVjp } from '../src/surgery/vjp.js';
import { probeShapes } from '../src/engine/probe.js';
import { buildNet, randomInput } from './helpers/build.js';

const SIZE = 6;
function net(blocks: Parameters<typeof buildNet>[0]['blocks']) {
  const m = modelFromBytes(encodeModel(buildNet({ size: SIZE, blocks, classes: 5 })), 'grad-net.onnx');
  m.metadata['reslens.input_size'] = `${SIZE},${SIZE}`;
  return m;
}

function subsets(n: number): number[][] {
  const out: number[][] = [];
  for (let m = 0; m < 1 << n; m++) out.push([...Array(n).keys()].filter((i) => m & (1 << i)));
  return out;
}

for (const [name, blocks] of [
  ['post-activation with a projection and glue', [{ cout: 3 }, { cout: 3 }, { cout: 4, stride: 2 }, { cout: 4, glueAfter: true }, { cout: 4 }, { cout: 4, scale: 0.6 }]],
  ['pre-activation, 10 blocks', Array.from({ length: 10 }, (_, i) => ({ cout: i < 5 ? 3 : 4, stride: i === 5 ? 2 : 1, act: 'pre' as const }))],
] as const) {
  test(`the 2^n path-restricted gradients sum to the full gradient (${name})`, async () => {
    const model = net(blocks as never);
    const rt = new Runtime({ threads: 1 });
    try {
      const network = await analyseModel(rt, model);
      const n = network.structure.blocks.length;
      assert.equal(n, blocks.length);
      const B = 3;
      const pg = await PathGradients.create(rt, network, B, 5);
      const images = randomInput(B, 1, SIZE, 11);
      const labels = Int32Array.from([0, 3, 4]);
      const all = subsets(n);
      const { gradients, norms } = await pg.runBatch(images, labels, all, undefined, true);
      const sum = new Float64Array(gradients![0]!.length);
      for (const gr of gradients!) for (let i = 0; i < sum.length; i++) sum[i]! += gr[i]!;
      // The full gradient at the first block's input, from one unrestricted VJP.
      const g = network.graph;
      const x0 = network.structure.blocks[0]!.input;
      const shapes = await probeShapes(rt, model.proto, 'input', [1, 1, SIZE, SIZE], g.nodes.flatMap((nd) => nd.output ?? []).filter((t) => g.computed.has(t)), 'p', B);
      shapes.set('input', [B, 1, SIZE, SIZE]);
      const v = buildVjp(model.proto, g, { from: x0, to: 'logits', shapes });
      const { withOutputs } = await import('../src/surgery/graph.js');
      const fwd = await (await rt.create(withOutputs(model.proto, v.saved.filter((t) => t !== 'input')), 'fwd')).run({ input: { data: images, dims: [B, 1, SIZE, SIZE] } });
      const lg = await (await rt.create(buildSoftmaxCrossEntropyGrad(5), 'ce')).run({ logits: fwd.logits!, labels: { data: Float32Array.from(labels), dims: [B] } });
      const feeds: Record<string, { data: Float32Array; dims: number[] }> = { grad_out: lg.grad_logits as never };
      for (const t of v.saved) feeds[t] = t === 'input' ? { data: images, dims: [B, 1, SIZE, SIZE] } : (fwd[t] as never);
      const full = (await (await rt.create(v.model, 'full')).run(feeds)).grad_in!.data as Float32Array;
      let num = 0;
      let den = 0;
      for (let i = 0; i < full.length; i++) {
        num += (sum[i]! - full[i]!) ** 2;
        den += full[i]! ** 2;
      }
      assert.ok(den > 0, 'the gradient is not trivially zero');
      assert.ok(Math.sqrt(num / den) < 1e-4, `relative error ${Math.sqrt(num / den)}`);
      // Different paths carry different gradients (the identity is not vacuous).
      assert.ok(new Set(norms.map((x) => x.toPrecision(6))).size > n);
    } finally {
      await rt.close();
    }
  });
}

test('a plan is reproduced by its seed and covers every k on its own batch', () => {
  const a = makePlan(27, 1000, { ks: [0, 5, 27], samples: 4, batchSize: 32, seed: 9 });
  const b = makePlan(27, 1000, { ks: [0, 5, 27], samples: 4, batchSize: 32, seed: 9 });
  assert.deepEqual(a, b);
  assert.equal(a.batches.length, 4);
  assert.equal(a.samples.length, 12);
  assert.ok(a.samples.every((s) => s.blocks.length === s.k && new Set(s.blocks).size === s.k));
  assert.ok(a.batches.every((bt) => bt.length === 32 && new Set(bt).size === 32));
  assert.notDeepEqual(a, makePlan(27, 1000, { ks: [0, 5, 27], samples: 4, batchSize: 32, seed: 10 }));
});

test('grouping blocks into one backward call changes no path gradient (glue inside and between groups)', async () => {
  // Post-activation net with glue after block 3: group 2 and 4 put the glue between groups, 3 inside one.
  const blocks = [{ cout: 3 }, { cout: 3 }, { cout: 4, stride: 2 }, { cout: 4, glueAfter: true }, { cout: 4 }, { cout: 4, scale: 0.6 }];
  const model = net(blocks as never);
  const rt = new Runtime({ threads: 1 });
  try {
    const network = await analyseModel(rt, model);
    const B = 3;
    const images = randomInput(B, 1, SIZE, 5);
    const labels = Int32Array.from([1, 2, 4]);
    const all = subsets(blocks.length);
    const run = async (group: number) => (await (await PathGradients.create(rt, network, B, 5, { group })).runBatch(images, labels, all, undefined, true)).gradients!;
    const ref = await run(1);
    for (const group of [2, 3, 4, 6]) {
      const got = await run(group);
      all.forEach((subset, s) => {
        let worst = 0;
        let scale = 0;
        for (let i = 0; i < ref[s]!.length; i++) {
          worst = Math.max(worst, Math.abs(got[s]![i]! - ref[s]![i]!));
          scale = Math.max(scale, Math.abs(ref[s]![i]!));
        }
        assert.ok(worst <= 1e-6 * scale, `group ${group}, blocks [${subset}]: differs by ${worst} (scale ${scale})`);
      });
    }
  } finally {
    await rt.close();
  }
});

test('rescale: a power of two brings the largest magnitude near 1 and is undone exactly', () => {
  const inRange = Float32Array.from([0.5, -3, 1e-3]);
  assert.equal(rescale(inRange).g, inRange, 'values in range are left alone, not copied');
  const tiny = Float32Array.from([3e-30, -1.5e-30, 7e-35, 0]);
  const { g, shift } = rescale(tiny);
  assert.ok(shift > 90 && Math.max(...g.map(Math.abs)) >= 0.5 && Math.max(...g.map(Math.abs)) <= 2, `shift ${shift}, max ${Math.max(...g)}`);
  tiny.forEach((v, i) => assert.equal(g[i]! * 2 ** -shift, v, `element ${i} comes back bit for bit`));
});

test('a gradient batch larger than the data is refused with the largest batch that fits', () => {
  assert.throws(() => makePlan(27, 8, { ks: [0], samples: 1, batchSize: 32, seed: 0 }), /--batch-size 32: the data set has only 8 samples; pass --batch-size 8 or less/);
});

test('the exact header says the batches as run: one short batch, or the last one short', async () => {
  const { batchWords } = await import('../src/commands/gradients.js');
  assert.equal(batchWords(4, 1, 32), 'in 1 batch of 4');
  assert.equal(batchWords(1000, 32, 32), 'in 32 batches of 32 (the last of 8)');
  assert.equal(batchWords(64, 2, 32), 'in 2 batches of 32');
});

test('lengths left out by --k are named as ranges, and the effective range says it covers only the measured ones', async () => {
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync(process.execPath, ['dist/cli.js', 'gradients', 'fixtures/models/resnet20.onnx', '--k', '0,4', '--samples', '1', '--limit', '8', '--batch', '8', '--device', 'cpu'], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /not measured: 8 of 10 lengths, k = 1-3, 5-9 \(they count as zero above; --k sets the lengths\)/);
  assert.match(r.stdout, /effective paths: lengths \d to \d carry [\d.]+% of the total gradient of the 2 measured lengths/);
});
