/**
 * The batch from a memory budget: the estimate from a network's shapes, the cap, the CLI's line;
 * and the exact decomposition's slices and lanes within one.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { openNetwork } from '../src/engine/network.js';
import { chooseBatch, chooseExact, describeExact, exactBytes, memoryEstimate, parseMemory, type ExactFootprint } from '../src/engine/memory.js';
import { Runtime } from '../src/engine/session.js';
import { UserError } from '../src/errors.js';

test('parseMemory', () => {
  assert.equal(parseMemory('4G'), 4 * 2 ** 30);
  assert.equal(parseMemory('512MiB'), 512 * 2 ** 20);
  assert.equal(parseMemory('1.5g'), 1.5 * 2 ** 30);
  assert.throws(() => parseMemory('lots'), UserError);
  assert.throws(() => parseMemory('10k'), /at least 1M/);
});

test('the batch follows the activation size and the budget, capped at the device default', async () => {
  const rt = new Runtime({ threads: 1 });
  try {
    const net = await openNetwork(rt, 'fixtures/models/resnet56.onnx');
    const { perImage, fixed } = memoryEstimate(net);
    // resnet56 on 28x28: 16x28x28 floats at each of the first 18 block outputs alone are 900 KiB.
    assert.ok(perImage > 0.9 * 2 ** 20 && perImage < 8 * 2 ** 20, `perImage ${perImage}`);
    assert.ok(fixed >= net.model.bytes.length);
    const roomy = chooseBatch(net, 'cpu', 8 * 2 ** 30);
    assert.deepEqual([roomy.batch, roomy.limited], [128, false]);
    const tight = chooseBatch(net, 'cpu', fixed + 10.5 * perImage);
    assert.deepEqual([tight.batch, tight.limited], [10, true]);
    assert.equal(chooseBatch(net, 'cpu', fixed).batch, 1);
  } finally {
    await rt.close();
  }
  const r = spawnSync(process.execPath, [path.resolve('dist/cli.js'), 'lesion', 'fixtures/models/resnet20.onnx', '--limit', '50', '--no-single', '--device', 'cpu', '--memory', '8M', '--json'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /^batch: \d+ images \(memory budget 8 MiB from --memory: ~\d+ MiB an image/m);
  // All the data in one batch anyway: the budget changes nothing, so nothing is said.
  const one = spawnSync(process.execPath, [path.resolve('dist/cli.js'), 'lesion', 'fixtures/models/resnet20.onnx', '--limit', '1', '--no-single', '--device', 'cpu', '--memory', '8M', '--json'], { encoding: 'utf8' });
  assert.equal(one.status, 0, one.stderr);
  assert.doesNotMatch(one.stderr, /^batch:/m);
});

test('the exact decomposition: fewer images a slice first, then fewer lanes, never past one of each', () => {
  // ResNet-50's at 224x224: 16 blocks, 64 rows hold 3 images.
  const f: ExactFootprint = { weights: 102e6, stackBytes: 118.8e6, imageBytes: 35.8e6 };
  const n = 16;
  const o = { batch: 4, images: 3, lanes: 2, budgetFrom: '--memory' as const };
  const at = (budget: number, fixed?: { images?: boolean; lanes?: boolean }) => {
    const c = chooseExact(f, { ...o, budget, fixed });
    return [c.images, c.lanes, c.cut, c.over];
  };
  assert.deepEqual(at(64 * 2 ** 30), [3, 2, null, false]);
  // Each step down only when the one before does not fit.
  assert.deepEqual(at(exactBytes(f, 2, 2)), [2, 2, { images: 3, lanes: 2 }, false]);
  assert.deepEqual(at(exactBytes(f, 1, 2)), [1, 2, { images: 3, lanes: 2 }, false]);
  assert.deepEqual(at(exactBytes(f, 1, 2) - 1), [1, 1, { images: 3, lanes: 2 }, false]);
  assert.deepEqual(at(exactBytes(f, 1, 1) - 1), [1, 1, { images: 3, lanes: 2 }, true]);
  // What the caller set stays; the lanes go instead.
  assert.deepEqual(at(exactBytes(f, 3, 1), { images: true }), [3, 1, { images: 3, lanes: 2 }, false]);
  assert.deepEqual(at(1e6, { images: true, lanes: true }), [3, 2, null, true]);
  // A batch smaller than a slice is one slice on one lane; more slices can use the lanes again.
  assert.deepEqual(chooseExact(f, { ...o, batch: 2, budget: 64 * 2 ** 30 }).lanes, 1);
  // Within the budget whenever it says so, and more rows or lanes never cost less.
  for (const budget of [1e9, 2e9, 3e9, 4e9, 6e9]) {
    const c = chooseExact(f, { ...o, budget });
    if (!c.over) assert.ok(c.estimate <= budget);
  }
  assert.ok(exactBytes(f, 2, 1) > exactBytes(f, 1, 1) && exactBytes(f, 1, 2) > exactBytes(f, 1, 1));
  assert.match(describeExact(chooseExact(f, { ...o, budget: exactBytes(f, 1, 2) }), n), /^exact: 1 image a slice \(17 rows\) on 2 lanes instead of 3 images for /);
  const line = describeExact(chooseExact(f, { ...o, budget: exactBytes(f, 1, 1) }), n);
  assert.match(line, /^exact: 1 image a slice \(17 rows\) on 1 lane instead of 3 images on 2 lanes for the memory budget of [\d.]+ GiB from --memory \(estimated ~[\d.]+ GiB\); --memory to change \(--batch stays as given\)$/);
});

test('gradients --exact within a tiny --memory: one line says what it cut, and the numbers are those of an unconstrained run', () => {
  const cli = (...args: string[]) => spawnSync(process.execPath, [path.resolve('dist/cli.js'), 'gradients', 'fixtures/models/resnet20.onnx', '--exact', '--limit', '40', '--json', ...args], { encoding: 'utf8' });
  const free = cli('--memory', '64G');
  const tight = cli('--memory', '1M');
  assert.equal(free.status, 0, free.stderr);
  assert.equal(tight.status, 0, tight.stderr);
  assert.doesNotMatch(free.stderr, /^exact:/m);
  // resnet20: 9 blocks, so 64 rows hold 6 images; 1 MiB is below even one image on one lane.
  assert.match(tight.stderr, /^exact: 1 image a slice \(10 rows\) on 1 lane instead of 6 images( on \d+ lanes)? for the memory budget of 1 MiB from --memory \(estimated ~\d+ MiB; over it even so, expect more\); --memory to change \(--batch stays as given\)$/m);
  const a = JSON.parse(free.stdout);
  const b = JSON.parse(tight.stdout);
  assert.equal(b.batchSize, 32);
  assert.deepEqual([b.exact.batches, b.exact.images, b.exact.effectiveRange], [a.exact.batches, a.exact.images, a.exact.effectiveRange]);
  // Slices of 1 image instead of 6 round the loss gradient's mean differently in float32 (it
  // divides by the slice's images first); nothing more.
  const close = (x: number, y: number, what: string) => assert.ok(Math.abs(x - y) <= 1e-6 * Math.abs(y) + 1e-12, `${what}: ${x} against ${y}`);
  close(b.exact.fullNorm, a.exact.fullNorm, 'full norm');
  a.exact.perLength.forEach((p: { norm: number; share: number }, k: number) => {
    close(b.exact.perLength[k].norm, p.norm, `|G_${k}|`);
    close(b.exact.perLength[k].share, p.share, `share ${k}`);
  });
});
