/** Flags and helpers that several commands share, so each is defined once. */
import { Argument, Option, type Command } from 'commander';
import { flagName, OptionError, UserError } from '../errors.js';
import { Runtime } from '../engine/session.js';
import type { PreprocessOptions } from '../engine/network.js';
import { parseBlockList, parseNumberList } from '../blocklist.js';
import { eligibleUnits } from '../studies/lesion.js';
import type { PlanNetwork } from '../studies/network.js';
import { DEVICES, selectDevice, type DeviceRequest } from '../engine/device.js';
import { chooseBatch, DEFAULT_CAP, describeBatch, FREE_SHARE, parseMemory } from '../engine/memory.js';
import { detail, note, PROGRESS_MODES, setStderrPolicy, type ProgressMode } from '../ui/progress.js';

/** Runs `fn`; a study's OptionError comes out in this command's flags (`names`: option → flag where the default is wrong). */
export async function withFlagNames<T>(names: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof OptionError) throw e.worded((o) => names[o] ?? flagName(o));
    throw e;
  }
}

export function positiveInt(flag: string, max = 1e9) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > max) throw new UserError(`${flag}: '${v}' is not a whole number from 1 to ${max}`);
    return n;
  };
}

/** Seeds: whole numbers 0..2^32-1 (src/random.ts takes 32 bits). */
export function seedArg(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0 || n > 2 ** 32 - 1) throw new UserError(`${flag}: '${v}' is not a whole number from 0 to 4294967295`);
    return n;
  };
}

/** A share in (0, 1], e.g. --mass. */
export function shareArg(flag: string) {
  return (v: string): number => {
    const m = Number(v);
    if (!(m > 0 && m <= 1)) throw new UserError(`${flag}: '${v}' must be in (0, 1]`);
    return m;
  };
}

/** --quiet, --verbose, --progress: what every command says on stderr besides errors. */
export function addStderrOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('-q, --quiet', 'nothing on stderr but errors (results still go to stdout or the output file)').conflicts('verbose'))
    .addOption(new Option('-v, --verbose', "more on stderr: why auto passed over a device, where each onnxruntime session's nodes run, the tensors copied to and from the device"))
    .addOption(new Option('--progress <mode>', 'progress on stderr: bar (on a terminal), json (one object per line: phase, done, total, elapsed), none').choices(PROGRESS_MODES).default('bar'));
}

export interface StderrFlags {
  quiet?: boolean;
  verbose?: boolean;
  progress?: ProgressMode;
}

/** Sets the stderr policy from a command's flags (called before every command's action). */
export function applyStderrFlags(f: StderrFlags): void {
  setStderrPolicy({ quiet: !!f.quiet, verbose: !!f.verbose, progress: f.progress ?? 'bar' });
}

/**
 * --k: numbers of units deleted at random, at most the units eligible for k-subsets, so the
 * bound an error names is one that works.
 */
export function parseKList(spec: string, net: PlanNetwork, includeDownsampling: boolean): number[] {
  const eligible = eligibleUnits(net, includeDownsampling).length;
  // With none eligible the lesion plan says why.
  if (eligible < 1) return parseBlockList(spec, '--k', net.n, 1);
  const unit = net.kind === 'residual' ? 'blocks' : 'layers';
  const left = includeDownsampling ? '' : `; downsampling ${unit} stay, --include-downsampling adds them`;
  return parseBlockList(spec, '--k', eligible, 1, `${eligible} of ${net.n} ${unit} are eligible for k-subsets${left}`);
}

export function addRuntimeOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--threads <n>', 'onnxruntime intra-op threads (default: all cores)').argParser(positiveInt('--threads', 1024)))
    .addOption(new Option('--device <device>', 'where to run: auto picks cuda, then a hardware webgpu adapter, then cpu').choices(DEVICES).default('auto'));
}

export function addJsonOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--json [file]', 'write the result as JSON (to stdout when no file is given)'))
    .addOption(new Option('--force', 'replace an existing output file'));
}

