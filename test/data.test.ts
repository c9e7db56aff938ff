import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { zipSync } from 'fflate';
import sharp from 'sharp';
import { UserError } from '../src/errors.js';
import { openDataset, type Batch, type Dataset, type Preprocess } from '../src/loader/data/index.js';

const IMAGES = 'fixtures/data/t10k-images-idx3-ubyte';
const LABELS = 'fixtures/data/t10k-labels-idx1-ubyte';
const GRAY: Preprocess = { mean: [0.286], std: [0.353], size: [28, 28], channels: 1 };

let tmp = '';
let cacheDir = '';
before(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'reslens-data-test-'));
  cacheDir = path.join(tmp, 'cache');
});
after(() => {
  rmSync(tmp, { recursive: true, force: true });
});

async function all(ds: Dataset, bs = 100): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of ds.batches(bs)) out.push(b);
  return out;
}

function concat(bs: Batch[]): { images: Float32Array; labels: number[]; indices: number[] } {
  const n = bs.reduce((a, b) => a + b.images.length, 0);
  const images = new Float32Array(n);
  let o = 0;
  for (const b of bs) { images.set(b.images, o); o += b.images.length; }
  return { images, labels: bs.flatMap((b) => [...b.labels]), indices: bs.flatMap((b) => b.indices) };
}

function close(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(a.length, b.length, `${what}: lengths`);
  for (let i = 0; i < a.length; i++) {
    if (!(Math.abs(a[i]! - b[i]!) <= tol)) assert.fail(`${what}[${i}]: ${a[i]} vs ${b[i]}`);
  }
}

/** A minimal .npy writer (version 1.0), independent of the loader's parser. */
function npy(descr: string, shape: number[], data: Uint8Array): Buffer {
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const pad = 64 - ((10 + header.length + 1) % 64);
  header += ' '.repeat(pad % 64) + '\n';
  const pre = Buffer.alloc(10);
  pre[0] = 0x93;
  pre.write('NUMPY', 1, 'latin1');
  pre[6] = 1; pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  return Buffer.concat([pre, Buffer.from(header, 'latin1'), data]);
}

function idxImages(n: number, h: number, w: number, pixels: Uint8Array, magic = 0x803): Buffer {
  const head = Buffer.alloc(16);
  head.writeUInt32BE(magic, 0); head.writeUInt32BE(n, 4); head.writeUInt32BE(h, 8); head.writeUInt32BE(w, 12);
  return Buffer.concat([head, pixels]);
}
function idxLabels(labels: number[]): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(0x801, 0); head.writeUInt32BE(labels.length, 4);
  return Buffer.concat([head, Uint8Array.from(labels)]);
}

async function refused(p: Promise<unknown>, ...parts: string[]): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof UserError, `expected UserError, got ${String(e)}`);
    for (const part of parts) assert.ok(e.message.includes(part), `message ${JSON.stringify(e.message)} lacks ${JSON.stringify(part)}`);
    assert.ok(!e.message.includes('\n'), 'message is one line');
    return true;
  });
}

