/**
 * NumPy .npy (images + a labels .npy next to it) and .npz (a zip of .npy arrays).
 *
 * Images are 3-D (N,H,W: grayscale) or 4-D, NCHW or NHWC (the axis of size 1 or 3 is the
 * channel axis; when both could be, float arrays are taken as NCHW and integer ones as NHWC,
 * unless the model's channel count decides). Integer pixels are 0..255 and are normalised as
 * (v/255 - mean) / std; FLOAT PIXELS ARE TAKEN AS ALREADY SCALED TO [0,1] and only get
 * (v - mean) / std (a float array whose first images exceed 5 is refused as unscaled).
 * Labels are 1-D (or N,1) non-negative whole numbers of any integer or float dtype.
 *
 * A .npy is read with random-access reads; its labels are loaded whole (4-8 bytes a sample).
 * A .npz is loaded into memory (unzipped with fflate) — fine for MNIST/CIFAR-sized test sets;
 * save big data sets as .npy pairs instead.
 */
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { unzipSync } from 'fflate';
import { UserError } from '../../errors.js';
import {
  applyLimit, checkShape, countStr, FileSource, makeDataset, MemSource, Normaliser, sha256Files,
  shapeStr, type ByteSource,
} from './common.js';
import type { Dataset, OpenOptions } from './dataset.js';

export interface NpyHeader {
  descr: string;
  shape: number[];
  /** Byte offset of the data from the start of the .npy. */
  dataOffset: number;
  dtype: DType;
}

