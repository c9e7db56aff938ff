/**
 * The data-set interface every format delivers. Open one with openDataset (re-exported here
 * from ./index.js, which picks the format).
 */

import type { ImagePolicy } from './image-policy.js';

/** How images are normalised and what shape the model takes. */
export interface Preprocess {
  /** Per-channel mean of [0,1] pixel values (one value is used for every channel). */
  mean: number[];
  /** Per-channel standard deviation (one value is used for every channel). */
  std: number[];
  /** H,W of the model input. Array formats must already have it; image folders are resized to it. */
  size?: [number, number];
  /** Channels of the model input (1 = grayscale, 3 = RGB). */
  channels?: number;
  /** How image files are resized and cropped to size (default: DEFAULT_POLICY). */
  policy?: ImagePolicy;
}

export interface Batch {
  /** N*C*H*W, normalised: (v/255 - mean[c]) / std[c] (float sources: (v - mean[c]) / std[c]). */
  images: Float32Array;
  labels: Int32Array;
  indices: number[];
  n: number;
}

export type DataFormat = 'idx' | 'cifar' | 'npy' | 'npz' | 'folder' | 'list';

export interface Dataset {
  /** e.g. "IDX fixtures/data/t10k-images-idx3-ubyte (1000 images)" */
  description: string;
  format: DataFormat;
  /** Number of samples (after limit). */
  size: number;
  /** C,H,W as delivered (after preprocessing). */
  shape: [number, number, number];
  /** Distinct classes if known: max label + 1 (idx, npy, npz), 10/100 (cifar), subfolder count (folder). */
  classes: number | null;
  /** Class subfolder names ('folder'); label names from CIFAR's meta file when it is next to the data. */
  classNames?: string[];
  /**
   * SHA-256 (hex) of the underlying file(s), streamed and memoised: a single file's own digest;
   * for several files (IDX images+labels, CIFAR batches) the digest of their bytes concatenated
   * in order; for an image folder the digest of "relative/path\n" + bytes for each image in order.
   */
  sha256(): Promise<string>;
  /** Batches in order, covering 0..size-1 once. */
  batches(batchSize: number): AsyncIterable<Batch>;
  /** Random access; indices in 0..size-1, in the order given. */
  batch(indices: number[]): Promise<Batch>;
  close(): Promise<void>;
  /** Image files only: what decoding cost and what the cache holds. */
  decodeStats?(): DecodeStats;
  /** Seconds the consumer of batches() waited for data, and seconds from its first batch to now. */
  waitStats?(): { waitSeconds: number; elapsedSeconds: number; images: number };
}

export interface DecodeStats {
  /** Images decoded (again on a later pass when they did not fit the cache). */
  decoded: number;
  /** Wall seconds with at least one decode in flight. */
  decodeSeconds: number;
  /** Images read from the cache instead. */
  fromCache: number;
  cached: number;
  cacheBytes: number;
  /** The cache's budget in bytes. */
  budget: number;
  /** Images decoded at once. */
  threads: number;
}

export interface OpenOptions {
  preprocess: Preprocess;
  /** Take the first N samples. */
  limit?: number;
  /**
   * The model's class ids in index order (e.g. ImageNet synsets): class folders and list-file
   * labels that are names map through it. Absent: folders are classes in sorted order.
   */
  classes?: string[];
  /** The model's class names (reslens.classes): class folders map through them when every folder is named there. */
  modelClasses?: string[];
  /** The model's number of classes, for list files whose labels are indices. */
  classCount?: number;
  /** Bytes of decoded image pixels kept in memory (image files); default decode.ts's decodeCacheBudget(). */
  decodeCacheBytes?: number;
  /** Where decompressed .gz files are cached; default os.tmpdir()/reslens-cache. */
  cacheDir?: string;
}