describe('IDX fixture', () => {
  it('reads 1000 Fashion-MNIST test images of 1x28x28 with labels 0..9', async () => {
    const ds = await openDataset(IMAGES, { preprocess: GRAY });
    try {
      assert.equal(ds.format, 'idx');
      assert.equal(ds.size, 1000);
      assert.deepEqual(ds.shape, [1, 28, 28]);
      assert.equal(ds.classes, 10);
      assert.match(ds.description, /^IDX fixtures\/data\/t10k-images-idx3-ubyte \(1000 images\)$/);
      const got = concat(await all(ds, 128));
      const raw = readFileSync(LABELS);
      assert.deepEqual(got.labels, [...raw.subarray(8)]);
      assert.ok(got.labels.every((l) => Number.isInteger(l) && l >= 0 && l <= 9));
      // Independent decode of the first image.
      const px = readFileSync(IMAGES).subarray(16, 16 + 784);
      const want = Array.from(px, (v) => (v / 255 - 0.286) / 0.353);
      close(got.images.subarray(0, 784), want, 1e-6, 'image 0');
      const digest = createHash('sha256').update(readFileSync(IMAGES)).update(raw).digest('hex');
      assert.equal(await ds.sha256(), digest);
    } finally {
      await ds.close();
    }
  });

  it('batches() covers 0..size-1 once; batch([5,3]) equals those items', async () => {
    const ds = await openDataset(IMAGES, { preprocess: GRAY });
    try {
      const bs = await all(ds, 7);
      assert.equal(bs.length, Math.ceil(1000 / 7));
      assert.equal(bs.at(-1)!.n, 1000 % 7);
      const got = concat(bs);
      assert.deepEqual(got.indices, Array.from({ length: 1000 }, (_, i) => i));
      for (const b of bs) assert.equal(b.images.length, b.n * 784);
      const r = await ds.batch([5, 3]);
      assert.equal(r.n, 2);
      assert.deepEqual(r.indices, [5, 3]);
      assert.deepEqual([...r.labels], [got.labels[5], got.labels[3]]);
      assert.deepEqual(r.images.subarray(0, 784), got.images.subarray(5 * 784, 6 * 784));
      assert.deepEqual(r.images.subarray(784), got.images.subarray(3 * 784, 4 * 784));
      await refused(ds.batch([1000]), '1000');
    } finally {
      await ds.close();
    }
  });

  it('limit takes the first N samples', async () => {
    const ds = await openDataset(IMAGES, { preprocess: GRAY, limit: 10 });
    try {
      assert.equal(ds.size, 10);
      assert.match(ds.description, /first 10 of 1000 images/);
      assert.equal(concat(await all(ds, 4)).labels.length, 10);
    } finally {
      await ds.close();
    }
    await refused(openDataset(IMAGES, { preprocess: GRAY, limit: 0 }), '--limit');
  });

  it('.gz gives the same batches as raw, through an atomic cache file', async () => {
    const dir = path.join(tmp, 'gz');
    mkdirSync(dir);
    const gzImages = gzipSync(readFileSync(IMAGES));
    writeFileSync(path.join(dir, 't10k-images-idx3-ubyte.gz'), gzImages);
    writeFileSync(path.join(dir, 't10k-labels-idx1-ubyte.gz'), gzipSync(readFileSync(LABELS)));
    // A second pair in the folder: the t10k one is preferred.
    copyFileSync(IMAGES, path.join(dir, 'train-images-idx3-ubyte'));
    copyFileSync(LABELS, path.join(dir, 'train-labels-idx1-ubyte'));
    const raw = await openDataset(IMAGES, { preprocess: GRAY });
    const gz = await openDataset(dir, { preprocess: GRAY, cacheDir });
    try {
      assert.match(gz.description, /t10k-images-idx3-ubyte\.gz .*chose t10k-images-idx3-ubyte\.gz over train-images-idx3-ubyte/);
      assert.equal(gz.size, 1000);
      assert.deepEqual(concat(await all(gz, 256)), concat(await all(raw, 256)));
      const key = createHash('sha256').update(gzImages).digest('hex');
      assert.ok(existsSync(path.join(cacheDir, `${key}.idx`)));
      assert.ok(readdirSync(cacheDir).every((n) => n.endsWith('.idx')), 'no temporary files left');
    } finally {
      await gz.close();
      await raw.close();
    }
    // A second open reuses the cache.
    const again = await openDataset(path.join(dir, 't10k-images-idx3-ubyte.gz'), { preprocess: GRAY, cacheDir });
    assert.equal(again.size, 1000);
    await again.close();
  });
});

