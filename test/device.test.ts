/** Device selection: auto's order and fallback, and one-line refusals, with providers simulated missing. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { realProbe, selectDevice, type DeviceProbe } from '../src/engine/device.js';
import { UserError } from '../src/errors.js';

const probe = (ok: string[]): DeviceProbe => async (d) => (ok.includes(d) ? null : `${d} simulated missing`);

test('auto picks cuda, then webgpu, then cpu, and says why it passed each over', async () => {
  assert.equal((await selectDevice('auto', probe(['cpu', 'webgpu', 'cuda']))).device, 'cuda');
  const w = await selectDevice('auto', probe(['cpu', 'webgpu']));
  assert.equal(w.device, 'webgpu');
  assert.deepEqual(w.skipped, [{ device: 'cuda', reason: 'cuda simulated missing' }]);
  const c = await selectDevice('auto', probe(['cpu']));
  assert.equal(c.device, 'cpu');
  assert.deepEqual(c.skipped.map((s) => s.device), ['cuda', 'webgpu']);
});

test('an explicit device that is missing is refused in one line that says why and what to do', async () => {
  await assert.rejects(selectDevice('cuda', probe(['cpu'])), (e: unknown) => {
    assert.ok(e instanceof UserError);
    assert.match(e.message, /--device cuda: not available here \(cuda simulated missing\); use --device auto or --device cpu/);
    assert.ok(!e.message.includes('\n'));
    return true;
  });
  assert.equal((await selectDevice('webgpu', probe(['webgpu']))).device, 'webgpu');
});

test('the real probe: cpu always works; a missing CUDA provider library is reported as such', async () => {
  assert.equal(await realProbe('cpu'), null);
  const cuda = await realProbe('cuda');
  // npm ci never fetches the CUDA provider (allowScripts), so it is missing on any machine of ours.
  assert.match(cuda ?? '', /CUDA provider library is not installed/);
});
