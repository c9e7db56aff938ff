/**
 * Golden documents: the JSON of lesion, gradients and report on resnet20 (500 images, fixed
 * seeds), timing fields dropped and the checkout's own path replaced, must equal the files in
 * test/golden/: every key, order, string and whole number exactly, fractions to a relative 1e-5.
 * They were written by the code before the studies layer existed, so a restructuring that
 * changes any result fails here. Fractions get the tolerance because onnxruntime picks its float
 * kernels by the CPU's instruction set: the gradient norms written on an AVX-512 machine differ
 * in the 7th digit on an AVX2 one (measured 2026-12-02: 6.717912812767469e-4 against
 * 6.717913484671578e-4), while a changed path, batch or sample moves them by far more.
 * A deliberate change of results regenerates them with RESLENS_UPDATE_GOLDEN=1 and says why in
 * its commit.
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

const RTOL = 1e-5;

/** Where `got` differs from `want`: paths with both values. */
function differences(got: unknown, want: unknown, at = '$'): string[] {
  if (typeof got === 'number' && typeof want === 'number') {
    if (Number.isInteger(got) && Number.isInteger(want)) return got === want ? [] : [`${at}: ${got} against ${want}`];
    return Math.abs(got - want) <= RTOL * Math.max(Math.abs(got), Math.abs(want)) ? [] : [`${at}: ${got} against ${want}`];
  }
  if (Array.isArray(got) && Array.isArray(want)) {
    if (got.length !== want.length) return [`${at}: ${got.length} items against ${want.length}`];
    return got.flatMap((g, i) => differences(g, want[i], `${at}[${i}]`));
  }
  if (got && want && typeof got === 'object' && typeof want === 'object' && !Array.isArray(got) && !Array.isArray(want)) {
    const gk = Object.keys(got), wk = Object.keys(want);
    if (gk.join() !== wk.join()) return [`${at}: keys ${gk.join(',')} against ${wk.join(',')}`];
    return gk.flatMap((k) => differences((got as Record<string, unknown>)[k], (want as Record<string, unknown>)[k], `${at}.${k}`));
  }
  return got === want ? [] : [`${at}: ${JSON.stringify(got)} against ${JSON.stringify(want)}`];
}

test('golden comparison: fractions within 1e-5, whole numbers, strings and keys exactly', () => {
  assert.deepEqual(differences({ a: [1, 0.5, 'x'] }, { a: [1, 0.5 * (1 + 5e-6), 'x'] }), []);
  assert.equal(differences({ a: 0.5 }, { a: 0.5 * (1 + 2e-5) }).length, 1);
  assert.equal(differences({ n: 10 }, { n: 11 }).length, 1);
  assert.equal(differences({ a: 1, b: 2 }, { b: 2, a: 1 }).length, 1);
  assert.equal(differences(['x'], ['y']).length, 1);
});

for (const [name, args] of cases) {
  test(`golden: ${name}`, () => {
    const got = runJson(name, args);
    const file = path.resolve('test/golden', `${name}.json`);
    if (process.env.RESLENS_UPDATE_GOLDEN === '1') writeFileSync(file, got);
    const diffs = differences(JSON.parse(got), JSON.parse(readFileSync(file, 'utf8')));
    assert.deepEqual(diffs.slice(0, 10), [], `${diffs.length} differences from test/golden/${name}.json`);
  });
}
