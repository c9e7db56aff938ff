/**
 * The evaluation batch from a memory budget: per image, the engine keeps every segment's
 * output of the intact network (the checkpoints changed programs start from) and onnxruntime
 * works on a few activations at once; fixed, the weights held by the model and its sessions.
 * Calibrated on one run (2026-12-01, 2-core x86, 24 GiB, no GPU): torchvision's ResNet-152 at
 * 224x224 peaked at ~63 MB an image over ~1.1 GB fixed, which this estimate meets within 10%.
 * The exact decomposition keeps its batch (it sets the loss) and fits the budget with its slices
 * and lanes instead (chooseExact, calibrated at exactBytes).
 */
import os from 'node:os';
import { UserError } from '../errors.js';
import type { Device } from './session.js';
import { defaultBatch } from './device.js';
import type { Network } from './network.js';

/** Default budget: this share of the memory free when the run starts, at most DEFAULT_CAP. */
export const FREE_SHARE = 0.5;
/** Keeps a default run of ResNet-50 under 4 GB and ResNet-152 well under 8 GB at 224x224. */
export const DEFAULT_CAP = 3.5 * 2 ** 30;

export interface BatchChoice {
  batch: number;
  /** Estimated bytes an image adds, and bytes that do not depend on the batch. */
  perImage: number;
  fixed: number;
  budget: number;
  /** Where the budget came from. */
  budgetFrom: '--memory' | 'free memory';
  /** True when the budget, not the device's default batch, set the batch. */
  limited: boolean;
}

const elems = (d: number[] | undefined) => (d ? d.slice(1).reduce((a, b) => a * b, 1) : 0);

export function memoryEstimate(net: Network): { perImage: number; fixed: number } {
  let checkpoints = 0, largest = 0;
  for (const s of net.structure.segments) checkpoints += elems(net.shapes.get(s.to));
  for (const d of net.shapes.values()) largest = Math.max(largest, elems(d));
  return { perImage: 4 * (checkpoints + 4 * largest), fixed: 4.5 * net.model.bytes.length };
}

/** "4G", "4GiB", "512M", "2.5g", or bytes. */
export function parseMemory(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(s.trim());
  const mult: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };
  const v = m ? Number(m[1]) * mult[m[2]!.toLowerCase()]! : NaN;
  if (!(v >= 2 ** 20)) throw new UserError(`--memory: '${s}' is not a memory size of at least 1M; give e.g. 4G or 512M`);
  return v;
}

export function chooseBatch(net: Network, device: Device, memory?: number): BatchChoice {
  const { perImage, fixed } = memoryEstimate(net);
  const budget = memory ?? defaultBudget();
  const cap = defaultBatch(device);
  const fit = Math.floor((budget - fixed) / perImage);
  const batch = Math.max(1, Math.min(cap, fit));
  return { batch, perImage, fixed, budget, budgetFrom: memory === undefined ? 'free memory' : '--memory', limited: fit < cap };
}

const gb = (b: number) => (b < 2 ** 30 ? `${(b / 2 ** 20).toFixed(0)} MiB` : `${(b / 2 ** 30).toFixed(1)} GiB`);
const mb = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;

/** The stderr line that says a budget set the batch. */
export function describeBatch(c: BatchChoice): string {
  const over = c.budget - c.fixed < c.perImage ? ' (over the budget even at 1; expect more)' : '';
  return `batch: ${c.batch} images (memory budget ${gb(c.budget)} from ${c.budgetFrom}: ~${mb(c.perImage)} an image + ~${gb(c.fixed)} for weights and sessions)${over}; --batch or --memory to change`;
}

/**
 * What the exact decomposition (engine/exact.ts) holds, read off the network's shapes: the
 * weights (every lane's sessions hold their own copies), the stacked cotangents of one image
 * (each chain's lengths out times the widest tensor among its blocks: its arena grows in
 * proportion) and what the forward keeps for an image (the tensors the backwards read).
 */
export interface ExactFootprint {
  weights: number;
  stackBytes: number;
  imageBytes: number;
}

/** Images per slice and lanes, and the bytes they are estimated to need. */
export interface ExactChoice {
  /** Images per slice (its stack is images x (n+1) rows) and lanes (worker threads; 1: this thread). */
  images: number;
  lanes: number;
  estimate: number;
  budget: number;
  budgetFrom: '--memory' | 'free memory';
  /** What the budget cut, against what the defaults would have run. */
  cut: { images: number; lanes: number } | null;
  /** Over the budget even at one image on one lane. */
  over: boolean;
}

