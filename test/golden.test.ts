/**
 * Golden documents: the JSON of lesion, gradients and report on resnet20 (500 images, fixed
 * seeds), timing fields dropped and the checkout's own path replaced, must equal the files in
 * test/golden/ byte for byte. They were written by the code before the studies layer existed, so
 * a restructuring that changes any number, order or key fails here. A deliberate change of
 * results regenerates them with RESLENS_UPDATE_GOLDEN=1 and says why in its commit.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';

const CLI = path.resolve('dist/cli.js');
const ROOT = path.resolve('.');
const MODEL = 'fixtures/models/resnet20.onnx';
const dir = mkdtempSync(path.join(os.tmpdir(), 'reslens-golden-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const TIMING_KEYS = new Set(['seconds', 'samplesPerSecond', 'timings', 'createdAt', 'started', 'finished']);

/** The document as the golden file holds it: no timing fields, no machine-specific paths. */
function normalise(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(normalise);
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (!TIMING_KEYS.has(k)) out[k] = normalise(v);
    return out;
  }
  if (typeof value === 'string') return value.split(ROOT).join('<root>').split(dir).join('<tmp>');
  return value;
}

function runJson(name: string, args: string[]): string {
  const file = path.join(dir, `${name}.json`);
  const r = spawnSync(process.execPath, [CLI, ...args, ...(name === 'report' ? ['-o', file] : ['--json', file])], {
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1' },
  });
  assert.equal(r.status, 0, r.stderr);
  return JSON.stringify(normalise(JSON.parse(readFileSync(file, 'utf8'))), null, 2) + '\n';
}

const cases: [string, string[]][] = [
  ['lesion', ['lesion', MODEL, '--limit', '500', '--device', 'cpu', '--k', '1,2,3', '--samples', '3', '--reorder', '--swaps', '2', '--seed', '7']],
  ['lesion-scale', ['lesion', MODEL, '--limit', '500', '--device', 'cpu', '--mode', 'scale:0.5', '--delete', '2,5', '--single']],
  ['gradients', ['gradients', MODEL, '--limit', '500', '--device', 'cpu', '--samples', '3', '--seed', '4']],
  ['report', ['report', MODEL, '--limit', '500', '--device', 'cpu', '--k', '1,3', '--samples', '2', '--swaps', '2', '--gradient-samples', '2', '--seed', '3']],
];

for (const [name, args] of cases) {
  test(`golden: ${name}`, () => {
    const got = runJson(name, args);
    const file = path.resolve('test/golden', `${name}.json`);
    if (process.env.RESLENS_UPDATE_GOLDEN === '1') writeFileSync(file, got);
    assert.equal(got, readFileSync(file, 'utf8'));
  });
}
