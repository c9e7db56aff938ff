/**
 * The GPU path on every run: onnxruntime's WebGPU provider on SwiftShader, the software Vulkan in
 * Debian's chromium package (.ci/run installs it). The real provider runs the real fused, backward
 * and checkpointed graphs, only slowly, so these tests use 16 images of resnet20. Each result must
 * be the CPU's: wrong-image counts identical, gradient norms to 1e-5.
 */
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { measure, type Measurements } from './helpers/webgpu-measure.js';

const CHROMIUM = '/usr/lib/chromium';
const ICD = path.join(CHROMIUM, 'vk_swiftshader_icd.json');
const LIMIT = 16;

let xdg: string;
/** What SwiftShader needs at process start (loader, driver file, a runtime directory for Dawn). */
function swiftshaderEnv(): NodeJS.ProcessEnv {
  return { ...process.env, VK_ICD_FILENAMES: ICD, XDG_RUNTIME_DIR: xdg, LD_LIBRARY_PATH: [CHROMIUM, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':') };
}

/**
 * The WebGPU child's limit: at a load average near 20 (2026-12-02) its lesion part alone took
 * 1145 s and the child, with the exact decomposition added, passed the old 30 minutes.
 */
function runChild(args: string[]): Promise<Measurements> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', 'test/helpers/webgpu-measure.ts', ...args], { env: swiftshaderEnv(), maxBuffer: 1 << 26, timeout: 3_600_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`webgpu child failed (${err.message.split('\n')[0]}): ${stderr.slice(-2000)}`));
      resolve(JSON.parse(stdout.trim().split('\n').pop()!) as Measurements);
    });
  });
}

let gpuRun: Promise<Measurements> | undefined;
let cpuRun: Promise<Measurements> | undefined;
/** The WebGPU child starts on first use (the slow part), the CPU run beside it in this process. */
function measured(): Promise<[Measurements, Measurements]> {
  gpuRun ??= runChild(['--limit', String(LIMIT)]);
  cpuRun ??= measure('cpu', { limit: LIMIT });
  return Promise.all([gpuRun, cpuRun]);
}

before(() => {
  assert.ok(existsSync(ICD), `${ICD} is missing: install Debian's chromium package (.ci/run does), whose SwiftShader these tests run on`);
  xdg = mkdtempSync(path.join(os.tmpdir(), 'reslens-xdg-'));
});

after(() => {
  if (xdg) rmSync(xdg, { recursive: true, force: true });
});

test('lesion on WebGPU (fused session: intact, singles, k-subsets; delete, scale and mean) counts the CPU\'s wrong images', async (t) => {
  const [g, cpu] = await measured();
  t.diagnostic(`SwiftShader seconds: ${JSON.stringify(g.seconds)}; CPU: ${JSON.stringify(cpu.seconds)}; copies: ${JSON.stringify(g.copies)}`);
  assert.deepEqual(Object.keys(g.lesion), ['delete', 'scale', 'mean']);
  for (const [mode, c] of Object.entries(cpu.lesion)) {
    assert.deepEqual(g.lesion[mode]!.configs, c.configs, mode);
    assert.deepEqual(g.lesion[mode]!.wrong, c.wrong, `${mode}: wrong images per configuration`);
    assert.deepEqual(g.lesion[mode]!.nonFinite, c.nonFinite, mode);
  }
  // The study is not trivially equal: deleting blocks changes the counts.
  assert.ok(new Set(cpu.lesion.delete!.wrong).size > 3);
});

test('sampled path gradients on WebGPU equal the CPU\'s norms to 1e-5', async () => {
  const [g, cpu] = await measured();
  assert.equal(g.gradients.length, cpu.gradients.length);
  g.gradients.forEach((s, i) => {
    const c = cpu.gradients[i]!;
    assert.deepEqual([s.k, s.blocks], [c.k, c.blocks]);
    assert.ok(c.norm > 0);
    assert.ok(Math.abs(s.norm - c.norm) <= 1e-5 * c.norm, `k=${s.k} blocks ${s.blocks}: ${s.norm} against the CPU's ${c.norm}`);
  });
});

test('explore\'s evaluation path (checkpointed intact activations) on WebGPU counts the CPU\'s wrong images', async () => {
  const [g, cpu] = await measured();
  assert.deepEqual(g.explore, cpu.explore);
  assert.ok(cpu.explore.some((e) => e.wrong !== cpu.explore[0]!.wrong));
});

