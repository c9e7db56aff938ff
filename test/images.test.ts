/**
 * The image path as users hold their data: the resize/crop policy (a folder of model-sized
 * PNGs reads exactly as the array they came from), presets, class lists mapping folder names
 * and list-file labels, list files, JPEG/PNG/WebP, and the CLI's data line and notes.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp, { type Sharp } from 'sharp';
import { UserError } from '../src/errors.js';
import { openDataset, type Dataset, type Preprocess } from '../src/loader/data/index.js';
import { DEFAULT_POLICY, parseResize, planImage, type ImagePolicy } from '../src/loader/data/image-policy.js';
import { parseList } from '../src/loader/data/list.js';
import { parseClassList } from '../src/loader/data/classes.js';

const CLI = path.resolve('dist/cli.js');
const IDX = 'fixtures/data/t10k-images-idx3-ubyte';
const N = 200;
let tmp = '';
let pngs = '';
const GRAY: Preprocess = { mean: [0.286], std: [0.353], size: [28, 28], channels: 1 };

before(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'reslens-images-test-'));
  // The first 200 test images as lossless 28x28 PNGs in class folders 0..9.
  pngs = path.join(tmp, 'pngs');
  const px = readFileSync(IDX).subarray(16);
  const labels = readFileSync('fixtures/data/t10k-labels-idx1-ubyte').subarray(8);
  for (let i = 0; i < N; i++) {
    const dir = path.join(pngs, String(labels[i]));
    mkdirSync(dir, { recursive: true });
    await sharp(Buffer.from(px.subarray(i * 784, (i + 1) * 784)), { raw: { width: 28, height: 28, channels: 1 } })
      .png().toFile(path.join(dir, `${String(i).padStart(4, '0')}.png`));
  }
});
after(() => rmSync(tmp, { recursive: true, force: true }));

function cli(args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

async function imagesByIndex(ds: Dataset): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  const per = ds.shape[0] * ds.shape[1] * ds.shape[2];
  for await (const b of ds.batches(64)) for (let i = 0; i < b.n; i++) out.push(b.images.slice(i * per, (i + 1) * per));
  return out;
}

const policy = (resize: string, crop: 'center' | 'none' = 'center'): ImagePolicy => ({ resize: parseResize(resize), crop, isDefault: false });

describe('image policy', () => {
  it('plans resize and crop per image', () => {
    assert.deepEqual(planImage(28, 28, 28, 28, DEFAULT_POLICY), { resize: null, crop: null });
    // Chosen explicitly, the same policy changes a model-sized image: 28 → 32, crop 2 each side.
    assert.deepEqual(planImage(28, 28, 28, 28, policy('shorter:32')), { resize: { width: 32, height: 32 }, crop: { left: 2, top: 2 } });
    // torchvision's Resize(256) truncates the longer side, CenterCrop rounds half to even.
    assert.deepEqual(planImage(500, 375, 224, 224, policy('shorter:256')), { resize: { width: 341, height: 256 }, crop: { left: 58, top: 16 } });
    assert.deepEqual(planImage(500, 375, 224, 224, DEFAULT_POLICY), { resize: { width: 341, height: 256 }, crop: { left: 58, top: 16 } });
    assert.deepEqual(planImage(640, 480, 224, 224, policy('exact')), { resize: { width: 224, height: 224 }, crop: null });
    assert.deepEqual(planImage(30, 30, 28, 28, policy('none')), { resize: null, crop: { left: 1, top: 1 } });
    assert.match(planImage(30, 30, 28, 28, policy('none', 'none')) as string, /--crop is none/);
    assert.match(planImage(20, 20, 28, 28, policy('none')) as string, /smaller than/);
    assert.throws(() => parseResize('shorter:0'), UserError);
    assert.throws(() => parseResize('longer'), /not one of/);
  });

  it('a folder of model-sized PNGs reads exactly as the IDX file; an explicit shorter:32 does not', async () => {
    const idx = await openDataset(IDX, { preprocess: GRAY, limit: N });
    const folder = await openDataset(pngs, { preprocess: GRAY });
    const resized = await openDataset(pngs, { preprocess: { ...GRAY, policy: policy('shorter:32') } });
    try {
      assert.equal(folder.size, N);
      assert.match(folder.description, /images already 28x28 untouched/);
      const want = await imagesByIndex(idx);
      const got = await imagesByIndex(folder);
      const moved = await imagesByIndex(resized);
      // Folder order is by class then name; the names are the IDX indices.
      const names = readdirSync(pngs).sort().flatMap((c) => readdirSync(path.join(pngs, c)).sort().map((f) => Number(f.slice(0, 4))));
      let differ = 0;
      names.forEach((idxAt, k) => {
        assert.deepEqual(got[k], want[idxAt], `image ${idxAt}`);
        if (moved[k]!.some((v, j) => v !== want[idxAt]![j])) differ++;
      });
      assert.ok(differ > N / 2, `shorter:32 changed only ${differ} of ${N} images`);
    } finally {
      await Promise.all([idx.close(), folder.close(), resized.close()]);
    }
  });

  it('the CLI gives the IDX error on the PNG folder and says the policy in the data line', () => {
    for (const model of ['resnet20', 'resnet56']) {
      const run = (data: string, extra: string[] = []) => {
        const file = path.join(tmp, `${model}-${path.basename(data)}-${extra.join('')}.json`);
        const r = cli(['lesion', `fixtures/models/${model}.onnx`, '--data', data, '--limit', String(N), '--no-single', '--device', 'cpu', '--json', file, ...extra]);
        assert.equal(r.code, 0, r.err);
        return { doc: JSON.parse(readFileSync(file, 'utf8')) as { baseline: { correct: number } }, err: r.err };
      };
      const idx = run(IDX);
      const folder = run(pngs);
      assert.equal(folder.doc.baseline.correct, idx.doc.baseline.correct, model);
      assert.match(folder.err, /^data: image folder .*resize shorter side to 32, crop center 28x28 \(images already 28x28 untouched.*normalised \(v\/255 - 0\.286\) \/ 0\.353 \(model metadata\)$/m);
      if (model === 'resnet56') {
        const moved = run(pngs, ['--resize', 'shorter:32']);
        assert.match(moved.err, /resize shorter side to 32, crop center 28x28\);/);
        assert.notDeepEqual(moved.doc.baseline, idx.doc.baseline);
      }
    }
    const bad = cli(['lesion', 'fixtures/models/resnet20.onnx', '--data', pngs, '--resize', 'none', '--crop', 'none', '--size', '24,24', '--device', 'cpu']);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /\.png: is 28x28 but the model takes 24x24 .*--crop is none; pass --crop center or --resize exact\n$/);
  });
});

describe('class lists and list files', () => {
  it('parses class lists and list lines', () => {
    assert.deepEqual(parseClassList('n01440764 tench, Tinca tinca\n\n# comment\nn01443537 goldfish\n', 'c.txt'), ['n01440764', 'n01443537']);
    assert.throws(() => parseClassList('a\nb\na\n', 'c.txt'), /c\.txt:3: class id 'a' is listed twice \(first on line 1\)/);
    assert.throws(() => parseClassList('\n#x\n', 'c.txt'), /lists no classes/);
    const cls = ['n0', 'n1', 'n2'];
    assert.deepEqual(parseList('path,label\na.jpg,2\nsub/b.png,n1\n', 'l.csv', cls), [{ file: 'a.jpg', label: 2, line: 2 }, { file: 'sub/b.png', label: 1, line: 3 }]);
    assert.deepEqual(parseList('ImageId,PredictionString\nv1,n2 1 2 3 4 n2 5 6 7 8\n', 'LOC.csv', cls), [{ file: 'v1', label: 2, line: 2 }]);
    assert.deepEqual(parseList('x y.png\t0\nz.webp 1\n', 'l.txt', undefined), [{ file: 'x y.png', label: 0, line: 1 }, { file: 'z.webp', label: 1, line: 2 }]);
    assert.throws(() => parseList('a.png\t0\nb.png\tn9\n', 'l.txt', cls), /l\.txt:2: label 'n9' of b\.png is not a class index or one of the 3 class ids/);
    assert.throws(() => parseList('a.png\t5\n', 'l.txt', cls), /l\.txt:1: label 5 is past the 3 classes/);
    // A wrong id on the first line is refused, not dropped as a header.
    assert.throws(() => parseList('a.png\tn9\nb.png\tn1\n', 'l.txt', cls), /l\.txt:1: label 'n9' of a\.png is not a class index or one of the 3 class ids/);
    assert.throws(() => parseList('a.png\tn01440764\n', 'l.txt', undefined), /l\.txt:1: label 'n01440764' of a\.png is not a class index \(or pass --classes FILE/);
  });

  it('maps synset folders through --classes; reads a flat folder through a list; JPEG, PNG and WebP', async () => {
    const dir = path.join(tmp, 'synsets');
    const colours: Record<string, [number, number, number]> = { n02: [250, 0, 0], n07: [0, 250, 0] };
    const writers = { 'a.jpg': (s: Sharp) => s.jpeg({ quality: 95 }), 'b.png': (s: Sharp) => s.png(), 'c.webp': (s: Sharp) => s.webp({ lossless: true }) };
    for (const [syn, rgb] of Object.entries(colours)) {
      mkdirSync(path.join(dir, syn), { recursive: true });
      for (const [name, w] of Object.entries(writers)) {
        await w(sharp({ create: { width: 40, height: 20, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } })).toFile(path.join(dir, syn, name));
      }
    }
    const classes = ['n00', 'n01', 'n02', 'n03', 'n04', 'n05', 'n06', 'n07'];
    const pre: Preprocess = { mean: [0], std: [1], size: [8, 8], channels: 3 };
    const byList = await openDataset(dir, { preprocess: pre, classes });
    try {
      assert.equal(byList.classes, 8);
      assert.match(byList.description, /labels by --classes/);
      const b = await byList.batch([0, 1, 2, 3, 4, 5]);
      assert.deepEqual([...b.labels], [2, 2, 2, 7, 7, 7]);
      for (let i = 0; i < 6; i++) {
        const red = b.images[i * 192]!, green = b.images[i * 192 + 64]!;
        assert.ok(i < 3 ? red > 0.95 && green < 0.05 : green > 0.95 && red < 0.05, `image ${i}: r ${red} g ${green}`);
      }
    } finally {
      await byList.close();
    }
    // The model's own class list maps the folders when every folder is named in it.
    const byModel = await openDataset(dir, { preprocess: pre, modelClasses: classes });
    assert.deepEqual([...(await byModel.batch([3])).labels], [7]);
    assert.match(byModel.description, /labels by the model's class list/);
    await byModel.close();
    const sorted = await openDataset(dir, { preprocess: pre });
    assert.deepEqual([...(await sorted.batch([3])).labels], [1]);
    await sorted.close();
    await assert.rejects(openDataset(dir, { preprocess: pre, classes: ['n02'] }), /class folder n07 not in the 1 classes given/);

    const list = path.join(dir, 'val.tsv');
    writeFileSync(list, 'file\tsynset\nn07/c.webp\tn07\nn02/a.jpg\tn02\n');
    const flat = await openDataset(list, { preprocess: pre, classes });
    try {
      assert.equal(flat.size, 2);
      const b = await flat.batch([0, 1]);
      assert.deepEqual([...b.labels], [7, 2]);
      assert.ok(b.images[64]! > 0.95 && b.images[192]! > 0.95);
    } finally {
      await flat.close();
    }
    // A missing image is refused at open, by its line; past --limit it is not looked at.
    writeFileSync(list, 'n07/c.webp\tn07\nn02/gone.jpg\tn02\nn02\tn02\nn07/a.jpg\t7\n');
    await assert.rejects(openDataset(list, { preprocess: pre, classes }), (e: Error) => {
      assert.match(e.message, /val\.tsv:2: \S+n02\/gone\.jpg does not exist \(and 1 more listed images\); paths are relative to the list's folder/);
      return true;
    });
    const first = await openDataset(list, { preprocess: pre, classes, limit: 1 });
    assert.equal(first.size, 1);
    await first.close();
  });
});

describe('decoding ahead and the decoded-image cache', () => {
  it('a second pass reads from memory, equal to the first; a small budget keeps only what fits', async () => {
    const ds = await openDataset(pngs, { preprocess: GRAY });
    try {
      const first = await imagesByIndex(ds);
      const d1 = ds.decodeStats!();
      assert.equal(d1.decoded, N);
      assert.equal(d1.cached, N);
      assert.equal(d1.cacheBytes, N * 784);
      const again = await imagesByIndex(ds);
      const d2 = ds.decodeStats!();
      assert.equal(d2.decoded, N, 'nothing decoded twice');
      assert.equal(d2.fromCache, N);
      assert.deepEqual(again, first);
      // Random access (explore) goes through the same cache.
      const b = await ds.batch([5, 150]);
      assert.deepEqual(b.images.slice(0, 784), first[5]);
      assert.deepEqual(b.images.slice(784), first[150]);
    } finally {
      await ds.close();
    }
    const small = await openDataset(pngs, { preprocess: GRAY, decodeCacheBytes: 10 * 784 });
    try {
      const first = await imagesByIndex(small);
      const again = await imagesByIndex(small);
      const d = small.decodeStats!();
      assert.equal(d.cached, 10);
      assert.equal(d.fromCache, 10);
      assert.equal(d.decoded, 2 * N - 10);
      assert.deepEqual(again, first);
    } finally {
      await small.close();
    }
  });

  it('batches() reads the next batch ahead and yields what batch() gives, in order', async () => {
    const ds = await openDataset(pngs, { preprocess: GRAY, limit: 70 });
    try {
      const seen: number[] = [];
      for await (const b of ds.batches(32)) {
        seen.push(...b.indices);
        // The read ahead was started before this batch was handed over: give it time to land.
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.deepEqual(seen, Array.from({ length: 70 }, (_, i) => i));
      const w = ds.waitStats!();
      assert.equal(w.images, 70);
      assert.ok(w.waitSeconds <= w.elapsedSeconds);
      // Two of the three batches were decoded during the consumer's pauses: less waiting than the decoding took.
      assert.ok(w.waitSeconds < ds.decodeStats!().decodeSeconds, `waited ${w.waitSeconds}s, decoding took ${ds.decodeStats!().decodeSeconds}s`);
    } finally {
      await ds.close();
    }
  });

  it('the CLI says what decoding cost beside the evaluation', () => {
    const r = cli(['lesion', 'fixtures/models/resnet20.onnx', '--data', pngs, '--k', '1', '--samples', '1', '--no-single', '--device', 'cpu', '--limit', '40']);
    assert.equal(r.code, 0, r.err);
    const line = r.err.split('\n').find((l) => l.startsWith('decoding:'));
    assert.ok(line, r.err);
    assert.match(line, /^decoding: 40 images at [\d.]+ images\/s \(4 at once, ahead of the evaluation\); 40 kept in memory \(.+ of a \d+ MB budget, freed at exit\); evaluation [\d.]+ images\/s, waited [\d.]+ s of [\d.]+ s for data$/);
  });
});
