/** The built CLI as a user runs it: exit codes, one-line errors, stdout vs stderr, JSON. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { encodeModel } from '../src/loader/proto.js';
import { renderInspect } from '../src/commands/inspect.js';
import { buildNet } from './helpers/build.js';

const CLI = path.resolve('dist/cli.js');
const dir = mkdtempSync(path.join(os.tmpdir(), 'reslens-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const model = path.join(dir, 'tiny.onnx');
const tiny = buildNet({ blocks: [{ cout: 4 }, { cout: 4 }, { cout: 8, stride: 2 }, { cout: 8 }], size: 8 });
tiny.metadataProps = [{ key: 'reslens.input_size', value: '8,8' }];
writeFileSync(model, encodeModel(tiny));

function run(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('--version and --help', () => {
  const v = run('--version');
  assert.equal(v.code, 0);
  assert.match(v.out.trim(), /^\d+\.\d+\.\d+$/);
  for (const c of ['inspect', 'lesion', 'export', 'paths']) {
    const h = run(c, '--help');
    assert.equal(h.code, 0, `${c} --help`);
    assert.match(h.out, /Examples:/);
  }
});

test('inspect prints the block table on stdout and the same content as JSON', () => {
  const r = run('inspect', model);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /4 blocks in 2 stages/);
  assert.match(r.out, /2\^4 = 16/);
  const j = run('inspect', model, '--json');
  assert.equal(j.code, 0);
  const doc = JSON.parse(j.out);
  assert.equal(doc.totals.blocks, 4);
  assert.equal(doc.totals.paths, '16');
  assert.deepEqual(doc.blocks.map((b: { shortcut: string }) => b.shortcut), ['identity', 'identity', 'projection', 'identity']);
  assert.deepEqual(doc.blocks[2].outputShape, [1, 8, 4, 4]);
});

test('bad input: one line on stderr, exit 2, no stack trace', () => {
  const trunc = path.join(dir, 'trunc.onnx');
  writeFileSync(trunc, readFileSync(model).subarray(0, 300));
  const txt = path.join(dir, 'readme.txt');
  writeFileSync(txt, 'hello\n');
  for (const args of [['inspect', trunc], ['inspect', txt], ['inspect', path.join(dir, 'missing.onnx')], ['inspect'], ['inspect', model, '--bogus'],
    ['lesion', model, '--k', 'x'], ['lesion', model, '--k', '99'], ['lesion', model], ['paths', '--blocks', '-3'], ['lesion', model, '--mode', 'scale:abc']]) {
    const r = run(...args);
    assert.equal(r.code, 2, `${args.join(' ')} → ${r.code}: ${r.err}`);
    assert.ok(r.err.trim().length > 0, `${args.join(' ')} says why`);
    assert.doesNotMatch(r.err, /\n\s+at /, `${args.join(' ')}: no stack trace`);
  }
  const one = run('inspect', trunc);
  assert.equal(one.err.trim().split('\n').length, 1);
  assert.match(one.err, /trunc\.onnx/);
});

test('export writes a model that inspect reads, and never overwrites without --force', () => {
  const out = path.join(dir, 'deleted.onnx');
  const r = run('export', model, '--delete', '1', '-o', out);
  assert.equal(r.code, 0, r.err);
  assert.ok(existsSync(out));
  const before = readFileSync(out);
  const again = run('export', model, '--delete', '0', '-o', out);
  assert.equal(again.code, 2);
  assert.match(again.err, /already exists/);
  assert.deepEqual(readFileSync(out), before, 'the existing file is untouched');
  const j = JSON.parse(run('inspect', out, '--json').out);
  assert.equal(j.totals.blocks, 3);
});

test('paths --blocks 54 reproduces the paper\'s numbers', () => {
  const r = run('paths', '--blocks', '54', '--range', '19-35,5-17');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /lengths 19 to 35 hold 98\.0% of paths/);
  assert.match(r.out, /lengths 5 to 17 hold 0\.45% of paths/);
});

test('inspect: one line per row, bold (not red) headers on a terminal, the model\'s provenance in the table output', () => {
  const resnet110 = path.resolve('fixtures/models/resnet110.onnx');
  const r = run('inspect', resnet110);
  assert.equal(r.code, 0, r.err);
  const lines = r.out.split('\n');
  assert.equal(lines.filter((l) => l.startsWith('├')).length, 0, 'no rule between rows');
  assert.equal(lines.filter((l) => /^│ \d+ /.test(l)).length, 54 + 3, '54 block rows and 3 stage rows');
  assert.ok(lines.length < 75, `${lines.length} lines for 54 blocks`);
  assert.doesNotMatch(r.out, /\x1b\[/, 'no escapes when stdout is not a terminal');
  const doc = JSON.parse(run('inspect', resnet110, '--json').out);
  const meta = doc.model.metadata as Record<string, string>;
  assert.ok(lines.includes(`data set: ${meta['reslens.dataset']}`), r.out);
  assert.ok(lines.includes(`recipe: ${meta['reslens.recipe']}`), r.out);
  assert.ok(lines.includes(`test accuracy: ${(Number(meta['reslens.test_accuracy']) * 100).toFixed(2)}% (recorded when the model was made)`), r.out);
  // On a terminal: cli-table3 would make headers red (SGR 31); they are bold (SGR 1).
  // cli-table3's colour library (@colors/colors) judges this test's stdout and CI=true, not the
  // terminal reslens would be writing to: switch it on as a terminal would.
  createRequire(import.meta.url)('@colors/colors/safe').enable();
  const tty = renderInspect(doc, true);
  assert.match(tty, /\x1b\[1m block \x1b\[22m/);
  assert.doesNotMatch(tty, /\x1b\[31m/);
  // A model without reslens.* metadata (the tiny one here) shows no provenance lines.
  assert.doesNotMatch(run('inspect', model).out, /^(data set|recipe|test accuracy):/m);
});

test('lesion says once on stderr when its configurations are too many for one fused session and are cut into pieces', () => {
  // resnet56 with these subsets: 128 configurations over 2187 distinct steps, past the 2000 fused.
  const r = run('lesion', 'fixtures/models/resnet56.onnx', '--k', '2,4,8,16', '--samples', '25', '--limit', '2', '--batch', '1');
  assert.equal(r.code, 0, r.err);
  const lines = r.err.split('\n').filter((l) => l.includes('distinct block steps'));
  assert.equal(lines.length, 1, r.err);
  assert.match(lines[0]!, /^note: the 128 configurations share 2187 distinct block steps; running them as (\d+) onnxruntime sessions of at most 400 steps, each starting where the one before leaves off \(one session that large would take minutes to build\); each holds the weights it uses, \d+ MiB in all$/);
  assert.ok(Number(/as (\d+) onnxruntime/.exec(lines[0]!)![1]) >= Math.ceil(2187 / 400));
  const few = run('lesion', 'fixtures/models/resnet56.onnx', '--k', '2', '--samples', '5', '--limit', '2');
  assert.equal(few.code, 0, few.err);
  assert.doesNotMatch(few.err, /distinct block steps/, 'nothing said when the trie is fused');
});
