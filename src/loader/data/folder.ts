/**
 * A folder with one subfolder of images per class (ImageNet/torchvision ImageFolder style).
 * Classes are the sorted subfolder names; each image is decoded by sharp, its shorter side
 * resized to max(H,W)*256/224, centre-cropped to the model's H,W, and turned to grayscale
 * (1-channel models) or RGB (alpha dropped). Images are decoded per batch, never all at once.
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../../errors.js';
import { applyLimit, countStr, errCode, makeDataset, Normaliser, sha256Files } from './common.js';
import type { Dataset, OpenOptions } from './dataset.js';

export const IMAGE_EXTS = new Set(['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif']);
const DECODE_CONCURRENCY = 4;

export function isImageFile(name: string): boolean {
  return IMAGE_EXTS.has(path.extname(name).toLowerCase());
}

/** Class subfolders (sorted) or null when `dir` has none. */
export async function classFolders(dir: string): Promise<string[] | null> {
  const ents = await readdir(dir, { withFileTypes: true });
  const cls = ents.filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name).sort();
  return cls.length ? cls : null;
}

type SharpFn = typeof import('sharp').default;

export async function openImageFolder(dir: string, classNames: string[], opts: OpenOptions): Promise<Dataset> {
  const pre = opts.preprocess;
  if (!pre.size) throw new UserError(`${dir}: an image folder needs the model's input size to resize to; pass --size HxW`);
  const [H, W] = pre.size;
  const C = pre.channels ?? 3;
  if (C !== 1 && C !== 3) throw new UserError(`${dir}: the model takes ${C} channels; image folders give 1 (grayscale) or 3 (RGB); use another data format (.npy) for this model`);

  const files: string[] = [];
  const fileLabels: number[] = [];
  for (let c = 0; c < classNames.length; c++) {
    let names: string[];
    try {
      names = await readdir(path.join(dir, classNames[c]!));
    } catch (e) {
      throw new UserError(`${path.join(dir, classNames[c]!)}: cannot list (${errCode(e)}); check permissions`);
    }
    for (const n of names.filter((n) => !n.startsWith('.') && isImageFile(n)).sort()) {
      files.push(path.join(dir, classNames[c]!, n));
      fileLabels.push(c);
    }
  }
  const total = files.length;
  if (total === 0) {
    throw new UserError(`${dir}: is not a data set: its subfolders (${classNames.slice(0, 5).join(', ')}${classNames.length > 5 ? ', ...' : ''}) hold no images (${[...IMAGE_EXTS].join(' ')}); pass a data-set file or a folder with one subfolder of images per class`);
  }
  const size = applyLimit(total, opts.limit);
  const norm = new Normaliser(C, pre, dir);
  const S = Math.round((Math.max(H, W) * 256) / 224);
  const hw = H * W, per = C * hw;
  let sharp: SharpFn | null = null;

  const decode = async (i: number, dst: Float32Array, at: number): Promise<void> => {
    const sh = sharp ?? (sharp = (await import('sharp')).default);
    const file = files[i]!;
    let data: Buffer, info: { width: number; height: number; channels: number };
    try {
      let img = sh(file).autoOrient().resize(S, S, { fit: 'outside' });
      if (C === 1) img = img.grayscale();
      ({ data, info } = await img.raw().toBuffer({ resolveWithObject: true }));
    } catch (e) {
      throw new UserError(`${file}: cannot decode image (${e instanceof Error ? e.message.split('\n')[0] : String(e)}); replace or remove it`);
    }
    const top = Math.floor((info.height - H) / 2), left = Math.floor((info.width - W) / 2);
    const ch = info.channels;
    const crop = new Uint8Array(per); // HWC
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const s = ((y + top) * info.width + (x + left)) * ch;
        const d = (y * W + x) * C;
        if (C === 1) crop[d] = ch >= 3 ? Math.round(0.2126 * data[s]! + 0.7152 * data[s + 1]! + 0.0722 * data[s + 2]!) : data[s]!;
        else if (ch >= 3) { crop[d] = data[s]!; crop[d + 1] = data[s + 1]!; crop[d + 2] = data[s + 2]!; }
        else { crop[d] = crop[d + 1] = crop[d + 2] = data[s]!; }
      }
    }
    norm.writeU8(crop, 0, 'hwc', hw, dst, at * per);
  };

  return makeDataset({
    description: `image folder ${dir} (${countStr(size, total)} in ${classNames.length} classes, resized to ${H}x${W}${C === 1 ? ' grayscale' : ' RGB'})`,
    format: 'folder',
    size,
    shape: [C, H, W],
    classes: classNames.length,
    classNames,
    sha256: () => sha256Files(files.slice(0, total), (i) => path.relative(dir, files[i]!) + '\n'),
    maxRun: 256,
    async readRun(start, count, dst, labs, at) {
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < count) {
          const k = next++;
          labs[at + k] = fileLabels[start + k]!;
          await decode(start + k, dst, at + k);
        }
      };
      await Promise.all(Array.from({ length: Math.min(DECODE_CONCURRENCY, count) }, worker));
    },
    close: async () => {},
  });
}
