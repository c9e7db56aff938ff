/**
 * openDataset: picks the format of a data-set path and opens it. See dataset.ts for the
 * interface and each format's module for its layout rules.
 */
import { open, readdir } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../../errors.js';
import { openCifar, findCifarInFolder } from './cifar.js';
import { ACCEPTED, applyLimit, checkPreprocess, errCode, statOrThrow } from './common.js';
import type { Dataset, OpenOptions } from './dataset.js';
import { classFolders, isImageFile, openImageFolder } from './folder.js';
import { LIST_EXTS, openList } from './list.js';
import { findIdxInFolder, openIdx } from './idx.js';
import { openNpy, openNpz } from './npy.js';

export type { Batch, DataFormat, Dataset, OpenOptions, Preprocess } from './dataset.js';
export { DEFAULT_POLICY, describePolicy, parseCrop, parseResize, type ImagePolicy } from './image-policy.js';
export { parsePreset, PRESET_NAMES, PRESETS, type Preset } from './presets.js';
export { checkClassCount, readClassList } from './classes.js';
export { defaultCacheDir } from './gzcache.js';
export { parseNpyHeader } from './npy.js';

async function sniff(file: string): Promise<Buffer> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(8);
    const { bytesRead } = await fh.read(buf, 0, 8, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

export async function openDataset(p: string, opts: OpenOptions): Promise<Dataset> {
  checkPreprocess(opts.preprocess);
  if (opts.limit !== undefined) applyLimit(1, opts.limit); // refuse a bad --limit before any work
  const st = await statOrThrow(p);

  if (st.isDirectory()) {
    try {
      await readdir(p);
    } catch (e) {
      throw new UserError(`${p}: cannot list the folder (${errCode(e)}); check permissions`);
    }
    const idx = await findIdxInFolder(p);
    if (idx) return openIdx(idx.images, opts, idx.note);
    const cifar = await findCifarInFolder(p);
    if (cifar) return openCifar(cifar.files, opts, cifar.note);
    // A folder holding an images .npy (its labels are found next to it).
    for (const n of ['x.npy', 'images.npy', 'x_test.npy', 'X_test.npy', 'test_images.npy']) {
      const f = path.join(p, n);
      let isFile = false;
      try { isFile = (await statOrThrow(f)).isFile(); } catch { /* not there */ }
      if (isFile) return openNpy(f, opts);
    }
    const classes = await classFolders(p);
    if (classes) return openImageFolder(p, classes, opts);
    throw new UserError(`${p}: folder holds no data set reslens can read; ${ACCEPTED}`);
  }
  if (!st.isFile()) throw new UserError(`${p}: not a regular file or folder; ${ACCEPTED}`);

  const base = path.basename(p);
  const lower = base.toLowerCase();
  if (lower.endsWith('.npy')) return openNpy(p, opts);
  if (lower.endsWith('.npz')) return openNpz(p, opts);
  if (/images[-.]idx3-ubyte(\.gz)?$/.test(base)) return openIdx(p, opts);
  if (/labels[-.]idx1-ubyte(\.gz)?$/.test(base)) {
    const images = path.join(path.dirname(p), base.replace(/labels([-.])idx1/, 'images$1idx3'));
    throw new UserError(`${p}: is an IDX labels file; pass the images file ${images} (the labels are found from it)`);
  }
  if (lower.endsWith('.bin')) return openCifar([p], opts);
  if (LIST_EXTS.has(path.extname(lower))) return openList(p, opts);

  let head: Buffer;
  try {
    head = await sniff(p);
  } catch (e) {
    throw new UserError(`${p}: cannot open (${errCode(e)}); check the path and permissions`);
  }
  if (head.length >= 4 && head.readUInt32BE(0) === 0x00000803) {
    throw new UserError(`${p}: looks like IDX images but is not named *-images-idx3-ubyte; rename it (and its labels file *-labels-idx1-ubyte) so the labels can be found`);
  }
  if (head.length >= 6 && head[0] === 0x93 && head.subarray(1, 6).toString('latin1') === 'NUMPY') return openNpy(p, opts);
  if (head.length >= 4 && head.readUInt32BE(0) === 0x504b0304) return openNpz(p, opts);
  if (isImageFile(base)) {
    throw new UserError(`${p}: is a single image; pass a folder holding one subfolder of images per class`);
  }
  throw new UserError(`${p}: not a data set format reslens knows; ${ACCEPTED}`);
}
