/**
 * The evaluation batch from a memory budget: per image, the engine keeps every segment's
 * output of the intact network (the checkpoints changed programs start from) and onnxruntime
 * works on a few activations at once; fixed, the weights held by the model and its sessions.
 * Calibrated on one run (2026-12-01, 2-core x86, 24 GiB, no GPU): torchvision's ResNet-152 at
 * 224x224 peaked at ~63 MB an image over ~1.1 GB fixed, which this estimate meets within 10%.
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
  const budget = memory ?? Math.min(DEFAULT_CAP, FREE_SHARE * os.freemem());
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
