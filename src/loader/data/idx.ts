/**
 * IDX (MNIST, Fashion-MNIST): an images file (magic 0x00000803: N,H,W of ubyte) and its labels
 * file (magic 0x00000801: N ubyte). .gz files are decompressed once into a cache file; images are
 * then read on demand, only the bytes a batch needs. The labels (one byte each) are read whole.
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../../errors.js';
import {
  applyLimit, checkShape, countStr, FileSource, makeDataset, Normaliser, sha256Files, statOrThrow,
} from './common.js';
import type { Dataset, OpenOptions } from './dataset.js';
import { gunzipCached } from './gzcache.js';

const IMAGES_RE = /images([-.])idx3-ubyte(\.gz)?$/;
const MAGIC_IMAGES = 0x00000803;
const MAGIC_LABELS = 0x00000801;

export function isIdxName(file: string): boolean {
  return IMAGES_RE.test(path.basename(file)) || /labels[-.]idx1-ubyte(\.gz)?$/.test(path.basename(file));
}

/** The labels file that goes with an images file: images-idx3 -> labels-idx1, same compression. */
export function labelsPathFor(images: string): string {
  const base = path.basename(images).replace(/images([-.])idx3/, 'labels$1idx1');
  return path.join(path.dirname(images), base);
}

/** Picks the images file in a folder: the only pair, or the t10k one. Null when there is none. */
export async function findIdxInFolder(dir: string): Promise<{ images: string; note: string } | null> {
  const names = (await readdir(dir)).filter((n) => IMAGES_RE.test(n)).sort();
  if (names.length === 0) return null;
  // Same data raw and gzipped: take the raw file (no decompression).
  const byStem = new Map<string, string>();
  for (const n of names) {
    const stem = n.replace(/\.gz$/, '');
    const had = byStem.get(stem);
    if (!had || had.endsWith('.gz')) byStem.set(stem, n);
  }
  const all = [...byStem.values()];
  if (all.length === 1) return { images: path.join(dir, all[0]!), note: '' };
  const t10k = all.filter((n) => n.startsWith('t10k'));
  if (t10k.length === 1) {
    const others = all.filter((n) => n !== t10k[0]);
    return { images: path.join(dir, t10k[0]!), note: `; chose ${t10k[0]} over ${others.join(', ')}` };
  }
  throw new UserError(`${dir}: holds ${all.length} IDX image files (${all.join(', ')}) and none is the single t10k one; pass the images file itself`);
}

function hex(v: number): string {
  return '0x' + v.toString(16).padStart(8, '0');
}

/**
 * The size an IDX file's header promises: magic (type, rank) then one big-endian uint32 per
 * dimension, then the data. Null until the header has arrived.
 */
export function idxSize(head: Buffer): number | null {
  if (head.length < 4) return null;
  const rank = head[3]!;
  const bytesPer: Record<number, number> = { 0x08: 1, 0x09: 1, 0x0b: 2, 0x0c: 4, 0x0d: 4, 0x0e: 8 };
  const per = bytesPer[head[2]!];
  // Not IDX: its first 16 bytes are enough for the reader to say what is wrong.
  if (head[0] !== 0 || head[1] !== 0 || !per || rank === 0) return 16;
  const headLen = 4 + 4 * rank;
  if (head.length < headLen) return null;
  let n = per;
  for (let i = 0; i < rank; i++) n *= head.readUInt32BE(4 + 4 * i);
  return headLen + n;
}

async function rawPath(file: string, cacheDir: string | undefined): Promise<string> {
  return file.endsWith('.gz') ? gunzipCached(file, idxSize, cacheDir) : file;
}

