/**
 * reslens annotate: the reslens.* metadata written at the protobuf level, the graph and weights
 * byte for byte the same; a model without metadata gets a note on stderr until it is annotated.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { withMetadata, wireFields } from '../src/loader/metadata.js';
import { modelFromBytes } from '../src/loader/model.js';

const CLI = path.resolve('dist/cli.js');
const MODEL = 'fixtures/models/resnet20.onnx';
const dir = mkdtempSync(path.join(os.tmpdir(), 'reslens-annotate-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** Every top-level field but metadata_props, as bytes. */
function nonMetadata(b: Uint8Array): Buffer[] {
  return wireFields(b).filter((f) => f.field !== 14).map((f) => Buffer.from(b.subarray(f.start, f.end)));
}

/** resnet20 with its metadata_props removed, as a user's own export would come. */
function bare(): string {
  const b = readFileSync(MODEL);
  const file = path.join(dir, 'bare.onnx');
  writeFileSync(file, Buffer.concat(nonMetadata(b)));
  return file;
}

test('withMetadata replaces and appends entries, every other field byte for byte', () => {
  const b = readFileSync(MODEL);
  const out = withMetadata(b, { 'reslens.mean': '0.5', 'reslens.dataset': 'x' });
  assert.deepEqual(nonMetadata(out), nonMetadata(b));
  assert.ok(wireFields(b).some((f) => f.field === 7), 'the graph is field 7');
  const m = modelFromBytes(out, 'out.onnx').metadata;
  assert.equal(m['reslens.mean'], '0.5');
  assert.equal(m['reslens.dataset'], 'x');
  assert.equal(m['reslens.std'], '0.353', 'other keys kept');
  assert.equal(modelFromBytes(out, 'out.onnx').proto.metadataProps!.filter((p) => p.key === 'reslens.mean').length, 1, 'replaced, not duplicated');
});

test('annotate: a bare model gets a note, the annotated one runs as the original without flags', () => {
  const src = bare();
  const classes = path.join(dir, 'classes.txt');
  writeFileSync(classes, ['tshirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'boot'].join('\n') + '\n');
  const out = path.join(dir, 'annotated.onnx');
  const a = cli(['annotate', src, '--preset', 'fashion-mnist', '--classes', classes, '--dataset', 'Fashion-MNIST', '-o', out]);
  assert.equal(a.code, 0, a.err);
  assert.match(a.err, /^wrote .*annotated\.onnx: reslens\.mean=0\.286 reslens\.std=0\.353 reslens\.input_size=28,28 reslens\.classes=tshirt,trouser/);
  assert.deepEqual(nonMetadata(readFileSync(out)), nonMetadata(readFileSync(src)));

  const lesion = (model: string) => {
    const json = path.join(dir, `${path.basename(model)}.json`);
    const r = cli(['lesion', model, '--data', 'fixtures/data/t10k-images-idx3-ubyte', '--limit', '200', '--no-single', '--device', 'cpu', '--json', json]);
    assert.equal(r.code, 0, r.err);
    return { baseline: (JSON.parse(readFileSync(json, 'utf8')) as { baseline: unknown }).baseline, err: r.err };
  };
  const original = lesion(MODEL), before = lesion(src), annotated = lesion(out);
  assert.match(before.err, /^note: .*bare\.onnx has no reslens\.mean\/std metadata .*; pass --preset imagenet \(or --mean\/--std\), or store them once with reslens annotate$/m);
  assert.match(before.err, /normalised \(v\/255 - 0\) \/ 1 \(nothing set it\)/);
  assert.doesNotMatch(annotated.err, /^note:/m);
  assert.match(annotated.err, /\(model metadata\)/);
  assert.deepEqual(annotated.baseline, original.baseline);
  assert.notDeepEqual(before.baseline, original.baseline);
  // A preset on the command line does what the annotation does.
  const flagged = cli(['lesion', src, '--preset', 'fashion-mnist', '--limit', '200', '--no-single', '--device', 'cpu', '--data', 'fixtures/data/t10k-images-idx3-ubyte', '--json']);
  assert.equal(flagged.code, 0, flagged.err);
  assert.deepEqual((JSON.parse(flagged.out) as { baseline: unknown }).baseline, original.baseline);
  assert.match(flagged.err, /\(preset fashion-mnist\)/);
});

test('annotate refuses bad input in one line, before touching anything', () => {
  const out = path.join(dir, 'exists.onnx');
  writeFileSync(out, 'keep me');
  const r = cli(['annotate', MODEL, '--preset', 'mnist', '-o', out]);
  assert.equal(r.code, 2);
  assert.match(r.err, /exists\.onnx: already exists; pass --force/);
  assert.equal(readFileSync(out, 'utf8'), 'keep me');
  const wrongChannels = cli(['annotate', MODEL, '--preset', 'imagenet', '-o', path.join(dir, 'x.onnx')]);
  assert.equal(wrongChannels.code, 2);
  assert.match(wrongChannels.err, /--preset imagenet: 3 mean values for a model with 1 input channel .*give 1 value\n$/);
  const nothing = cli(['annotate', MODEL, '-o', path.join(dir, 'y.onnx')]);
  assert.equal(nothing.code, 2);
  assert.match(nothing.err, /nothing to store/);
  assert.throws(() => statSync(path.join(dir, 'x.onnx')));
});