describe('.npy / .npz', () => {
  const N = 6, H = 4, W = 5, C = 3;
  const RGB: Preprocess = { mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.3], size: [H, W], channels: C };
  const hwc = Uint8Array.from({ length: N * H * W * C }, (_, i) => (i * 37 + 11) % 256);
  const labels = [3, 1, 4, 1, 5, 9];
  const chwF32 = new Float32Array(N * C * H * W);
  for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) for (let p = 0; p < H * W; p++) {
    chwF32[((n * C + c) * H * W) + p] = hwc[(n * H * W + p) * C + c]! / 255;
  }
  const expected = Array.from(chwF32, (v, i) => {
    const c = Math.floor(i / (H * W)) % C;
    return (v - RGB.mean[c]!) / RGB.std[c]!;
  });
  const i64 = (xs: number[]): Uint8Array => new Uint8Array(BigInt64Array.from(xs.map(BigInt)).buffer);
  const i32 = (xs: number[]): Uint8Array => new Uint8Array(Int32Array.from(xs).buffer);
  const f32 = new Uint8Array(chwF32.buffer);

  async function check(ds: Dataset, format: string): Promise<void> {
    assert.equal(ds.format, format);
    assert.equal(ds.size, N);
    assert.deepEqual(ds.shape, [C, H, W]);
    assert.equal(ds.classes, 10);
    const got = concat(await all(ds, 4));
    assert.deepEqual(got.labels, labels);
    close(got.images, expected, 1e-5, ds.description);
    const r = await ds.batch([4, 2]);
    const per = C * H * W;
    close(r.images, [...expected.slice(4 * per, 5 * per), ...expected.slice(2 * per, 3 * per)], 1e-5, 'batch([4,2])');
  }

  it('NHWC uint8 and NCHW float32 .npy give the same normalised values', async () => {
    const dir = path.join(tmp, 'npy');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'x_u8.npy'), npy('|u1', [N, H, W, C], hwc));
    writeFileSync(path.join(dir, 'y_u8.npy'), npy('<i8', [N], i64(labels)));
    writeFileSync(path.join(dir, 'images.npy'), npy('<f4', [N, C, H, W], f32));
    writeFileSync(path.join(dir, 'labels.npy'), npy('<i4', [N], i32(labels)));
    for (const f of ['x_u8.npy', 'images.npy']) {
      const ds = await openDataset(path.join(dir, f), { preprocess: RGB });
      try { await check(ds, 'npy'); } finally { await ds.close(); }
    }
    // Shape mismatch names both shapes; a missing labels file names what was looked for.
    await refused(openDataset(path.join(dir, 'images.npy'), { preprocess: { ...RGB, size: [32, 32] } }),
      'images.npy', '3x4x5', '3x32x32');
    writeFileSync(path.join(dir, 'lonely.npy'), npy('|u1', [N, H, W], hwc.subarray(0, N * H * W)));
    await refused(openDataset(path.join(dir, 'lonely.npy'), { preprocess: RGB }), 'lonely.npy', 'labels');
    writeFileSync(path.join(dir, 'bad_x.npy'), npy('<f4', [N, C, H, W], new Uint8Array(new Float32Array(N * C * H * W).fill(200).buffer)));
    writeFileSync(path.join(dir, 'bad_y.npy'), npy('<i4', [N], i32(labels)));
    await refused(openDataset(path.join(dir, 'bad_x.npy'), { preprocess: RGB }), 'bad_x.npy', '[0,1]');
    writeFileSync(path.join(dir, 'neg_x.npy'), npy('|u1', [N, H, W, C], hwc));
    writeFileSync(path.join(dir, 'neg_y.npy'), npy('<i4', [N], i32([0, 1, -1, 0, 0, 0])));
    await refused(openDataset(path.join(dir, 'neg_x.npy'), { preprocess: RGB }), 'neg_y.npy', '-1');
  });

  it('.npz with x/y (deflated) and with other names (first 4-D and 1-D arrays)', async () => {
    const a = path.join(tmp, 'xy.npz');
    writeFileSync(a, zipSync({ 'x.npy': npy('|u1', [N, H, W, C], hwc), 'y.npy': npy('<i8', [N], i64(labels)) }, { level: 6 }));
    const b = path.join(tmp, 'other.npz');
    writeFileSync(b, zipSync({ 'pix.npy': [npy('<f4', [N, C, H, W], f32), { level: 0 }], 'cls.npy': npy('<i4', [N], i32(labels)) }));
    for (const f of [a, b]) {
      const ds = await openDataset(f, { preprocess: RGB });
      try {
        await check(ds, 'npz');
        assert.equal(await ds.sha256(), createHash('sha256').update(readFileSync(f)).digest('hex'));
      } finally {
        await ds.close();
      }
    }
  });
});

