/**
 * The vision-transformer fixture against PyTorch, image by image. fixtures/torch-lesion-vit.json
 * is written by fixtures/torch_lesion_vit.py (PyTorch float64; this test never runs PyTorch):
 * for the intact network, each of the 12 sublayers deleted and each of the 6 layers deleted,
 * which of the 1,000 shipped images are classified correctly, and the images whose two largest
 * logits lie within 1e-4 (a float32 rounding could flip those; they are left out).
 *  - `reslens export --delete` (one sublayer, or --unit layer) gives a model whose predictions
 *    equal PyTorch's on every other image: the graph surgery skips exactly that branch.
 *  - `reslens lesion` counts the same errors, on the opset-17 model (LayerNormalization as one
 *    op) and on its opset-14 twin (LayerNorm decomposed).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import ort from 'onnxruntime-node';

interface Config { name: string; deleted: number[]; errors: number; correct: string; nearTies: number[] }
const ref = JSON.parse(readFileSync('fixtures/torch-lesion-vit.json', 'utf8')) as {
  sha256: string; images: number; sublayers: { block: number; layer: number; kind: string }[]; configs: Config[];
};
const dir = mkdtempSync(path.join(os.tmpdir(), 'reslens-vit-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const MEAN = 0.286, STD = 0.353;
function images(): { x: Float32Array; n: number } {
  const raw = readFileSync('fixtures/data/t10k-images-idx3-ubyte').subarray(16);
  const x = Float32Array.from(raw, (v) => (v / 255 - MEAN) / STD);
  return { x, n: raw.length / 784 };
}
const labels = readFileSync('fixtures/data/t10k-labels-idx1-ubyte').subarray(8);

function cli(args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, ['dist/cli.js', ...args], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('the PyTorch reference is of the shipped vit.onnx', async () => {
  const { createHash } = await import('node:crypto');
  assert.equal(createHash('sha256').update(readFileSync('fixtures/models/vit.onnx')).digest('hex'), ref.sha256);
  assert.equal(ref.configs.length, 1 + 12 + 6);
});

test('export --delete: each sublayer and each layer skipped, predictions equal to PyTorch image for image', async () => {
  // One process for all 18 exports (test/helpers/cli-batch.ts): a spawn each would be most of the test's time.
  const exports = ref.configs.filter((c) => c.deleted.length).map((c, i) => {
    const layer = c.name.startsWith('layer');
    const out = path.join(dir, `vit-${i}.onnx`);
    const which = layer ? c.name.split(' ')[1]! : String(c.deleted[0]);
    return { c, out, args: ['export', 'fixtures/models/vit.onnx', '--delete', which, ...(layer ? ['--unit', 'layer'] : []), '-o', out, '--device', 'cpu'] };
  });
  const casesFile = path.join(dir, 'cases.json'), resultsFile = path.join(dir, 'results.json');
  writeFileSync(casesFile, JSON.stringify(exports.map((e) => e.args)));
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'test/helpers/cli-batch.ts', casesFile, resultsFile], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const results = JSON.parse(readFileSync(resultsFile, 'utf8')) as { code: number; err: string }[];
  results.forEach((res, i) => assert.equal(res.code, 0, `${exports[i]!.args.join(' ')}: ${res.err}`));

  const { x, n } = images();
  const models = [{ c: ref.configs[0]!, file: 'fixtures/models/vit.onnx' }, ...exports.map((e) => ({ c: e.c, file: e.out }))];
  for (const { c, file } of models) {
    const s = await ort.InferenceSession.create(file, { intraOpNumThreads: 2 });
    const out = (await s.run({ [s.inputNames[0]!]: new ort.Tensor('float32', x, [n, 1, 28, 28]) }))[s.outputNames[0]!]!;
    await s.release();
    const logits = out.data as Float32Array;
    const ties = new Set(c.nearTies);
    let compared = 0;
    for (let i = 0; i < n; i++) {
      if (ties.has(i)) continue;
      let best = 0;
      for (let k = 1; k < 10; k++) if (logits[i * 10 + k]! > logits[i * 10 + best]!) best = k;
      assert.equal(best === labels[i] ? '1' : '0', c.correct[i], `${c.name}: image ${i}`);
      compared++;
    }
    assert.ok(compared >= n - 5, `${c.name}: only ${compared} images away from a tie`);
  }
});

for (const file of ['fixtures/models/vit.onnx', 'fixtures/models/vit14.onnx']) {
  test(`lesion on ${path.basename(file)}: the single-sublayer and single-layer error counts are PyTorch's`, () => {
    const check = (unit: 'block' | 'layer') => {
      const json = path.join(dir, `${path.basename(file)}-${unit}.json`);
      const r = cli(['lesion', file, '--unit', unit, '--k', '1', '--samples', '1', '--json', json, '--device', 'cpu', '-q']);
      assert.equal(r.code, 0, r.err);
      const doc = JSON.parse(readFileSync(json, 'utf8')) as { baseline: { correct: number; total: number }; single: { unit: number; correct: number; total: number }[] };
      const intact = ref.configs[0]!;
      assert.ok(Math.abs(doc.baseline.total - doc.baseline.correct - intact.errors) <= intact.nearTies.length, `intact: ${doc.baseline.total - doc.baseline.correct} against ${intact.errors}`);
      const want = ref.configs.filter((c) => c.name.startsWith(unit === 'block' ? 'block' : 'layer'));
      assert.equal(doc.single.length, want.length);
      for (const [u, c] of want.entries()) {
        const s = doc.single.find((x) => x.unit === u)!;
        assert.ok(Math.abs(s.total - s.correct - c.errors) <= c.nearTies.length, `${c.name}: ${s.total - s.correct} errors against PyTorch's ${c.errors}`);
      }
    };
    check('block');
    check('layer');
  });
}
