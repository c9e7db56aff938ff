/**
 * Placement on WebGPU (SwiftShader, as test/webgpu.test.ts): every graph reslens builds for
 * every fixture model runs each of its nodes on the device, none on the CPU, with no copies
 * inside a session. A graph that falls back costs a copy of its tensors both ways on every run.
 * Each model's graphs are built and run once on 2 images (test/helpers/webgpu-placement.ts).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { PlacementReport } from './helpers/webgpu-placement.js';

const CHROMIUM = '/usr/lib/chromium';
const ICD = path.join(CHROMIUM, 'vk_swiftshader_icd.json');
/**
 * The fixtures. The suite checks one of each block kind: post-activation with projection
 * shortcuts (resnet20), pre-activation (preact56), bottleneck with grouped convs (resnext),
 * plain and dense nets, and the vision transformer (LayerNormalization, attention, GELU);
 * resnet56, sd56 and resnet110 repeat resnet20's ops deeper and cost ~70-150 s each on
 * SwiftShader (preact56: 66 s idle, 2026-12-02), and vit14 is vit with LayerNorm decomposed
 * (25 s), and vit-tiny(14) the untrained ViTs of the gradient tests: they run with
 * RESLENS_PLACEMENT_ALL=1.
 */
const ALL = ['densenet.onnx', 'plain20.onnx', 'preact56.onnx', 'resnet110.onnx', 'resnet20.onnx', 'resnet56.onnx', 'resnext.onnx', 'sd56.onnx', 'vit-tiny.onnx', 'vit-tiny14.onnx', 'vit.onnx', 'vit14.onnx'];
const MODELS = process.env.RESLENS_PLACEMENT_ALL === '1' ? ALL : ['densenet.onnx', 'plain20.onnx', 'preact56.onnx', 'resnet20.onnx', 'resnext.onnx', 'vit.onnx'];

let xdg: string;
before(() => {
  assert.ok(existsSync(ICD), `${ICD} is missing: install Debian's chromium package (.ci/run does)`);
  xdg = mkdtempSync(path.join(os.tmpdir(), 'reslens-xdg-'));
});
after(() => {
  if (xdg) rmSync(xdg, { recursive: true, force: true });
});

function placementsOf(model: string): Promise<PlacementReport> {
  const env = { ...process.env, VK_ICD_FILENAMES: ICD, XDG_RUNTIME_DIR: xdg, LD_LIBRARY_PATH: [CHROMIUM, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':') };
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', 'test/helpers/webgpu-placement.ts', model], { env, maxBuffer: 1 << 26 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`placement child failed for ${model} (${err.message.split('\n')[0]}): ${stderr.slice(-2000)}`));
      resolve(JSON.parse(stdout.trim().split('\n').pop()!) as PlacementReport);
    });
  });
}

test('the list of fixtures is complete (the suite checks one of each block kind, RESLENS_PLACEMENT_ALL=1 all of them)', () => {
  const all = readdirSync('fixtures/models').filter((f) => f.endsWith('.onnx'));
  assert.deepEqual(all.sort(), ALL);
});

for (const file of MODELS) {
  test(`${file}: every graph reslens builds runs every node on WebGPU`, async () => {
    const r = await placementsOf(path.join('fixtures/models', file));
    const labels = r.placements.map((p) => p.label);
    assert.ok(labels.some((l) => /^\d+ programs$/.test(l)), `no fused lesion session among ${labels.join(', ')}`);
    if (r.kind === 'residual') {
      // Plain and dense networks have no residual branch: no gradients by path, nothing to explore.
      for (const l of ['branch means', 'forward with saved tensors', 'softmax cross-entropy gradient', 'exact: forward with saved tensors', 'exact: full backward of the blocks', 'intact spine']) {
        assert.ok(labels.some((x) => x.endsWith(l)), `${l} missing among ${labels.join(', ')}`);
      }
      assert.ok(labels.some((l) => l.startsWith('backward blocks')), 'no backward of the sampled gradients');
      assert.ok(labels.some((l) => l.startsWith('exact: blocks')), 'no chain of the exact recursion');
      assert.ok(labels.some((l) => l.startsWith('steps ')), 'no run of steps from a checkpoint');
    }
    for (const { label, placement: p } of r.placements) {
      assert.ok(p.nodes > 0, label);
      assert.deepEqual(p.fellBack, {}, `${file}, ${label}: nodes fell back to the CPU`);
      assert.equal(p.onDevice, p.nodes, `${file}, ${label}`);
      assert.equal(p.copies, 0, `${file}, ${label}: onnxruntime copied tensors inside the session`);
    }
  });
}