export function addPreprocessOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--preset <name>', `preprocessing of a data set's usual recipe: mean, std, input size where the model leaves it open, and (imagenet) resize shorter side to 256 then crop center 224x224`).choices(PRESET_NAMES))
    .addOption(new Option('--mean <list>', 'per-channel mean on the 0-1 scale (overrides reslens.mean)'))
    .addOption(new Option('--std <list>', 'per-channel std on the 0-1 scale (overrides reslens.std)'))
    .addOption(new Option('--size <h,w>', 'model input size (overrides reslens.input_size)'));
}

export interface JsonFlags {
  json?: string | boolean;
  force?: boolean;
}

export interface PreprocessFlags {
  preset?: string;
  mean?: string;
  std?: string;
  size?: string;
}

/** --mean, --std, --size as the engine takes them. */
export function preprocessOptions(f: PreprocessFlags): PreprocessOptions {
  return {
    ...(f.preset ? { preset: parsePreset(f.preset) } : {}),
    ...(f.mean ? { mean: parseNumberList(f.mean, '--mean') } : {}),
    ...(f.std ? { std: parseNumberList(f.std, '--std') } : {}),
    ...(f.size ? { size: parseNumberList(f.size, '--size') } : {}),
  };
}

export interface RuntimeFlags {
  threads?: number;
  device?: DeviceRequest;
  /** Say on stderr which device runs (for commands that evaluate networks at length). */
  announce?: boolean;
  verbose?: boolean;
}

export async function withRuntime<T>(opts: RuntimeFlags, fn: (rt: Runtime) => Promise<T>): Promise<T> {
  const choose = async () => {
    const choice = await selectDevice(opts.device ?? 'auto');
    if (opts.announce) {
      note(`device: ${choice.device}`);
      for (const s of choice.skipped) detail(`device: auto passed over ${s.device}: ${s.reason}`);
    }
    return choice.device;
  };
  const say = (line: string) => note(line);
  const rt = new Runtime({ threads: opts.threads, choose, ...(opts.verbose ? { onPlacement: say } : {}) });
  try {
    return await fn(rt);
  } finally {
    if (opts.verbose && rt.device !== 'cpu') say(`copies: ${rt.copies.uploads} tensors to ${rt.device}, ${rt.copies.downloads} back`);
    await rt.close();
  }
}

// ---------------------------------------------------------------- data
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openDataset, parseCrop, parsePreset, parseResize, checkClassCount, readClassList, DEFAULT_POLICY, PRESET_NAMES, type Dataset, type ImagePolicy } from '../loader/data/index.js';
import type { Network } from '../engine/network.js';

/** The repo's fixtures folder (dist/commands → ../../fixtures). */
export const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'fixtures');
export const FIXTURE_DATA = path.join(FIXTURES, 'data', 't10k-images-idx3-ubyte');
/** The model of every command whose MODEL is optional: resnet56, deep enough to show the paper's picture. */
export const DEFAULT_MODEL = path.join(FIXTURES, 'models', 'resnet56.onnx');

/** The optional MODEL argument, defaulting to DEFAULT_MODEL (shown by its path in the checkout). */
export function modelArgument(description = 'an ONNX file'): Argument {
  return new Argument('[model]', description).default(DEFAULT_MODEL, path.relative(path.dirname(FIXTURES), DEFAULT_MODEL));
}

export function addDataOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--data <path>', 'labelled data: IDX, CIFAR binary, .npy/.npz, a folder of class subfolders of JPEG/PNG/WebP images, or a list file (.txt/.tsv/.csv: path and label a line, paths relative to it) (default for shipped models: the 1k Fashion-MNIST subset in fixtures/data)'))
    .addOption(new Option('--resize <how>', 'image files: shorter[:N] (shorter side to N, default N = 256/224 of the input size, aspect kept), exact (stretch to the input size) or none; default shorter, but images already of the input size are left untouched'))
    .addOption(new Option('--crop <how>', 'image files: center (take the input size from the middle) or none (images must then be of the input size); default center'))
    .addOption(new Option('--classes <file>', "the model's class ids, one a line in class-index order (e.g. ImageNet synsets, sorted, for torchvision models): class folders and list labels are mapped by name"))
    .addOption(new Option('--limit <n>', 'use only the first N samples').argParser(positiveInt('--limit')))
    .addOption(new Option('--batch <n>', 'samples per batch (default: what --memory allows, at most 128 on cpu, 512 on a GPU; gradients: 32)').argParser(positiveInt('--batch', 65536)))
    .addOption(new Option('--memory <size>', `memory budget that sets the batch, e.g. 4G (default: ${FREE_SHARE * 100}% of the memory free at the start, at most ${DEFAULT_CAP / 2 ** 30}G)`).argParser(parseMemory));
}

export interface DataFlags extends PreprocessFlags {
  data?: string;
  batch?: number;
  memory?: number;
  limit?: number;
  resize?: string;
  crop?: string;
  classes?: string;
}

/** The image policy: --resize/--crop over the preset's over the default. */
export function imagePolicy(f: DataFlags): ImagePolicy {
  const base = (f.preset ? parsePreset(f.preset).policy : undefined) ?? DEFAULT_POLICY;
  if (!f.resize && !f.crop) return base;
  return { resize: f.resize ? parseResize(f.resize) : base.resize, crop: f.crop ? parseCrop(f.crop) : base.crop, isDefault: false };
}

/**
 * --batch, or the largest batch the memory budget allows (said on stderr when the budget sets
 * it, unless all `samples` fit in one batch anyway).
 */
export async function batchFor(rt: Runtime, net: Network, f: DataFlags, samples?: number): Promise<number> {
  if (f.batch) return f.batch;
  const c = chooseBatch(net, await rt.resolveDevice(), f.memory);
  if (c.limited && !(samples !== undefined && samples <= c.batch)) note(describeBatch(c));
  return c.batch;
}

/** Opens --data, or the shipped fixture data for a shipped model. */
export async function openDataFor(net: Network, flags: DataFlags): Promise<Dataset> {
  let file = flags.data;
  if (!file) {
    const inFixtures = path.resolve(net.model.path).startsWith(path.join(FIXTURES, 'models') + path.sep);
    if (!inFixtures || !existsSync(FIXTURE_DATA)) {
      throw new UserError(`${net.model.path}: no --data given; pass labelled data, e.g. --data /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz`);
    }
    file = FIXTURE_DATA;
  }
  const pre = net.preprocessing;
  const policy = imagePolicy(flags);
  const classes = flags.classes ? readClassList(flags.classes) : undefined;
  const outputs = net.shapes.get(net.output)?.[1];
  if (classes) checkClassCount(classes, outputs, flags.classes!, net.model.path);
  const data = await openDataset(file, {
    preprocess: { mean: pre.mean, std: pre.std, size: [pre.inputShape[1], pre.inputShape[2]], channels: pre.inputShape[0], policy },
    limit: flags.limit,
    ...(outputs ? { classCount: outputs } : {}),
    ...(classes ? { classes } : pre.classNames ? { modelClasses: pre.classNames } : {}),
  });
  const fmt = (xs: number[]) => (xs.every((x) => x === xs[0]) ? String(xs[0]) : xs.join(','));
  note(`data: ${data.description}; normalised (v/255 - ${fmt(pre.mean)}) / ${fmt(pre.std)} (${pre.normalisedBy === 'default' ? 'nothing set it' : pre.normalisedBy})`);
  if (data.format === 'folder' && !classes && outputs && data.classes !== null && outputs > data.classes) {
    note(`note: the model has ${outputs} classes but the data has ${data.classes}, labelled ${data.classes === 1 ? '0' : `0-${data.classes - 1}`} in sorted name order; unless ${data.classes === 1 ? "it is the model's first class" : `they are the model's first ${data.classes} classes`}, pass --classes FILE`);
  }
  if (pre.normalisedBy === 'default') {
    note(`note: ${net.model.path} has no reslens.mean/std metadata and no --preset, --mean or --std was given, so pixels are fed unnormalised as v/255; pass --preset imagenet (or --mean/--std), or store them once with reslens annotate`);
  }
  if (data.decodeStats) {
    const close = data.close.bind(data);
    data.close = async () => {
      const line = describeDecoding(data);
      if (line) note(line);
      await close();
    };
  }
  const k = pre.classNames?.length;
  if (k && data.classes !== null && data.classes > k) {
    await data.close();
    throw new UserError(`${file}: labels go up to ${data.classes - 1} but the model has ${k} classes; is this the model's data set?`);
  }
  return data;
}