export interface DType {
  size: number;
  float: boolean;
  get: (dv: DataView, off: number) => number;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

/** '<f4', '|u1', '<i8', ... (either byte order) to a reader; null if unsupported. */
export function dtypeOf(descr: string): DType | null {
  const m = /^([<>|=]?)([fiu])(\d)$/.exec(descr);
  if (!m) return null;
  const le = m[1] !== '>';
  const kind = m[2]!, size = Number(m[3]);
  const t = `${kind}${size}`;
  const get: Record<string, DType['get']> = {
    f4: (dv, o) => dv.getFloat32(o, le),
    f8: (dv, o) => dv.getFloat64(o, le),
    u1: (dv, o) => dv.getUint8(o),
    i1: (dv, o) => dv.getInt8(o),
    u2: (dv, o) => dv.getUint16(o, le),
    i2: (dv, o) => dv.getInt16(o, le),
    u4: (dv, o) => dv.getUint32(o, le),
    i4: (dv, o) => dv.getInt32(o, le),
    u8: (dv, o) => Number(dv.getBigUint64(o, le)),
    i8: (dv, o) => Number(dv.getBigInt64(o, le)),
  };
  const g = get[t];
  return g ? { size, float: kind === 'f', get: g } : null;
}

/** Parses the .npy header from its first bytes (`head` must hold at least the whole header). */
export function parseNpyHeader(head: Uint8Array, file: string): NpyHeader {
  if (head.length < 10 || MAGIC.some((b, i) => head[i] !== b)) {
    throw new UserError(`${file}: not a .npy file (no \\x93NUMPY magic); save it with numpy.save`);
  }
  const major = head[6]!;
  let hlen: number, start: number;
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (major === 1) { hlen = dv.getUint16(8, true); start = 10; }
  else if (major === 2 || major === 3) {
    if (head.length < 12) throw new UserError(`${file}: truncated .npy header; re-save it`);
    hlen = dv.getUint32(8, true); start = 12;
  } else throw new UserError(`${file}: .npy format version ${major} is not supported (1-3 are); re-save it with numpy.save`);
  if (head.length < start + hlen) throw new UserError(`${file}: truncated .npy header (needs ${start + hlen} bytes, has ${head.length}); re-save it`);
  const text = Buffer.from(head.subarray(start, start + hlen)).toString(major === 3 ? 'utf8' : 'latin1');
  const descr = /['"]descr['"]\s*:\s*['"]([^'"]+)['"]/.exec(text)?.[1];
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(text)?.[1];
  const shapeText = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(text)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new UserError(`${file}: unreadable .npy header ${JSON.stringify(text.trim().slice(0, 80))} (structured dtype?); save a plain numeric array`);
  }
  if (fortran === 'True') throw new UserError(`${file}: array is in Fortran order; save numpy.ascontiguousarray(a) instead`);
  const shape = shapeText.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) throw new UserError(`${file}: bad shape (${shapeText}) in the .npy header; re-save it`);
  const dtype = dtypeOf(descr);
  if (!dtype) throw new UserError(`${file}: dtype '${descr}' is not supported (uint8, int8-64, float32/64 are); convert with a.astype('uint8') or 'float32'`);
  return { descr, shape, dataOffset: start + hlen, dtype };
}

async function readHeader(src: ByteSource): Promise<NpyHeader> {
  const first = await src.read(0, Math.min(src.size, 12));
  let need = 12;
  if (first.length >= 10 && first[6] === 1) need = 10 + new DataView(first.buffer, first.byteOffset, first.byteLength).getUint16(8, true);
  else if (first.length >= 12) need = 12 + new DataView(first.buffer, first.byteOffset, first.byteLength).getUint32(8, true);
  const head = need <= first.length ? first : await src.read(0, Math.min(src.size, need));
  const h = parseNpyHeader(head, src.name);
  const elems = h.shape.reduce((a, b) => a * b, 1);
  const want = h.dataOffset + elems * h.dtype.size;
  if (src.size < want) {
    throw new UserError(`${src.name}: truncated: the header says ${h.descr} (${h.shape.join(', ')}) (${want} bytes) but it has ${src.size} bytes; re-save it`);
  }
  return h;
}

/** Candidate labels file names for an images .npy: x->y, images->labels, image->label. */
export function labelsCandidates(images: string): string[] {
  const dir = path.dirname(images);
  const base = path.basename(images, '.npy');
  const parts = base.split(/([_\-.])/);
  const swaps: Record<string, string[]> = {
    x: ['y', 'Y'], X: ['y', 'Y'], images: ['labels'], Images: ['Labels'], image: ['label', 'labels'],
    imgs: ['labels'], IMAGES: ['LABELS'], data: ['labels'],
  };
  const out: string[] = [];
  parts.forEach((p, i) => {
    for (const r of swaps[p] ?? []) {
      const c = [...parts];
      c[i] = r;
      out.push(path.join(dir, c.join('') + '.npy'));
    }
  });
  return [...new Set(out)];
}

interface Layout { C: number; H: number; W: number; order: 'chw' | 'hwc' }

function layoutOf(name: string, h: NpyHeader, channels: number | undefined): Layout {
  const s = h.shape;
  if (s.length === 3) return { C: 1, H: s[1]!, W: s[2]!, order: 'chw' };
  if (s.length !== 4) {
    throw new UserError(`${name}: images must be 3-D (N,H,W) or 4-D (N,C,H,W or N,H,W,C) but have shape (${s.join(', ')}); reshape them`);
  }
  const chw: Layout = { C: s[1]!, H: s[2]!, W: s[3]!, order: 'chw' };
  const hwc: Layout = { C: s[3]!, H: s[1]!, W: s[2]!, order: 'hwc' };
  const isCh = (d: number): boolean => d === 1 || d === 3;
  const okChw = isCh(s[1]!), okHwc = isCh(s[3]!);
  if (channels !== undefined) {
    const byChw = okChw && s[1] === channels, byHwc = okHwc && s[3] === channels;
    if (byChw && !byHwc) return chw;
    if (byHwc && !byChw) return hwc;
  }
  if (okChw && !okHwc) return chw;
  if (okHwc && !okChw) return hwc;
  return h.dtype.float ? chw : hwc;
}

interface Arrays {
  images: ByteSource;
  labels: ByteSource;
  /** Shown in messages and the description. */
  shown: string;
  files: string[];
  format: 'npy' | 'npz';
  what: string;
}

async function readLabels(src: ByteSource, h: NpyHeader): Promise<{ labels: Int32Array; max: number }> {
  const n = h.shape[0] ?? 0;
  if (!(h.shape.length === 1 || (h.shape.length === 2 && h.shape[1] === 1))) {
    throw new UserError(`${src.name}: labels must be 1-D class indices but have shape (${h.shape.join(', ')}); save argmax(y, axis=1) for one-hot labels`);
  }
  const bytes = await src.read(h.dataOffset, n * h.dtype.size);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const labels = new Int32Array(n);
  let max = 0;
  for (let i = 0; i < n; i++) {
    const v = h.dtype.get(dv, i * h.dtype.size);
    if (!Number.isInteger(v) || v < 0 || v > 2 ** 31 - 1) {
      throw new UserError(`${src.name}: label ${i} is ${v}; labels must be whole numbers >= 0 (class indices)`);
    }
    labels[i] = v;
    if (v > max) max = v;
  }
  return { labels, max };
}

async function openArrays(a: Arrays, opts: OpenOptions): Promise<Dataset> {
  try {
    const ih = await readHeader(a.images);
    if (ih.shape.length === 1) {
      throw new UserError(`${a.images.name}: is 1-D (${ih.shape[0]} values): it looks like labels; pass the images array`);
    }
    const lh = await readHeader(a.labels);
    const total = ih.shape[0]!;
    if (total === 0) throw new UserError(`${a.images.name}: holds no images; pass a non-empty array`);
    const lay = layoutOf(a.images.name, ih, opts.preprocess.channels);
    const shape: [number, number, number] = [lay.C, lay.H, lay.W];
    if (lay.H === 0 || lay.W === 0 || lay.C === 0) throw new UserError(`${a.images.name}: images are ${shapeStr(shape)}; they hold no pixels`);
    checkShape(a.images.name, shape, opts.preprocess);
    if (lh.shape[0] !== total) {
      throw new UserError(`${a.labels.name}: holds ${lh.shape[0]} labels but ${a.images.name} holds ${total} images; pass a matching pair`);
    }
    const { labels, max } = await readLabels(a.labels, lh);
    await a.labels.close();
    const norm = new Normaliser(lay.C, opts.preprocess, a.images.name);
    const size = applyLimit(total, opts.limit);
    const per = lay.C * lay.H * lay.W, hw = lay.H * lay.W;
    const item = ih.dtype.size;
    const isU8 = !ih.dtype.float && item === 1 && /u1$/.test(ih.descr);
    const scale = ih.dtype.float ? 1 : 1 / 255;
    const get = ih.dtype.get;
    const src = a.images;

    if (ih.dtype.float) {
      // Catch 0..255 data saved as float: [0,1] is assumed.
      const k = Math.min(total, 8);
      const bytes = await src.read(ih.dataOffset, k * per * item);
      const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      let mx = -Infinity;
      for (let i = 0; i < k * per; i++) { const v = get(dv, i * item); if (v > mx) mx = v; }
      if (mx > 5) {
        throw new UserError(`${a.images.name}: float images must be scaled to [0,1] but reach ${mx}; divide by 255 or save them as uint8`);
      }
    }
    return makeDataset({
      description: `${a.format === 'npy' ? 'NPY' : 'NPZ'} ${a.shown} (${countStr(size, total)}${a.what})`,
      format: a.format,
      size,
      shape,
      classes: max + 1,
      sha256: () => sha256Files(a.files),
      maxRun: Math.max(1, Math.floor((64 << 20) / (per * item))),
      async readRun(start, count, dst, labs, at) {
        const bytes = await src.read(ih.dataOffset + start * per * item, count * per * item);
        const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        for (let k = 0; k < count; k++) {
          labs[at + k] = labels[start + k]!;
          if (isU8) norm.writeU8(bytes, k * per, lay.order, hw, dst, (at + k) * per);
          else {
            const base = k * per * item;
            norm.write((i) => get(dv, base + i * item), lay.order, hw, scale, dst, (at + k) * per);
          }
        }
      },
      close: () => src.close(),
    });
  } catch (e) {
    await a.images.close();
    await a.labels.close();
    throw e;
  }
}

export async function openNpy(file: string, opts: OpenOptions): Promise<Dataset> {
  const cands = labelsCandidates(file);
  const labelsFile = cands.find((c) => existsSync(c));
  if (!labelsFile) {
    const names = cands.map((c) => path.basename(c));
    throw new UserError(`${file}: no labels .npy next to it${names.length ? ` (looked for ${names.join(', ')})` : ''}; save the labels as ${names[0] ?? 'y.npy (and the images as x.npy)'} or pass an .npz with x and y`);
  }
  const images = await FileSource.open(file);
  let labels: FileSource;
  try {
    labels = await FileSource.open(labelsFile);
  } catch (e) {
    await images.close();
    throw e;
  }
  return openArrays({ images, labels, shown: file, files: [file, labelsFile], format: 'npy', what: `; labels ${path.basename(labelsFile)}` }, opts);
}

const NPZ_PAIRS: [string, string][] = [
  ['x', 'y'], ['images', 'labels'], ['X', 'y'], ['x_test', 'y_test'], ['X_test', 'y_test'], ['test_images', 'test_labels'],
];
const MAX_NPZ_BYTES = 2 ** 31 - 1;

export async function openNpz(file: string, opts: OpenOptions): Promise<Dataset> {
  // An .npz is loaded into memory whole (fflate's unzipSync); fine for test-set sizes.
  let buf: Uint8Array;
  try {
    buf = await readFile(file);
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_FS_FILE_TOO_LARGE' || (e as { code?: string }).code === 'ERR_STRING_TOO_LONG') {
      throw new UserError(`${file}: too big to load (over ${MAX_NPZ_BYTES} bytes); save the images and labels as two .npy files`);
    }
    throw new UserError(`${file}: cannot read (${(e as { code?: string }).code ?? String(e)}); check the path`);
  }
  const order: string[] = [];
  const unzip = (keep: (name: string) => boolean): Record<string, Uint8Array> => {
    // Each array is inflated into a buffer of its declared size: refuse a zip bomb's before inflating.
    let big: { name: string; size: number } | null = null;
    let out: Record<string, Uint8Array>;
    try {
      out = unzipSync(buf, { filter: (f) => {
        const want = keep(f.name);
        if (want && f.originalSize > MAX_NPZ_BYTES) big ??= { name: f.name, size: f.originalSize };
        return want && !big;
      } });
    } catch (e) {
      throw new UserError(`${file}: not a readable .npz (zip) file (${e instanceof Error ? e.message : String(e)}); re-save it with numpy.savez`);
    }
    const b = big as { name: string; size: number } | null; // set inside the filter callback
    if (b) throw new UserError(`${file}: the array ${b.name} unpacks to ${b.size} bytes, over ${MAX_NPZ_BYTES}; save the images and labels as two .npy files`);
    return out;
  };
  unzip((name) => { if (name.endsWith('.npy')) order.push(name.slice(0, -4)); return false; });
  if (order.length === 0) throw new UserError(`${file}: holds no .npy arrays; save images and labels with numpy.savez(file, x=images, y=labels)`);

