/**
 * Shared pieces of the data loaders: random-access byte sources, streamed hashing, the
 * normaliser, shape checks and the batching core every format plugs a reader into.
 */
import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { UserError } from '../../errors.js';
import { kindOf } from '../../oserror.js';
import type { Batch, Dataset, Preprocess } from './dataset.js';

export const ACCEPTED =
  'reslens reads IDX (MNIST/Fashion-MNIST *-images-idx3-ubyte[.gz] with its labels file, or a folder of them), ' +
  'CIFAR-10/100 binary (.bin or their folder), .npy images with a labels .npy, .npz (x/y or images/labels), ' +
  'a folder of class subfolders of images, or a list file (.txt/.tsv/.csv: path and label a line) of images';

/** Random-access bytes: a file read through an fs handle, or a buffer (.npz arrays). */
export interface ByteSource {
  readonly name: string;
  readonly size: number;
  /** Exactly `length` bytes at `offset`; a short read is a UserError (the file shrank). */
  read(offset: number, length: number): Promise<Uint8Array>;
  close(): Promise<void>;
}

export class FileSource implements ByteSource {
  private constructor(readonly name: string, readonly size: number, private fh: FileHandle | null) {}

  static async open(file: string, shownAs = file): Promise<FileSource> {
    const { fh, size } = await openRegular(file, shownAs);
    return new FileSource(shownAs, size, fh);
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    if (!this.fh) throw new Error(`${this.name}: read after close`);
    const buf = Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await this.fh.read(buf, got, length - got, offset + got);
      if (bytesRead === 0) {
        throw new UserError(`${this.name}: truncated: needed bytes ${offset}..${offset + length} but the file ends at ${offset + got}; re-download or re-create it`);
      }
      got += bytesRead;
    }
    return buf;
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    if (fh) await fh.close();
  }
}

export class MemSource implements ByteSource {
  readonly size: number;
  constructor(readonly name: string, private bytes: Uint8Array) {
    this.size = bytes.length;
  }
  async read(offset: number, length: number): Promise<Uint8Array> {
    if (offset + length > this.bytes.length) {
      throw new UserError(`${this.name}: truncated: needed bytes ${offset}..${offset + length} but it holds ${this.bytes.length}; re-create the file`);
    }
    return this.bytes.subarray(offset, offset + length);
  }
  async close(): Promise<void> {}
}

/**
 * Opens a regular file for reading. O_NONBLOCK so that a FIFO does not wait for a writer; a
 * device, FIFO or socket (a link to /dev/zero would never end) is refused by fstat on the
 * opened descriptor, so what is checked is what is read.
 */
export async function openRegular(file: string, shownAs = file): Promise<{ fh: FileHandle; size: number }> {
  let fh: FileHandle;
  try {
    fh = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    throw new UserError(`${shownAs}: cannot open (${errCode(e)}); check the path and permissions`);
  }
  const st = await fh.stat();
  if (!st.isFile()) {
    await fh.close();
    throw new UserError(`${shownAs}: is ${kindOf(st)}, not a regular file; pass the data file itself`);
  }
  return { fh, size: st.size };
}

