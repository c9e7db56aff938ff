/**
 * CIFAR-10/100 binary: records of <label byte> + 3072 pixel bytes (CIFAR-10) or <coarse> <fine>
 * + 3072 (CIFAR-100; the fine label is used), pixels CHW 3x32x32. One file or several (a folder's
 * data batches) read as one data set, each record read on demand.
 */
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../../errors.js';
import {
  applyLimit, checkShape, countStr, FileSource, makeDataset, Normaliser, readSmallTextSync, sha256Files, statOrThrow,
} from './common.js';
import type { Dataset, OpenOptions } from './dataset.js';

const PIXELS = 3 * 32 * 32;
type Kind = 10 | 100;
const recBytes = (k: Kind): number => (k === 10 ? 1 : 2) + PIXELS;

const C10_RE = /^(data_batch_\d+|test_batch)\.bin$/;
const C100_RE = /^(train|test)\.bin$/;

export function isCifarName(file: string): boolean {
  const b = path.basename(file);
  return C10_RE.test(b) || C100_RE.test(b);
}

/** test_batch.bin (CIFAR-10) or test.bin (CIFAR-100) when present, else the training file(s). */
export async function findCifarInFolder(dir: string): Promise<{ files: string[]; note: string } | null> {
  const names = await readdir(dir);
  const batches = names.filter((n) => /^data_batch_\d+\.bin$/.test(n))
    .sort((a, b) => Number(a.match(/\d+/)![0]) - Number(b.match(/\d+/)![0]));
  if (names.includes('test_batch.bin')) {
    return { files: [path.join(dir, 'test_batch.bin')], note: batches.length ? `; chose test_batch.bin over ${batches.length} data_batch files` : '' };
  }
  if (batches.length) return { files: batches.map((n) => path.join(dir, n)), note: '' };
  if (names.includes('test.bin')) {
    return { files: [path.join(dir, 'test.bin')], note: names.includes('train.bin') ? '; chose test.bin over train.bin' : '' };
  }
  if (names.includes('train.bin')) return { files: [path.join(dir, 'train.bin')], note: '' };
  return null;
}

function kindOf(file: string, size: number): Kind {
  const b = path.basename(file);
  const k: Kind | null = C10_RE.test(b) ? 10 : C100_RE.test(b) ? 100 : null;
  if (k !== null) {
    if (size === 0 || size % recBytes(k) !== 0) {
      throw new UserError(`${file}: ${size} bytes is not a whole number of CIFAR-${k} records (${recBytes(k)} bytes each); the file is truncated or not CIFAR-${k} binary: re-download it`);
    }
    return k;
  }
  const is10 = size > 0 && size % recBytes(10) === 0;
  const is100 = size > 0 && size % recBytes(100) === 0;
  if (is10 && !is100) return 10;
  if (is100 && !is10) return 100;
  if (is10 && is100) throw new UserError(`${file}: its size fits both CIFAR-10 and CIFAR-100 records; rename it data_batch_1.bin (CIFAR-10) or test.bin (CIFAR-100)`);
  throw new UserError(`${file}: ${size} bytes is a whole number of neither CIFAR-10 (3073-byte) nor CIFAR-100 (3074-byte) records; pass a CIFAR binary file or another format`);
}

function classNamesNear(dir: string, kind: Kind): string[] | undefined {
  const f = path.join(dir, kind === 10 ? 'batches.meta.txt' : 'fine_label_names.txt');
  if (!existsSync(f)) return undefined;
  try {
    const names = readSmallTextSync(f).split(/\r?\n/).map((s) => s.trim()).filter(Boolean);
    return names.length === kind ? names : undefined;
  } catch {
    return undefined;
  }
}

export async function openCifar(files: string[], opts: OpenOptions, note = ''): Promise<Dataset> {
  const sizes: number[] = [];
  for (const f of files) sizes.push(Number((await statOrThrow(f)).size));
  const kinds = files.map((f, i) => kindOf(f, sizes[i]!));
  const kind = kinds[0]!;
  if (kinds.some((k) => k !== kind)) {
    throw new UserError(`${path.dirname(files[0]!)}: mixes CIFAR-10 and CIFAR-100 files; pass one file`);
  }
  const shape: [number, number, number] = [3, 32, 32];
  const shown = files.length === 1 ? files[0]! : path.dirname(files[0]!);
  checkShape(shown, shape, opts.preprocess);
  const norm = new Normaliser(3, opts.preprocess, shown);
  const rec = recBytes(kind);
  const counts = sizes.map((s) => s / rec);
  const firsts: number[] = [];
  let total = 0;
  for (const c of counts) { firsts.push(total); total += c; }
  const size = applyLimit(total, opts.limit);

  const srcs: FileSource[] = [];
  try {
    for (const f of files) srcs.push(await FileSource.open(f));
  } catch (e) {
    await Promise.all(srcs.map((s) => s.close()));
    throw e;
  }
  const labelAt = kind === 10 ? 0 : 1;
  const what = files.length === 1 ? files[0]! : `${files.length} files in ${path.dirname(files[0]!)}`;
  const classNames = classNamesNear(path.dirname(files[0]!), kind);
  return makeDataset({
    description: `CIFAR-${kind} ${what} (${countStr(size, total)}${note})`,
    format: 'cifar',
    size,
    shape,
    classes: kind,
    ...(classNames ? { classNames } : {}),
    sha256: () => sha256Files(files),
    async readRun(start, count, dst, labs, at) {
      let i = start, done = 0;
      while (done < count) {
        let f = firsts.length - 1;
        while (firsts[f]! > i) f--;
        const local = i - firsts[f]!;
        const take = Math.min(count - done, counts[f]! - local);
        const bytes = await srcs[f]!.read(local * rec, take * rec);
        for (let k = 0; k < take; k++) {
          const label = bytes[k * rec + labelAt]!;
          if (label >= kind) {
            throw new UserError(`${files[f]}: record ${local} has label ${label}, out of range for CIFAR-${kind}; is it a CIFAR-${kind === 10 ? 100 : 10} file?`);
          }
          labs[at + done + k] = label;
          norm.writeU8(bytes, k * rec + (rec - PIXELS), 'chw', 1024, dst, (at + done + k) * PIXELS);
        }
        done += take;
        i += take;
      }
    },
    close: async () => { await Promise.all(srcs.map((s) => s.close())); },
  });
}
