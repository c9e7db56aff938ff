/**
 * Gradients of vision transformers: `reslens gradients` (a sampled plan, replayed with --plan)
 * and `--exact` against PyTorch float64 on the same weights, on the small untrained ViT of
 * fixtures/torch_exact_vit.py (train_vit.py's ViT, 3 layers of width 32: 6 sublayers) and on
 * the trained vit fixture (6 layers of width 64: 12 sublayers), each exported with
 * LayerNormalization (opset 17) and with it decomposed (opset 14). The references
 * (fixtures/torch-gradients-vit*.json) come from fixtures/torch_exact_vit.py; PyTorch is a dev
 * tool, this test never runs it. A missing JSON is a failure, not a skip.
 *
 * Measured (2026-12-02): every sample's norm, each k's mean and each |G_k| within 3e-7
 * relative of PyTorch on the small ViT and 5.3e-6 on the trained one, shares within 1e-7,
 * identity |Σ_k G_k − G| / |G| 2e-7 and 4.4e-7 (float32).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

// The small untrained ViT, and the trained vit fixture (12 sublayers).
const FILES = ['fixtures/torch-gradients-vit-tiny.json', 'fixtures/torch-gradients-vit.json'];

interface Reference {
  onnx: string[];
  onnx_sha256: string[];
  blocks: number;
  batchSize: number;
  meanNorm: number[];
  samples: { k: number; blocks: number[]; batch: number; norm: number }[];
  exact: { images: number; batch: number; batches: number; fullNorm: number; perLength: { k: number; norm: number; share: number }[] };
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

function gradients(...args: string[]): Record<string, unknown> {
  const dir = mkdtempSync(path.join(tmpdir(), 'reslens-vit-'));
  try {
    const out = path.join(dir, 'g.json');
    const r = spawnSync(process.execPath, [path.resolve('dist/cli.js'), 'gradients', ...args, '--json', out, '-q'], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(readFileSync(out, 'utf8'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

for (const FILE of FILES) {
  assert.ok(existsSync(FILE), `${FILE} is missing; generate it with /usr/bin/python3 fixtures/torch_exact_vit.py (--make-tiny, or --model vit)`);
  const ref = JSON.parse(readFileSync(FILE, 'utf8')) as Reference;
  ref.onnx.forEach((model, i) => registerTest(FILE, ref, model, i));
}

function registerTest(FILE: string, ref: Reference, model: string, i: number): void {
  test(`${path.basename(model)}: the sampled plan's norms and the exact split by length match PyTorch float64; Σ_k G_k = G`, () => {
    assert.equal(createHash('sha256').update(readFileSync(model)).digest('hex'), ref.onnx_sha256[i], `${model} is not the export ${FILE} was made from; regenerate ${FILE} with fixtures/torch_exact_vit.py`);
    // The same samples (batches and block sets) as PyTorch's, replayed with --plan.
    const s = gradients(model, '--plan', FILE) as { n: number; samples: { k: number; blocks: number[]; norm: number }[]; meanNorm: number[] };
    assert.equal(s.n, ref.blocks);
    assert.equal(s.samples.length, ref.samples.length);
    s.samples.forEach((got, j) => {
      const want = ref.samples[j]!;
      assert.deepEqual(got.blocks, want.blocks);
      assert.ok(rel(got.norm, want.norm) < 1e-3, `sample ${j} (k = ${want.k}, blocks ${want.blocks}): reslens ${got.norm}, PyTorch ${want.norm}`);
    });
    ref.meanNorm.forEach((want, k) => assert.ok(rel(s.meanNorm[k]!, want) < 1e-3, `k = ${k}: mean norm ${s.meanNorm[k]} vs PyTorch ${want}`));

    const e = (gradients(model, '--exact', '--limit', String(ref.exact.images), '--batch', String(ref.exact.batch)) as { exact: { batches: number; identityError: number; fullNorm: number; perLength: { k: number; norm: number; share: number }[] } }).exact;
    assert.equal(e.batches, ref.exact.batches);
    assert.ok(e.identityError < 1e-5, `identity |Σ_k G_k − G| / |G| = ${e.identityError}`);
    assert.ok(rel(e.fullNorm, ref.exact.fullNorm) < 1e-3, `|G| ${e.fullNorm} vs PyTorch ${ref.exact.fullNorm}`);
    assert.equal(e.perLength.length, ref.blocks + 1);
    ref.exact.perLength.forEach((want, k) => {
      const got = e.perLength[k]!;
      assert.ok(rel(got.norm, want.norm) < 1e-3, `k = ${k}: |G_k| ${got.norm} vs PyTorch ${want.norm}`);
      assert.ok(Math.abs(got.share - want.share) < 1e-3 * Math.max(Math.abs(want.share), 0.01), `k = ${k}: share ${got.share} vs PyTorch ${want.share}`);
    });
  });
}