export async function openIdx(images: string, opts: OpenOptions, note = ''): Promise<Dataset> {
  const labelsFile = labelsPathFor(images);
  if (labelsFile === images) {
    throw new UserError(`${images}: is not an IDX images file name (*-images-idx3-ubyte[.gz]); pass the images file`);
  }
  await statOrThrow(images);
  try {
    await statOrThrow(labelsFile);
  } catch {
    throw new UserError(`${images}: its labels file ${labelsFile} is missing; put it next to the images file`);
  }

  const imgRaw = await rawPath(images, opts.cacheDir);
  const labRaw = await rawPath(labelsFile, opts.cacheDir);
  const imgName = images.endsWith('.gz') ? `${images} (decompressed)` : images;
  const labName = labelsFile.endsWith('.gz') ? `${labelsFile} (decompressed)` : labelsFile;

  const img = await FileSource.open(imgRaw, imgName);
  let lab: FileSource | null = null;
  try {
    if (img.size < 16) throw new UserError(`${images}: ${img.size} bytes is too short for an IDX header (16 bytes); re-download it`);
    const head = Buffer.from(await img.read(0, 16));
    if (head[0] === 0x1f && head[1] === 0x8b) {
      throw new UserError(`${images}: is gzip-compressed but not named .gz; rename it to ${path.basename(images)}.gz or gunzip it`);
    }
    const magic = head.readUInt32BE(0);
    if (magic !== MAGIC_IMAGES) {
      throw new UserError(`${images}: wrong magic ${hex(magic)} for IDX images (expected ${hex(MAGIC_IMAGES)}); is it the labels file or another format?`);
    }
    const total = head.readUInt32BE(4), H = head.readUInt32BE(8), W = head.readUInt32BE(12);
    if (total === 0 || H === 0 || W === 0) throw new UserError(`${images}: header says ${total} images of ${H}x${W}; the file holds no images`);
    const need = 16 + total * H * W;
    if (img.size < need) {
      throw new UserError(`${images}: truncated: the header says ${total} images of ${H}x${W} (${need} bytes) but the file has ${img.size} bytes; re-download it`);
    }

    lab = await FileSource.open(labRaw, labName);
    if (lab.size < 8) throw new UserError(`${labelsFile}: ${lab.size} bytes is too short for an IDX labels header (8 bytes); re-download it`);
    const lh = Buffer.from(await lab.read(0, 8));
    const lmagic = lh.readUInt32BE(0);
    if (lmagic !== MAGIC_LABELS) {
      throw new UserError(`${labelsFile}: wrong magic ${hex(lmagic)} for IDX labels (expected ${hex(MAGIC_LABELS)}); is it the right labels file?`);
    }
    const nLabels = lh.readUInt32BE(4);
    if (nLabels !== total) {
      throw new UserError(`${labelsFile}: holds ${nLabels} labels but ${images} holds ${total} images; pass a matching images/labels pair`);
    }
    if (lab.size < 8 + total) {
      throw new UserError(`${labelsFile}: truncated: the header says ${total} labels but the file has ${lab.size - 8}; re-download it`);
    }
    const labels = Uint8Array.from(await lab.read(8, total)); // 1 byte per sample: small
    await lab.close();
    lab = null;
    let max = 0;
    for (const v of labels) if (v > max) max = v;

    const shape: [number, number, number] = [1, H, W];
    checkShape(images, shape, opts.preprocess);
    const norm = new Normaliser(1, opts.preprocess, images);
    const size = applyLimit(total, opts.limit);
    const hw = H * W;
    const imgSrc = img;
    return makeDataset({
      description: `IDX ${images} (${countStr(size, total)}${note})`,
      format: 'idx',
      size,
      shape,
      classes: max + 1,
      sha256: () => sha256Files([images, labelsFile]),
      async readRun(start, count, dst, labs, at) {
        const bytes = await imgSrc.read(16 + start * hw, count * hw);
        for (let k = 0; k < count; k++) {
          norm.writeU8(bytes, k * hw, 'chw', hw, dst, (at + k) * hw);
          labs[at + k] = labels[start + k]!;
        }
      },
      close: () => imgSrc.close(),
    });
  } catch (e) {
    await img.close();
    if (lab) await lab.close();
    throw e;
  }
}
