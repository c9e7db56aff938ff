/**
 * Gradients of a vision transformer: `reslens gradients` (a sampled plan) and `--exact` on the
 * small untrained ViT exported by fixtures/torch_exact_vit.py (train_vit.py's ViT, 3 layers of
 * width 32: 6 sublayers), once with LayerNormalization (opset 17) and once with it decomposed
 * (opset 14), against PyTorch float64 on the same weights (fixtures/torch-gradients-vit-tiny.json;
 * PyTorch is a dev tool, this test never runs it). A missing JSON is a failure, not a skip.
 *
 * Measured (2026-12-02): every sample's norm, each k's mean and each |G_k| within 3e-7
 * relative of PyTorch, shares within 2e-8, identity |Σ_k G_k − G| / |G| 2e-7 (float32).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

const FILE = 'fixtures/torch-gradients-vit-tiny.json';

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

assert.ok(existsSync(FILE), `${FILE} is missing; generate it with /usr/bin/python3 fixtures/torch_exact_vit.py --make-tiny`);
const ref = JSON.parse(readFileSync(FILE, 'utf8')) as Reference;

ref.onnx.forEach((model, i) => {
  test(`${path.basename(model)}: the sampled plan's norms and the exact split by length match PyTorch float64; Σ_k G_k = G`, () => {
    assert.equal(createHash('sha256').update(readFileSync(model)).digest('hex'), ref.onnx_sha256[i], `${model} is not the export ${FILE} was made from; regenerate both with fixtures/torch_exact_vit.py --make-tiny`);
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
    // Short paths carry more than long ones here too: the norm falls with k.
    assert.ok(ref.meanNorm[0]! > 10 * ref.meanNorm[ref.blocks]!);

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
});