/**
 * Estimated peak bytes of the exact decomposition with slices of `images` images on `lanes`
 * lanes. Once: the process, the network and the built models (160 MiB + 4.2 x the weights);
 * a lane: its sessions (90 MiB + 5 x the weights); an image of a slice on a lane: its arenas
 * and saved tensors (7 x its stacks + what the forward keeps). Calibrated 2026-12-02 (2-core
 * AMD EPYC with AVX-512, 24 GiB, no GPU; peak RSS in MiB of one batch, images a slice x lanes,
 * estimate in brackets): torchvision ResNet-50 at 224x224 (weights 97 MiB, stacks 113 MiB
 * and kept 34 MiB an image), batch 4: 1x1 1509 (1973), 2x1 2244 (2800), 1x2 3154 (3377), 2x2
 * 4731 (5031), and through the CLI 1x2 3352, 2x2 4783; resnet56 at 28x28 (3.3, 2.5 and 1.5
 * MiB), batch 32: 1x1 189 (299), 2x1 213 (318), 1x2 315 (424), 2x2 359 (462), through the CLI
 * over 1000 images 2x2 445. One lane runs in the main thread, ~300 MiB less than a worker's on
 * ResNet-50: the estimate counts a worker's.
 */
export function exactBytes(f: ExactFootprint, images: number, lanes: number): number {
  const lane = 90 * 2 ** 20 + 5 * f.weights + images * (7 * f.stackBytes + f.imageBytes);
  return 160 * 2 ** 20 + 4.2 * f.weights + lanes * lane;
}

/** The default memory budget: a share of the free memory, capped (as for the lesion batch). */
export function defaultBudget(): number {
  return Math.min(DEFAULT_CAP, FREE_SHARE * os.freemem());
}

/**
 * Images per slice and lanes for the exact decomposition within `budget`. Fewer images a slice
 * first (it costs no CPU down to one image: see DEFAULT_MAX_ROWS), then fewer lanes (each holds
 * every session's weights; fewer lanes is slower). `fixed` keeps what the caller set.
 */
export function chooseExact(
  f: ExactFootprint,
  o: { batch: number; images: number; lanes: number; budget: number; budgetFrom: ExactChoice['budgetFrom']; fixed?: { images?: boolean; lanes?: boolean } },
): ExactChoice {
  const lanesFor = (images: number) => Math.max(1, Math.min(o.lanes, Math.ceil(o.batch / images)));
  const want = { images: Math.max(1, Math.min(o.batch, o.images)), lanes: 0 };
  want.lanes = lanesFor(want.images);
  let images = want.images;
  let lanes = want.lanes;
  const fits = () => exactBytes(f, images, lanes) <= o.budget;
  while (!fits() && !o.fixed?.images && images > 1) lanes = Math.min(lanes, lanesFor(--images));
  while (!fits() && !o.fixed?.lanes && lanes > 1) lanes--;
  const cut = images < want.images || lanes < want.lanes ? { images: want.images, lanes: want.lanes } : null;
  return { images, lanes, estimate: exactBytes(f, images, lanes), budget: o.budget, budgetFrom: o.budgetFrom, cut, over: !fits() };
}

/** The stderr line that says the budget cut the exact decomposition's slices or lanes. */
export function describeExact(c: ExactChoice, n: number): string {
  const lanes = (k: number) => `${k} lane${k > 1 ? 's' : ''}`;
  const images = (k: number) => `${k} image${k > 1 ? 's' : ''}`;
  const what = `${images(c.images)} a slice (${c.images * (n + 1)} rows) on ${lanes(c.lanes)}`;
  const was = !c.cut ? '' : c.cut.lanes === c.lanes ? ` instead of ${images(c.cut.images)}` : c.cut.images === c.images ? ` instead of ${lanes(c.cut.lanes)}` : ` instead of ${images(c.cut.images)} on ${lanes(c.cut.lanes)}`;
  const over = c.over ? '; over it even so, expect more' : '';
  return `exact: ${what}${was} for the memory budget of ${gb(c.budget)} from ${c.budgetFrom} (estimated ~${gb(c.estimate)}${over}); --memory to change (--batch stays as given)`;
}
