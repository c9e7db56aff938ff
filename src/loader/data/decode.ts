/**
 * Image files to normalised CHW floats: sharp decodes (JPEG, PNG, WebP and what else libvips
 * reads), applies EXIF orientation and the image policy (image-policy.ts), and the result is
 * turned to grayscale (1-channel models) or RGB (alpha dropped). Shared by class folders and
 * list files. libvips decodes on libuv's worker threads, DECODE_CONCURRENCY images at once, and
 * makeDataset reads the next batch while the current one is evaluated. The decoded pixels
 * (8-bit, after resize and crop) are kept in memory up to a budget, so that a study that passes
 * over the data again (report, explore) does not decode twice.
 */
import os from 'node:os';
import path from 'node:path';
import { UserError } from '../../errors.js';
import { applyLimit, countStr, makeDataset, Normaliser, sha256Files } from './common.js';
import type { Dataset, OpenOptions } from './dataset.js';
import { DEFAULT_POLICY, describePolicy, planImage, type ImagePolicy } from './image-policy.js';

export const IMAGE_EXTS = new Set(['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif']);
const DECODE_CONCURRENCY = 4;

export function isImageFile(name: string): boolean {
  return IMAGE_EXTS.has(path.extname(name).toLowerCase());
}

type SharpFn = typeof import('sharp').default;
let sharpMod: SharpFn | null = null;
async function sharp(): Promise<SharpFn> {
  return sharpMod ?? (sharpMod = (await import('sharp')).default);
}

const firstLine = (e: unknown) => (e instanceof Error ? e.message.split('\n')[0] : String(e));

/**
 * Bytes of decoded pixels kept in memory: 1 GiB (6,800 RGB images at 224x224), or a quarter of
 * the memory free at start if that is less. The first images that fit stay; later passes read
 * them from memory and decode the rest again (an LRU would evict every image before its reuse
 * when passes run in order over more than fits).
 */
export function decodeCacheBudget(): number {
  return Math.min(2 ** 30, Math.floor(os.freemem() / 4));
}

/** Decodes `file` into 8-bit HWC pixels of H x W x C, after orientation, resize and crop. */
export function imageDecoder(H: number, W: number, C: number, policy: ImagePolicy) {
  const hw = H * W;
  return async (file: string): Promise<Uint8Array> => {
    const sh = await sharp();
    let data: Buffer, info: { width: number; height: number; channels: number };
    try {
      const meta = await sh(file).metadata();
      // EXIF orientations 5-8 swap width and height.
      const turned = (meta.orientation ?? 1) >= 5;
      const w0 = turned ? meta.height! : meta.width!, h0 = turned ? meta.width! : meta.height!;
      const plan = planImage(w0, h0, H, W, policy);
      if (typeof plan === 'string') throw new UserError(`${file}: ${plan}`);
      let img = sh(file).autoOrient();
      if (plan.resize) img = img.resize(plan.resize.width, plan.resize.height, { fit: 'fill' });
      if (plan.crop) img = img.extract({ left: plan.crop.left, top: plan.crop.top, width: W, height: H });
      if (C === 1) img = img.grayscale();
      ({ data, info } = await img.raw().toBuffer({ resolveWithObject: true }));
    } catch (e) {
      if (e instanceof UserError) throw e;
      throw new UserError(`${file}: cannot decode image (${firstLine(e)}); replace or remove it`);
    }
    if (info.width !== W || info.height !== H) throw new Error(`${file}: decoded to ${info.width}x${info.height}, planned ${W}x${H}`);
    const ch = info.channels;
    const px = new Uint8Array(C * hw); // HWC
    for (let p = 0; p < hw; p++) {
      const s = p * ch, d = p * C;
      if (C === 1) px[d] = ch >= 3 ? Math.round(0.2126 * data[s]! + 0.7152 * data[s + 1]! + 0.0722 * data[s + 2]!) : data[s]!;
      else if (ch >= 3) { px[d] = data[s]!; px[d + 1] = data[s + 1]!; px[d + 2] = data[s + 2]!; }
      else { px[d] = px[d + 1] = px[d + 2] = data[s]!; }
    }
    return px;
  };
}

export interface ImageFiles {
  /** Where the files were found, for messages and the description: "image folder DIR". */
  what: string;
  /** Root the files' paths are hashed relative to. */
  root: string;
  files: string[];
  labels: number[];
  classes: number;
  classNames?: string[];
  /** How the labels were found, e.g. "classes in sorted folder order". */
  labelNote: string;
  format: 'folder' | 'list';
}

/** A Dataset over image files with known labels, decoded with the options' size and policy. */
export function openImageFiles(src: ImageFiles, opts: OpenOptions): Dataset {
  const pre = opts.preprocess;
  if (!pre.size) throw new UserError(`${src.what}: image files need the model's input size to resize to; pass --size HxW`);
  const [H, W] = pre.size;
  const C = pre.channels ?? 3;
  if (C !== 1 && C !== 3) throw new UserError(`${src.what}: the model takes ${C} channels; image files give 1 (grayscale) or 3 (RGB); use another data format (.npy) for this model`);
  const policy = pre.policy ?? DEFAULT_POLICY;
  const total = src.files.length;
  const size = applyLimit(total, opts.limit);
  const decode = imageDecoder(H, W, C, policy);
  const norm = new Normaliser(C, pre, src.what);
  const per = C * H * W;
  const budget = opts.decodeCacheBytes ?? decodeCacheBudget();
  const cache = new Map<number, Uint8Array>();
  const stats = { decoded: 0, decodeSeconds: 0, fromCache: 0, cached: 0, cacheBytes: 0, budget, threads: DECODE_CONCURRENCY };
  // Wall time with at least one decode in flight: decodes overlap, so their durations do not add.
  let inFlight = 0;
  let busySince = 0;
  return makeDataset({
    description: `${src.what} (${countStr(size, total)} in ${src.classes} class${src.classes === 1 ? '' : 'es'}, ${src.labelNote}; ${C === 1 ? 'grayscale' : 'RGB'}, ${describePolicy(policy, H, W)})`,
    format: src.format,
    size,
    shape: [C, H, W],
    classes: src.classes,
    ...(src.classNames ? { classNames: src.classNames } : {}),
    sha256: () => sha256Files(src.files.slice(0, total), (i) => path.relative(src.root, src.files[i]!) + '\n'),
    maxRun: 256,
    async readRun(start, count, dst, labs, at) {
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < count) {
          const k = next++;
          const i = start + k;
          labs[at + k] = src.labels[i]!;
          let px = cache.get(i);
          if (px) stats.fromCache++;
          else {
            if (inFlight++ === 0) busySince = performance.now();
            try {
              px = await decode(src.files[i]!);
            } finally {
              if (--inFlight === 0) stats.decodeSeconds += (performance.now() - busySince) / 1000;
            }
            stats.decoded++;
            if (stats.cacheBytes + px.length <= budget) {
              cache.set(i, px);
              stats.cached++;
              stats.cacheBytes += px.length;
            }
          }
          norm.writeU8(px, 0, 'hwc', H * W, dst, (at + k) * per);
        }
      };
      await Promise.all(Array.from({ length: Math.min(DECODE_CONCURRENCY, count) }, worker));
    },
    decodeStats: () => ({ ...stats }),
    close: async () => {
      cache.clear();
    },
  });
}
