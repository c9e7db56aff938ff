/** The batch from a memory budget: the estimate from a network's shapes, the cap, the CLI's line. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { openNetwork } from '../src/engine/network.js';
import { chooseBatch, memoryEstimate, parseMemory } from '../src/engine/memory.js';
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
});