  let pair = NPZ_PAIRS.find(([x, y]) => order.includes(x) && order.includes(y));
  let arrays: Record<string, Uint8Array>;
  let how: string;
  if (pair) {
    const want = new Set(pair.map((n) => n + '.npy'));
    arrays = unzip((name) => want.has(name));
    how = `arrays ${pair[0]}/${pair[1]}`;
  } else {
    arrays = unzip((name) => name.endsWith('.npy'));
    const headers = order.map((n) => {
      try { return parseNpyHeader(arrays[n + '.npy']!, `${file}:${n}`); } catch { return null; }
    });
    const xi = headers.findIndex((h) => h !== null && (h.shape.length === 4 || h.shape.length === 3));
    const yi = headers.findIndex((h) => h !== null && (h.shape.length === 1 || (h.shape.length === 2 && h.shape[1] === 1)));
    if (xi < 0 || yi < 0) {
      throw new UserError(`${file}: no images/labels arrays found among ${order.join(', ')}; name them x and y (numpy.savez(file, x=images, y=labels))`);
    }
    pair = [order[xi]!, order[yi]!];
    how = `arrays ${pair[0]}/${pair[1]} (no x/y names; took the first 4-D and 1-D arrays)`;
  }
  const [xn, yn] = pair;
  const images = new MemSource(`${file}:${xn}`, arrays[xn + '.npy']!);
  const labels = new MemSource(`${file}:${yn}`, arrays[yn + '.npy']!);
  return openArrays({ images, labels, shown: file, files: [file], format: 'npz', what: `; ${how}` }, opts);
}
