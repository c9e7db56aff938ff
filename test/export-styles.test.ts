/**
 * resnet20's trained weights as other exporters write them (fixtures/export_styles.py, made at
 * test time with torch.onnx; the rest rewritten here): channels-last input, open batch, height
 * and width, initializers listed as inputs, BatchNormalization left unfolded at opsets 7 to 17
 * (and the opset-17 graph declared as opset 21, which torch 1.13 cannot write), the ops whose
 * form changed between opsets (Pad, Clip, Squeeze, a computed Reshape) at 9, 11 and 13, weights
 * in a side file. Each must show the shipped fixture's blocks, and lesion (intact, every single deletion,
 * k = 2 subsets, 100 images) must count the same right answers, class by class.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { withMetadata } from '../src/loader/metadata.js';
import { attr, decodeModel, encodeModel, type ModelProto } from '../src/loader/proto.js';

const CLI = path.resolve('dist/cli.js');
const FIXTURE = path.resolve('fixtures/models/resnet20.onnx');
const DATA = path.resolve('fixtures/data/t10k-images-idx3-ubyte');
const dir = mkdtempSync(path.join(os.tmpdir(), 'reslens-styles-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const OPSETS = [7, 9, 11, 13, 17, 21];
const STYLES = ['nhwc', 'dynamic', 'inits-inputs', ...OPSETS.map((o) => `opset${o}`), 'ops9', 'ops11', 'ops13', 'external'];
const file = (style: string) => path.join(dir, style === 'external' ? 'ext/external.onnx' : `${style}.onnx`);

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function rewrite(from: string, to: string, change: (m: ModelProto) => void) {
  const m = decodeModel(readFileSync(from));
  change(m);
  writeFileSync(to, encodeModel(m));
}

before(() => {
  const r = spawnSync('/usr/bin/python3', ['fixtures/export_styles.py', dir], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  // Opset 7's BatchNormalization as older exporters wrote it, with its `spatial` attribute.
  rewrite(file('opset7'), file('opset7'), (m) => {
    for (const n of m.graph!.node!) if (n.opType === 'BatchNormalization') n.attribute!.push(attr('spatial', 1));
  });
  // Opset 21 changed none of these operators' semantics, only their types: the same graph.
  rewrite(file('opset17'), file('opset21'), (m) => {
    m.irVersion = 10;
    m.opsetImport = [{ domain: '', version: 21 }];
  });
  // Every weight in one side file, at its offset, as onnx's save_as_external_data writes them.
  mkdirSync(path.join(dir, 'ext'));
  rewrite(path.join(dir, 'plain.onnx'), file('external'), (m) => {
    const parts: Buffer[] = [];
    let offset = 0;
    for (const t of m.graph!.initializer!) {
      const bytes = Buffer.from(t.rawData!);
      t.dataLocation = 1;
      t.externalData = [{ key: 'location', value: 'weights.bin' }, { key: 'offset', value: String(offset) }, { key: 'length', value: String(bytes.length) }];
      t.rawData = new Uint8Array(0);
      parts.push(bytes);
      offset += bytes.length;
    }
    writeFileSync(path.join(dir, 'ext/weights.bin'), Buffer.concat(parts));
  });
  // The fixture's preprocessing metadata; the dynamic model is left without an input size.
  const md = decodeModel(readFileSync(FIXTURE)).metadataProps!;
  for (const style of STYLES) {
    const props = Object.fromEntries(md.filter((p) => p.key !== 'reslens.input_size' || style !== 'dynamic').map((p) => [p.key!, p.value!]));
    writeFileSync(file(style), withMetadata(readFileSync(file(style)), props));
  }
});

interface Inspected {
  input: { shape: number[] };
  notes: string[];
  blocks: { input: string; output: string; inputShape: number[] | null; outputShape: number[] | null }[];
}

/** A block as the style must not change it: tensor names are the exporter's own (a wrapped module's differ). */
const shaped = (bs: Inspected['blocks']) => bs.map(({ input: _i, output: _o, ...b }) => b);
const unshaped = (bs: Inspected['blocks']) => shaped(bs).map(({ inputShape: _i, outputShape: _o, ...b }) => b);

function inspect(model: string): Inspected {
  const r = cli(['inspect', model, '--json']);
  assert.equal(r.code, 0, `${model}: ${r.err}`);
  return JSON.parse(r.out) as Inspected;
}

interface Counts {
  correct: number;
  perClassError: (number | null)[];
}
interface Lesion {
  baseline: Counts;
  single: (Counts & { unit: number })[];
  k: { samples: { blocks: number[]; correct: number }[] }[];
}

const LESION = ['--data', DATA, '--limit', '100', '--k', '2', '--samples', '2', '--device', 'cpu', '--threads', '1', '--json'];

function lesion(model: string, extra: string[] = []): Lesion {
  const r = cli(['lesion', model, ...LESION, ...extra]);
  assert.equal(r.code, 0, `${model}: ${r.err}`);
  return JSON.parse(r.out) as Lesion;
}

/** What must not depend on the export style: right answers per configuration, and per class. */
function counts(l: Lesion) {
  return {
    baseline: [l.baseline.correct, l.baseline.perClassError],
    single: l.single.map((s) => [s.unit, s.correct, s.perClassError]),
    k: l.k.map((g) => g.samples.map((s) => [s.blocks, s.correct])),
  };
}

let reference: { blocks: Inspected['blocks']; lesion: ReturnType<typeof counts> };
before(() => {
  reference = { blocks: inspect(FIXTURE).blocks, lesion: counts(lesion(FIXTURE)) };
  assert.equal(reference.blocks.length, 9);
});

for (const style of STYLES.filter((s) => s !== 'dynamic')) {
  test(`${style}: the fixture's blocks, and lesion counts the same right answers`, () => {
    const doc = inspect(file(style));
    assert.deepEqual(doc.input.shape, [1, 1, 28, 28]);
    // The ops styles pad explicitly and write ReLU as Clip(min 0): the same blocks with those ops.
    const ops = (bs: Inspected['blocks']) => shaped(bs).map((b) => (/^ops\d/.test(style) ? { ...b, residualBranch: ['Pad', 'Conv', 'Clip', 'Pad', 'Conv'], post: 'Clip' } : b));
    assert.deepEqual(shaped(doc.blocks), ops(reference.blocks));
    // Unfolded BN is folded before anything runs, in float64 as torch's own export folds it: no image flips.
    if (style.startsWith('opset')) assert.ok(doc.notes.includes('21 BatchNormalization nodes folded into the Conv before them'), doc.notes.join('; '));
    if (style === 'nhwc') assert.ok(doc.notes.some((n) => /channels-last/.test(n)), doc.notes.join('; '));
    assert.deepEqual(counts(lesion(file(style))), reference.lesion);
  });
}

test('dynamic batch, height and width: inspect needs no size, lesion asks for --size and then counts the same', () => {
  const doc = inspect(file('dynamic'));
  assert.deepEqual(unshaped(doc.blocks), unshaped(reference.blocks));
  assert.ok(doc.blocks.every((b) => b.outputShape === null));
  assert.ok(doc.notes.some((n) => /input size is open.*--size H,W/.test(n)), doc.notes.join('; '));
  const r = cli(['lesion', file('dynamic'), ...LESION]);
  assert.equal(r.code, 2);
  assert.match(r.err, /^reslens: .*dynamic\.onnx: the model leaves its input's height and width open; pass --size H,W/m);
  assert.deepEqual(counts(lesion(file('dynamic'), ['--size', '28,28'])), reference.lesion);
});