describe('CIFAR binary', () => {
  const REC = 3073;
  const n = 5;
  const buf = Buffer.alloc(n * REC);
  for (let i = 0; i < n; i++) {
    buf[i * REC] = (i * 3) % 10;
    for (let p = 0; p < 3072; p++) buf[i * REC + 1 + p] = (i + p * 7) % 256;
  }
  const pre: Preprocess = { mean: [0.49, 0.48, 0.45], std: [0.25, 0.24, 0.26], size: [32, 32], channels: 3 };

  it('reads a CIFAR-10 file made in the test, and a folder of them (test batch preferred)', async () => {
    const dir = path.join(tmp, 'cifar');
    mkdirSync(dir);
    const file = path.join(dir, 'data_batch_1.bin');
    writeFileSync(file, buf);
    const ds = await openDataset(file, { preprocess: pre });
    try {
      assert.equal(ds.format, 'cifar');
      assert.equal(ds.size, n);
      assert.deepEqual(ds.shape, [3, 32, 32]);
      assert.equal(ds.classes, 10);
      const got = concat(await all(ds, 2));
      assert.deepEqual(got.labels, [0, 3, 6, 9, 2]);
      const want = Array.from({ length: 3072 }, (_, p) => ((3 + p * 7) % 256 / 255 - pre.mean[Math.floor(p / 1024)]!) / pre.std[Math.floor(p / 1024)]!);
      close(got.images.subarray(3 * 3072, 4 * 3072), want, 1e-6, 'record 3');
    } finally {
      await ds.close();
    }
    writeFileSync(path.join(dir, 'test_batch.bin'), buf.subarray(0, 2 * REC));
    const folder = await openDataset(dir, { preprocess: pre });
    assert.equal(folder.size, 2);
    assert.match(folder.description, /test_batch\.bin.*chose test_batch\.bin over 1 data_batch/);
    await folder.close();
    writeFileSync(path.join(dir, 'data_batch_2.bin'), buf.subarray(0, REC + 10));
    await refused(openDataset(path.join(dir, 'data_batch_2.bin'), { preprocess: pre }), 'data_batch_2.bin', 'CIFAR-10');
    await refused(openDataset(file, { preprocess: GRAY }), 'data_batch_1.bin', '3x32x32', '1x28x28');
  });
});

describe('image folder', () => {
  it('reads class subfolders of PNGs, resized and centre-cropped', async () => {
    const dir = path.join(tmp, 'imgs');
    const make = async (cls: string, name: string, w: number, h: number, rgb: [number, number, number]): Promise<void> => {
      mkdirSync(path.join(dir, cls), { recursive: true });
      await sharp({ create: { width: w, height: h, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } })
        .png().toFile(path.join(dir, cls, name));
    };
    await make('cat', 'a.png', 40, 30, [200, 10, 60]);
    await make('cat', 'b.png', 16, 16, [200, 10, 60]);
    await make('dog', 'c.png', 30, 50, [0, 128, 255]);
    writeFileSync(path.join(dir, 'dog', 'notes.txt'), 'not an image');
    const pre: Preprocess = { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25], size: [8, 8], channels: 3 };
    const ds = await openDataset(dir, { preprocess: pre });
    try {
      assert.equal(ds.format, 'folder');
      assert.equal(ds.size, 3);
      assert.equal(ds.classes, 2);
      assert.deepEqual(ds.classNames, ['cat', 'dog']);
      assert.deepEqual(ds.shape, [3, 8, 8]);
      const got = concat(await all(ds, 2));
      assert.deepEqual(got.labels, [0, 0, 1]);
      const colour = (rgb: number[]): number[] => rgb.flatMap((v) => Array<number>(64).fill((v / 255 - 0.5) / 0.25));
      const tol = 1.5 / 255 / 0.25;
      close(got.images.subarray(0, 192), colour([200, 10, 60]), tol, 'a.png');
      close(got.images.subarray(192, 384), colour([200, 10, 60]), tol, 'b.png');
      close(got.images.subarray(384), colour([0, 128, 255]), tol, 'c.png');
      assert.match(await ds.sha256(), /^[0-9a-f]{64}$/);
    } finally {
      await ds.close();
    }
    const gray = await openDataset(dir, { preprocess: { mean: [0], std: [1], size: [6, 6], channels: 1 } });
    try {
      assert.deepEqual(gray.shape, [1, 6, 6]);
      const b = await gray.batch([2]);
      assert.equal(b.images.length, 36);
      assert.ok(b.images.every((v) => v > 0.3 && v < 0.7), 'blue-ish grey');
    } finally {
      await gray.close();
    }
    writeFileSync(path.join(dir, 'dog', 'broken.png'), 'not a png');
    const broken = await openDataset(dir, { preprocess: pre });
    assert.equal(broken.size, 4); // dog/broken.png sorts before dog/c.png
    await refused(broken.batch([2]), 'broken.png');
    await broken.close();
  });
});