/** A rate for people: 2 significant digits below 10 (0.26, 3.1), whole numbers above. */
export function perSecond(r: number): string {
  return r >= 10 || r === 0 ? r.toFixed(0) : String(Number(r.toPrecision(2)));
}

/**
 * One line on what decoding image files cost beside the evaluation, so that a slow run says
 * whether the data or the model held it up: images/s of each, the seconds the evaluation waited
 * for data, and what the cache holds. Null when nothing was decoded.
 */
export function describeDecoding(data: Dataset): string | null {
  const d = data.decodeStats?.();
  if (!d || d.decoded + d.fromCache === 0) return null;
  const mb = (b: number) => `${(b / 2 ** 20).toFixed(b < 10 * 2 ** 20 ? 1 : 0)} MB`;
  const rate = (n: number, s: number) => (s > 0 ? `${perSecond(n / s)} images/s` : 'instant');
  let line = `decoding: ${d.decoded} images at ${rate(d.decoded, d.decodeSeconds)} (${d.threads} at once, ahead of the evaluation)`;
  if (d.fromCache) line += `, ${d.fromCache} read from the cache`;
  line += `; ${d.cached} kept in memory (${mb(d.cacheBytes)} of a ${mb(d.budget)} budget, freed at exit)`;
  const w = data.waitStats?.();
  if (w && w.images > 0 && w.elapsedSeconds > 0) {
    line += `; evaluation ${rate(w.images, Math.max(w.elapsedSeconds - w.waitSeconds, 1e-9))}, waited ${w.waitSeconds.toFixed(1)} s of ${w.elapsedSeconds.toFixed(1)} s for data`;
  }
  return line;
}

/**
 * SIGINT/SIGTERM abort the returned signal: the running command finishes its batch, keeps
 * what is done and exits 130. A second Ctrl-C exits at once.
 */
export function interruptSignal(): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    if (ac.signal.aborted) process.exit(130);
    note(`\nreslens: ${sig}: finishing the current batch and keeping the results so far (again to quit at once)`);
    ac.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: ac.signal,
    dispose: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
