/**
 * The fixture manifest (fixtures/models.json), one row per shipped model: each must show the
 * structure PyTorch built and the accuracy PyTorch measured at export, to within one image.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { Engine, predictedClass } from '../src/engine/engine.js';
import { openNetwork } from '../src/engine/network.js';
import { Runtime } from '../src/engine/session.js';
import { openDataset } from '../src/loader/data/index.js';
import { intactProgram, unitCount } from '../src/surgery/split.js';

interface Row {
  name: string;
  file: string;
  sha256: string;
  expect: { kind: string; blocks?: number; stages?: number[]; projection?: number[]; layers?: number };
  pytorch: { correct1k: number; correct10k: number };
}

const manifest = JSON.parse(readFileSync('fixtures/models.json', 'utf8')) as { models: Row[] };
const FULL = '/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz';

test('the manifest lists the models the other tests rely on', () => {
  const names = manifest.models.map((r) => r.name);
  for (const need of ['resnet20', 'resnet56', 'plain20', 'preact56', 'sd56', 'vit', 'vit14']) assert.ok(names.includes(need), `${need} is in fixtures/models.json`);
});

for (const row of manifest.models) {
  test(`${row.name}: structure and accuracy match PyTorch`, async () => {
    const rt = new Runtime();
    try {
      const net = await openNetwork(rt, `fixtures/${row.file}`);
      assert.equal(net.model.sha256, row.sha256, 'the file is the one the manifest describes');
      const s = net.structure;
      assert.equal(s.kind, row.expect.kind);
      if (row.expect.kind === 'residual') {
        assert.equal(s.blocks.length, row.expect.blocks);
        const stages: number[] = [];
        for (const b of s.blocks) stages[b.stage] = (stages[b.stage] ?? 0) + 1;
        assert.deepEqual(stages, row.expect.stages);
        assert.deepEqual(s.blocks.filter((b) => b.shortcutKind === 'projection').map((b) => b.index), row.expect.projection);
      } else {
        assert.equal(s.layers.length, row.expect.layers);
      }
      const engine = new Engine(rt, net);
      const pre = net.preprocessing;
      const opts = { preprocess: { mean: pre.mean, std: pre.std, size: [pre.inputShape[1], pre.inputShape[2]] as [number, number], channels: pre.inputShape[0] } };
      const check = async (file: string, want: number, what: string) => {
        const data = await openDataset(file, opts);
        try {
          let correct = 0;
          if (s.kind === 'dense') {
            // The engine splits residual and plain networks; a dense one runs whole.
            const whole = await rt.create(net.model.proto, row.name);
            for await (const b of data.batches(250)) {
              const out = (await whole.run({ [net.input]: { data: b.images, dims: [b.n, ...data.shape] } }))[net.output]!.data as Float32Array;
              for (let i = 0; i < b.n; i++) if (predictedClass(out, i, out.length / b.n) === b.labels[i]) correct++;
            }
          } else {
            const [r] = await engine.evaluate([intactProgram(unitCount(s))], data, { batch: 250 });
            assert.equal(r!.nonFinite, 0);
            correct = r!.correct;
          }
          assert.ok(Math.abs(correct - want) <= 1, `${what}: onnxruntime ${correct} correct, PyTorch ${want}`);
        } finally {
          await data.close();
        }
      };
      await check('fixtures/data/t10k-images-idx3-ubyte', row.pytorch.correct1k, '1k subset');
      // The full test set comes from Debian's dataset-fashion-mnist (installed by .ci/run).
      assert.ok(existsSync(FULL), `${FULL} is missing: apt-get install dataset-fashion-mnist`);
      await check(FULL, row.pytorch.correct10k, 'full test set');
    } finally {
      await rt.close();
    }
  });
}