describe('refusals', () => {
  const px = readFileSync(IMAGES).subarray(16, 16 + 10 * 784);

  it('missing file', async () => {
    await refused(openDataset(path.join(tmp, 'nope-images-idx3-ubyte'), { preprocess: GRAY }), 'nope-images-idx3-ubyte', 'no such file');
  });

  it('missing labels file names the expected path', async () => {
    const dir = path.join(tmp, 'nolabels');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'a-images-idx3-ubyte'), idxImages(10, 28, 28, px));
    await refused(openDataset(path.join(dir, 'a-images-idx3-ubyte'), { preprocess: GRAY }), path.join(dir, 'a-labels-idx1-ubyte'));
  });

  it('truncated IDX (header claims more images than the file has)', async () => {
    const dir = path.join(tmp, 'trunc');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'b-images-idx3-ubyte'), idxImages(1000, 28, 28, px));
    writeFileSync(path.join(dir, 'b-labels-idx1-ubyte'), idxLabels(Array(1000).fill(0)));
    await refused(openDataset(path.join(dir, 'b-images-idx3-ubyte'), { preprocess: GRAY }), 'b-images-idx3-ubyte', 'truncated');
  });

  it('wrong magic', async () => {
    const dir = path.join(tmp, 'magic');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'c-images-idx3-ubyte'), idxImages(10, 28, 28, px, 0x801));
    writeFileSync(path.join(dir, 'c-labels-idx1-ubyte'), idxLabels(Array(10).fill(0)));
    await refused(openDataset(path.join(dir, 'c-images-idx3-ubyte'), { preprocess: GRAY }), 'c-images-idx3-ubyte', 'magic');
  });

  it('shape mismatch', async () => {
    await refused(openDataset(IMAGES, { preprocess: { mean: [0.5], std: [0.5], size: [32, 32], channels: 3 } }),
      IMAGES, 'images are 1x28x28 but the model takes 3x32x32');
  });

  it('labels count differs from the images count', async () => {
    const dir = path.join(tmp, 'count');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'd-images-idx3-ubyte'), idxImages(10, 28, 28, px));
    writeFileSync(path.join(dir, 'd-labels-idx1-ubyte'), idxLabels(Array(9).fill(1)));
    await refused(openDataset(path.join(dir, 'd-images-idx3-ubyte'), { preprocess: GRAY }), 'd-labels-idx1-ubyte', '9 labels', '10 images');
  });

  it('unknown format and corrupt .gz', async () => {
    const f = path.join(tmp, 'notes.txt');
    writeFileSync(f, 'hello');
    await refused(openDataset(f, { preprocess: GRAY }), 'notes.txt', 'IDX', 'CIFAR');
    const dir = path.join(tmp, 'badgz');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'e-images-idx3-ubyte.gz'), 'not gzip at all');
    writeFileSync(path.join(dir, 'e-labels-idx1-ubyte.gz'), gzipSync(idxLabels([1])));
    await refused(openDataset(path.join(dir, 'e-images-idx3-ubyte.gz'), { preprocess: GRAY, cacheDir }), 'e-images-idx3-ubyte.gz', 'gzip');
    assert.ok(readdirSync(cacheDir).every((n) => n.endsWith('.idx')), 'no temporary files left');
  });
});