test('exact decomposition by path length on WebGPU: per-length norms and shares equal the CPU\'s to 1e-5', async () => {
  const [g, cpu] = await measured();
  const [ge, ce] = [g.exact, cpu.exact];
  assert.equal(ge.perLength.length, 10); // resnet20: lengths 0-9
  assert.deepEqual(ge.perLength.map((p) => p.k), ce.perLength.map((p) => p.k));
  ce.perLength.forEach((c, k) => {
    const w = ge.perLength[k]!;
    assert.ok(c.norm > 0, `k=${k}`);
    assert.ok(Math.abs(w.norm - c.norm) <= 1e-5 * c.norm, `k=${k}: norm ${w.norm} against the CPU's ${c.norm}`);
    assert.ok(Math.abs(w.share - c.share) <= 1e-5 * Math.abs(c.share), `k=${k}: share ${w.share} against the CPU's ${c.share}`);
  });
  // The lengths add up to the full gradient on the device too.
  assert.ok(ge.identityError < 1e-5, String(ge.identityError));
});

test('explore keeps its checkpoints on the device: after the first evaluation an evaluation uploads nothing and downloads only the logits', async () => {
  const [g, cpu] = await measured();
  // Evaluations [], [4], [4, 7], [0, 8] on 16 images (one chunk). The first runs the intact
  // spine: the images up, the logits down, every other checkpoint kept there. With the
  // checkpoints in host memory each later one uploaded its checkpoint, and the first
  // downloaded every checkpoint.
  assert.deepEqual(g.copies.exploreEvals, [
    { uploads: 1, downloads: 1 },
    { uploads: 0, downloads: 1 },
    { uploads: 0, downloads: 1 },
    { uploads: 0, downloads: 1 },
  ]);
  assert.ok(cpu.copies.exploreEvals.every((c) => c.uploads === 0 && c.downloads === 0));
});

test('every node of the fused lesion graphs, the forward, loss and backward graphs, the exact recursion\'s and explore\'s runs on WebGPU', async () => {
  const [g] = await measured();
  const labels = g.placements.map((p) => p.label);
  assert.ok(labels.some((l) => /^\d+ programs$/.test(l)), `no fused lesion session among ${labels.join(', ')}`);
  assert.ok(labels.includes('forward with saved tensors'));
  assert.ok(labels.filter((l) => l.startsWith('backward blocks')).length >= 3);
  assert.ok(labels.includes('intact spine'), 'explore\'s checkpoint session');
  assert.ok(labels.includes('softmax cross-entropy gradient'));
  assert.ok(labels.filter((l) => l.startsWith('exact: blocks')).length >= 3);
  for (const { label, placement: p } of g.placements) {
    assert.ok(p.nodes > 0, label);
    assert.deepEqual(p.fellBack, {}, `${label}: nodes fell back to the CPU`);
    assert.equal(p.onDevice, p.nodes, label);
    assert.equal(p.copies, 0, `${label}: onnxruntime copied tensors inside the session`);
  }
});

test('chained sessions keep their tensors on the device: a gradient batch uploads only the images, the loss gradient\'s inputs and one gradient per backward call', async () => {
  const [g, cpu] = await measured();
  const b = g.copies.gradientBatch;
  // resnet20 at group 3: the forward (the images), the loss gradient (logits, labels), the
  // head's backward and one call per group of three blocks (the gradient each): 1 + 2 + 1 + 3.
  // Without keeping the saved tensors on the device every backward call uploads them as well.
  assert.equal(b.uploads, 7, JSON.stringify(b));
  assert.equal(cpu.copies.gradientBatch.uploads, 0);
});

test('auto never picks a software adapter; --device webgpu asks for it explicitly', async () => {
  const saved = { ...process.env };
  Object.assign(process.env, swiftshaderEnv());
  // From the build: the probe imports its own module into a child node, which runs JavaScript.
  const { selectDevice } = (await import(path.resolve('dist/engine/device.js'))) as typeof import('../src/engine/device.js');
  try {
    const auto = await selectDevice('auto');
    assert.equal(auto.device, 'cpu');
    const why = auto.skipped.find((s) => s.device === 'webgpu')?.reason ?? '';
    assert.match(why, /SwiftShader, a software Vulkan/);
    assert.match(why, /--device webgpu/);
    assert.equal((await selectDevice('webgpu')).device, 'webgpu');
  } finally {
    process.env = saved;
  }
});

test('--verbose says where each session\'s nodes ran, one line per session', () => {
  // On the CPU (quick): the same lines a GPU run prints, with the fused session among them.
  const r = spawnSync(process.execPath, [path.resolve('dist/cli.js'), 'lesion', 'fixtures/models/resnet20.onnx', '--device', 'cpu', '--limit', '16', '--verbose'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('placement: '));
  assert.ok(lines.length >= 1, r.stderr);
  assert.ok(lines.some((l) => /^placement: 10 programs: (\d+) of \1 nodes on cpu$/.test(l)), lines.join('\n'));
});