/** A small text file (a list of class names), refused if it is not a regular file or over `max` bytes. */
export function readSmallTextSync(file: string, max = 1 << 20): string {
  const fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new UserError(`${file}: is ${kindOf(st)}, not a regular file`);
    if (st.size > max) throw new UserError(`${file}: ${st.size} bytes is too large for a list of names (over ${max}); is it the right file?`);
    const buf = Buffer.alloc(st.size);
    const n = readSync(fd, buf, 0, st.size, 0);
    return buf.subarray(0, n).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

export function errCode(e: unknown): string {
  if (e && typeof e === 'object' && 'code' in e && typeof (e as { code: unknown }).code === 'string') return (e as { code: string }).code;
  return e instanceof Error ? e.message.split('\n')[0]! : String(e);
}

/** Stat that turns "missing" into a UserError naming the path. */
export async function statOrThrow(p: string): Promise<Awaited<ReturnType<typeof stat>>> {
  try {
    return await stat(p);
  } catch (e) {
    if (errCode(e) === 'ENOENT') throw new UserError(`${p}: no such file or folder; check the path`);
    throw new UserError(`${p}: cannot read (${errCode(e)}); check the path and permissions`);
  }
}

/** Streams files (in order) through one SHA-256; `prefix(i)` is hashed before file i if given. */
export async function sha256Files(files: string[], prefix?: (i: number) => string): Promise<string> {
  const h = createHash('sha256');
  for (let i = 0; i < files.length; i++) {
    if (prefix) h.update(prefix(i));
    // Only regular files, and only the bytes they had when opened: a link to a device never ends.
    const { fh, size } = await openRegular(files[i]!);
    try {
      if (size > 0) for await (const chunk of fh.createReadStream({ start: 0, end: size - 1, autoClose: false })) h.update(chunk as Buffer);
    } catch (e) {
      throw new UserError(`${files[i]}: cannot read while hashing (${errCode(e)}); is it still there?`);
    } finally {
      await fh.close();
    }
  }
  return h.digest('hex');
}

export function memo<T>(f: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | null = null;
  return () => {
    if (!p) {
      p = f();
      p.catch(() => { p = null; });
    }
    return p;
  };
}

/** (v*scale - mean[c]) / std[c] per channel: scale 1/255 for integer pixels, 1 for floats. */
export class Normaliser {
  readonly mean: Float64Array;
  readonly std: Float64Array;
  constructor(readonly channels: number, pre: Preprocess, what: string) {
    const pick = (xs: number[], name: 'mean' | 'std'): Float64Array => {
      if (!Array.isArray(xs) || (xs.length !== 1 && xs.length !== channels)) {
        throw new UserError(`--${name}: has ${Array.isArray(xs) ? xs.length : 0} values but ${what} has ${channels} channel${channels === 1 ? '' : 's'}; give ${channels === 1 ? '1 value' : `1 or ${channels} values`}`);
      }
      const out = new Float64Array(channels);
      for (let c = 0; c < channels; c++) {
        const v = xs.length === 1 ? xs[0]! : xs[c]!;
        if (!Number.isFinite(v) || (name === 'std' && v <= 0)) {
          throw new UserError(`--${name}: ${v} is not ${name === 'std' ? 'a positive number' : 'a finite number'}; fix the value`);
        }
        out[c] = v;
      }
      return out;
    };
    this.mean = pick(pre.mean, 'mean');
    this.std = pick(pre.std, 'std');
  }

  /** Writes one CHW image to dst[dstOff..]; get(i) is the i-th source value in `layout` order. */
  write(get: (i: number) => number, layout: 'chw' | 'hwc', hw: number, scale: number, dst: Float32Array, dstOff: number): void {
    const C = this.channels;
    for (let c = 0; c < C; c++) {
      const m = this.mean[c]!, s = this.std[c]!;
      const o = dstOff + c * hw;
      if (layout === 'chw') {
        const base = c * hw;
        for (let p = 0; p < hw; p++) dst[o + p] = (get(base + p) * scale - m) / s;
      } else {
        for (let p = 0; p < hw; p++) dst[o + p] = (get(p * C + c) * scale - m) / s;
      }
    }
  }

  /** Fast path for uint8 pixels: (v/255 - mean) / std. */
  writeU8(src: Uint8Array, srcOff: number, layout: 'chw' | 'hwc', hw: number, dst: Float32Array, dstOff: number): void {
    const C = this.channels;
    for (let c = 0; c < C; c++) {
      const m = this.mean[c]!, s = this.std[c]!;
      const o = dstOff + c * hw;
      if (layout === 'chw') {
        const base = srcOff + c * hw;
        for (let p = 0; p < hw; p++) dst[o + p] = (src[base + p]! / 255 - m) / s;
      } else {
        const base = srcOff + c;
        for (let p = 0; p < hw; p++) dst[o + p] = (src[base + p * C]! / 255 - m) / s;
      }
    }
  }
}

export function shapeStr(s: readonly number[]): string {
  return s.join('x');
}

/** Refuses data whose C,H,W differ from what the model takes (where the model says). */
export function checkShape(file: string, shape: [number, number, number], pre: Preprocess): void {
  const [C, H, W] = shape;
  const wantC = pre.channels ?? C;
  const [wantH, wantW] = pre.size ?? [H, W];
  const have = `${file}: images are ${shapeStr(shape)} but the model takes ${wantC}x${wantH}x${wantW}`;
  const kind = (c: number) => `${c} channel${c === 1 ? '' : 's'}${c === 1 ? ', grayscale' : c === 3 ? ', colour' : ''}`;
  if (C !== wantC) {
    // --size changes height and width only, so it is no answer to a channel mismatch.
    throw new UserError(`${have} (${kind(C)} against ${kind(wantC)}); use the data set the model was trained on, or a folder of images (converted to ${wantC === 1 ? 'grayscale' : 'RGB'})`);
  }
  if (H !== wantH || W !== wantW) {
    throw new UserError(`${have}; use ${wantH}x${wantW} images, a folder of images (resized), or --size ${H},${W} if the model takes any input size`);
  }
}

export function checkPreprocess(pre: Preprocess): void {
  if (!pre || typeof pre !== 'object') throw new Error('openDataset: preprocess is required');
  if (pre.size !== undefined) {
    const ok = Array.isArray(pre.size) && pre.size.length === 2 && pre.size.every((v) => Number.isInteger(v) && v > 0 && v <= 16384);
    if (!ok) throw new UserError(`--size: ${String(pre.size)} is not a valid HxW input size; give two positive whole numbers like 224x224`);
  }
  if (pre.channels !== undefined && !(Number.isInteger(pre.channels) && pre.channels > 0 && pre.channels <= 4)) {
    throw new UserError(`model input: ${pre.channels} channels is not a valid channel count for image data (1 grayscale or 3 RGB)`);
  }
}

/** limit: undefined = all; otherwise a positive whole number (larger than the data set = all). */
export function applyLimit(total: number, limit: number | undefined): number {
  if (limit === undefined) return total;
  if (!Number.isInteger(limit) || limit <= 0) {
    throw new UserError(`--limit: ${limit} is not a positive whole number; give how many samples to take, e.g. --limit 1000`);
  }
  return Math.min(total, limit);
}

export function countStr(size: number, total: number, noun = 'images'): string {
  return size === total ? `${total} ${noun}` : `first ${size} of ${total} ${noun}`;
}

/**
 * A format's reader: fills `count` consecutive samples starting at `start` as normalised CHW
 * floats at dst[dstSample*C*H*W..] and their labels at labels[dstSample..].
 */
export type ReadRun = (start: number, count: number, dst: Float32Array, labels: Int32Array, dstSample: number) => Promise<void>;

/** What a format gives makeDataset: the Dataset's description fields plus how to read runs. */
export interface CoreSpec extends Pick<Dataset, 'description' | 'format' | 'size' | 'shape' | 'classes' | 'classNames' | 'sha256' | 'close' | 'decodeStats'> {
  readRun: ReadRun;
  /** Largest run read at once (bounds memory of one read); default 4096 samples. */
  maxRun?: number;
}

export function makeDataset(spec: CoreSpec): Dataset {
  const { size, shape } = spec;
  const per = shape[0] * shape[1] * shape[2];
  const maxRun = spec.maxRun ?? 4096;
  let closed = false;
  let started: number | undefined;
  let waitMs = 0;
  let images = 0;

  const readIndices = async (indices: number[]): Promise<Batch> => {
    if (closed) throw new Error('data set used after close()');
    const n = indices.length;
    for (const i of indices) {
      if (!Number.isInteger(i) || i < 0 || i >= size) {
        throw new UserError(`sample index ${i} is out of range: the data set has ${size} samples (0..${size - 1}); pick an index below ${size}`);
      }
    }
    const images = new Float32Array(n * per);
    const labels = new Int32Array(n);
    // Group consecutive indices into runs so each run is one read.
    let k = 0;
    while (k < n) {
      let e = k + 1;
      while (e < n && e - k < maxRun && indices[e] === indices[e - 1]! + 1) e++;
      await spec.readRun(indices[k]!, e - k, images, labels, k);
      k = e;
    }
    return { images, labels, indices: indices.slice(), n };
  };

  return {
    description: spec.description,
    format: spec.format,
    size,
    shape,
    classes: spec.classes,
    ...(spec.classNames ? { classNames: spec.classNames } : {}),
    sha256: memo(spec.sha256),
    batches(batchSize: number): AsyncIterable<Batch> {
      if (!Number.isInteger(batchSize) || batchSize <= 0) {
        throw new UserError(`--batch: ${batchSize} is not a positive whole number; give e.g. --batch 64`);
      }
      const range = (s: number) => Array.from({ length: Math.min(size, s + batchSize) - s }, (_, i) => s + i);
      return {
        async *[Symbol.asyncIterator]() {
          started ??= performance.now();
          // The next batch is read while the consumer works on this one (image decoding runs
          // on libuv's threads, so it overlaps onnxruntime's evaluation).
          let ahead: Promise<Batch> | null = size > 0 ? readIndices(range(0)) : null;
          for (let s = 0; ahead; s += batchSize) {
            const t0 = performance.now();
            const b = await ahead;
            waitMs += performance.now() - t0;
            ahead = s + batchSize < size ? readIndices(range(s + batchSize)) : null;
            // A consumer that stops early never awaits the read ahead: its failure is not news.
            ahead?.catch(() => {});
            images += b.n;
            yield b;
          }
        },
      };
    },
    batch: readIndices,
    async close() {
      if (closed) return;
      closed = true;
      await spec.close();
    },
    ...(spec.decodeStats ? { decodeStats: spec.decodeStats } : {}),
    waitStats: () => ({ waitSeconds: waitMs / 1000, elapsedSeconds: started === undefined ? 0 : (performance.now() - started) / 1000, images }),
  };
}
