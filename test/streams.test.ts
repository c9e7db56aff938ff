/**
 * Each part of a lesion study draws from its own seeded stream: adding k values never changes
 * the orders of --reorder or another k's subsets, and adding --reorder never changes the
 * subsets. Checked on the plan (every k and swap count) and on the built CLI's measured errors.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { Random } from '../src/random.js';
import { planLesion, type LesionOptions } from '../src/studies/lesion.js';
import type { PlanNetwork } from '../src/studies/network.js';

const CLI = path.resolve('dist/cli.js');

// resnet20's layout: 9 blocks in 3 stages, the first block of stages 2 and 3 downsampling.
const net: PlanNetwork = {
  kind: 'residual',
  n: 9,
  units: [...Array(9).keys()].map((u) => ({ unit: u, stage: Math.floor(u / 3), downsampling: u === 3 || u === 6, deletable: true })),
};
const base: LesionOptions = { mode: { kind: 'delete' }, single: true, k: [], samples: 10, seed: 7 };

test('named streams: the same seed and name give the same stream; another name or seed another one', () => {
  const draw = (r: Random) => [...Array(8)].map(() => r.next());
  assert.deepEqual(draw(Random.stream(7, 'reorder')), draw(Random.stream(7, 'reorder')));
  assert.notDeepEqual(draw(Random.stream(7, 'reorder')), draw(Random.stream(7, 'k=1')));
  assert.notDeepEqual(draw(Random.stream(7, 'reorder')), draw(Random.stream(8, 'reorder')));
  assert.notDeepEqual(draw(Random.stream(7, 'k=1')), draw(Random.stream(7, 'k=2')));
});

test('plan: the orders do not depend on --k, nor the subsets on --reorder or on the other k values', () => {
  const a = planLesion(net, { ...base, k: [1, 2, 3, 4, 5], swaps: 3 });
  const b = planLesion(net, { ...base, k: [1, 2, 3, 4, 5, 6, 7], swaps: 3 });
  const c = planLesion(net, { ...base, k: [1, 2, 3, 4, 5] });
  const d = planLesion(net, { ...base, k: [4], swaps: 5 });
  assert.deepEqual(a.reorderPlans, b.reorderPlans);
  assert.deepEqual(d.reorderPlans.slice(0, 3), a.reorderPlans);
  assert.deepEqual(b.kPlans.slice(0, 5), a.kPlans);
  assert.deepEqual(c.kPlans, a.kPlans);
  assert.deepEqual(d.kPlans, a.kPlans.filter((p) => p.k === 4));
  // The streams differ between parts: k = 2's subsets are not k = 1's drawn again.
  assert.notDeepEqual(a.kPlans[1]!.subsets.map((s) => s[0]), a.kPlans[0]!.subsets.map((s) => s[0]));
});

function lesion(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, 'lesion', 'fixtures/models/resnet20.onnx', '--limit', '100', '--device', 'cpu', '--no-single', '--samples', '3', '--seed', '7', '--json', ...args], {
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1' },
  });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as { k: { k: number; samples: unknown[] }[]; reorder: unknown[] };
}

test('CLI: --reorder measures the same with --k 1,2,3,4,5 and --k 1-7, and --k the same with and without --reorder', () => {
  const five = lesion('--k', '1,2,3,4,5', '--reorder', '--swaps', '2');
  const seven = lesion('--k', '1-7', '--reorder', '--swaps', '2');
  const alone = lesion('--k', '1,2,3,4,5');
  assert.equal(five.reorder.length, 2);
  assert.deepEqual(seven.reorder, five.reorder);
  assert.deepEqual(seven.k.slice(0, 5), five.k);
  assert.deepEqual(alone.k, five.k);
});
