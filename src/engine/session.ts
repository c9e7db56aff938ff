/**
 * The one place that creates onnxruntime sessions. Commands and the engine see only
 * `Runtime`, `Session` and plain `Tensor`s, never onnxruntime types.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type * as OrtTypes from 'onnxruntime-node';
import { UserError } from '../errors.js';
import { encodeModel, type ModelProto } from '../loader/proto.js';
import { formatPlacement, readPlacement, type Placement } from './placement.js';

type Ort = typeof OrtTypes;
let ortModule: Promise<Ort> | null = null;
/** onnxruntime's native library loads on first use: commands that need no session start faster. */
export function loadOrt(): Promise<Ort> {
  ortModule ??= import('onnxruntime-node').then((m) => ((m as unknown as { default?: Ort }).default ?? m) as Ort);
  return ortModule;
}

export interface Tensor {
  data: Float32Array | BigInt64Array | Int32Array;
  dims: number[];
}

/**
 * A tensor left in the device's memory by one session for another to read (see `keep` in
 * Runtime.create). Its data never comes back to JavaScript: reading a GPU tensor back with
 * onnxruntime-node 1.30's getData aborts the process (measured on SwiftShader, 2026-12-01).
 */
export interface DeviceTensor {
  dims: number[];
  readonly onDevice: true;
  dispose(): void;
}

export type Value = Tensor | DeviceTensor;

export function isHost(v: Value): v is Tensor {
  return !('onDevice' in v);
}

export interface Session {
  label: string;
  inputNames: readonly string[];
  outputNames: readonly string[];
  /** Outputs in host memory; a session created with `keep` must be run with runMixed. */
  run(feeds: Record<string, Value>, outputs?: string[]): Promise<Record<string, Tensor>>;
  /** Outputs named in `keep` at creation stay on the device (DeviceTensor). */
  runMixed(feeds: Record<string, Value>, outputs?: string[]): Promise<Record<string, Value>>;
  release(): Promise<void>;
}

export type Device = 'cpu' | 'webgpu' | 'cuda';

export interface RuntimeOptions {
  /** Intra-op threads; default: all cores. */
  threads?: number;
  device?: Device;
  /**
   * Profile each session's first run and report where its nodes ran (Runtime.placements),
   * each as one line to this function (the CLI's --verbose writes them to stderr).
   */
  onPlacement?: (line: string) => void;
  /**
   * Let sessions that chain keep their tensors on a GPU device (default true; webgpu only,
   * the provider it was verified on).
   */
  keepOnDevice?: boolean;
}

/** Tensors crossing between JavaScript and the device, counted over every session's runs. */
export interface Copies {
  /** Host tensors fed to a session on a GPU device. */
  uploads: number;
  /** Outputs of a session on a GPU device returned to host memory. */
  downloads: number;
}

/** The onnxruntime tensor behind a DeviceTensor. */
const ortOf = new WeakMap<DeviceTensor, OrtTypes.Tensor>();

export function toOrt(ort: Ort, t: Value): OrtTypes.Tensor {
  if (!isHost(t)) {
    const o = ortOf.get(t);
    if (!o) throw new Error('a device tensor that was already disposed was fed to a session');
    return o;
  }
  if (t.data instanceof Float32Array) return new ort.Tensor('float32', t.data, t.dims);
  if (t.data instanceof BigInt64Array) return new ort.Tensor('int64', t.data, t.dims);
  return new ort.Tensor('int32', t.data, t.dims);
}

export class Runtime {
  readonly threads: number | undefined;
  readonly copies: Copies = { uploads: 0, downloads: 0 };
  /** Where each profiled session's nodes ran (with onPlacement), in creation order. */
  readonly placements: { label: string; device: Device; placement: Placement }[] = [];
  private readonly onPlacement: ((line: string) => void) | undefined;
  private readonly keepOnDevice: boolean;
  private profileDir: string | null = null;
  private profiled = 0;
  private sessions: Session[] = [];
  private closers: (() => Promise<void>)[] = [];
  private chosen: Device | null;
  private choose: (() => Promise<Device>) | null;

  /**
   * `device` may be a function: the choice (which probes providers, in child processes) is
   * then made when the first session is created, so commands that run nothing never pay it.
   */
  constructor(opts: RuntimeOptions & { choose?: () => Promise<Device> } = {}) {
    this.chosen = opts.choose ? null : (opts.device ?? 'cpu');
    this.choose = opts.choose ?? null;
    this.threads = opts.threads;
    this.onPlacement = opts.onPlacement;
    this.keepOnDevice = opts.keepOnDevice ?? true;
  }

  /** Whether `create`'s `keep` takes effect on the chosen device. */
  get keeps(): boolean {
    return this.keepOnDevice && this.device === 'webgpu';
  }

  /** The device sessions run on (resolving it if that has not happened yet). */
  async resolveDevice(): Promise<Device> {
    if (!this.chosen) this.chosen = await this.choose!();
    return this.chosen;
  }

  /** The device, if already chosen. */
  get device(): Device {
    return this.chosen ?? 'cpu';
  }

  /**
   * `arena`: keep onnxruntime's memory arena for this session. Worth it for one big session
   * run many times (the engine's fused programs: without it every run allocated and faulted
   * in its intermediate buffers afresh, 2-3 GB and 50% slower on resnet56).
   */
  /**
   * `keep`: outputs that stay on the device when `keeps` (they go only to other sessions);
   * the others come back to host memory.
   */
  async create(model: ModelProto | Uint8Array, label: string, o: { arena?: boolean; keep?: string[] } = {}): Promise<Session> {
    const device = await this.resolveDevice();
    const ort = await loadOrt();
    const bytes = model instanceof Uint8Array ? model : encodeModel(model);
    const keep = new Set(this.keeps && !(model instanceof Uint8Array) ? (o.keep ?? []) : []);
    let profile: string | null = null;
    if (this.onPlacement) {
      this.profileDir ??= mkdtempSync(path.join(os.tmpdir(), 'reslens-profile-'));
      profile = path.join(this.profileDir, `s${this.profiled++}`);
    }
    const outputNames = model instanceof Uint8Array ? [] : (model.graph?.output ?? []).map((v) => v.name ?? '');
    const options: OrtTypes.InferenceSession.SessionOptions = {
      // 'all' lets ORT fold BatchNormalization into Conv and fuse activations (~4x faster than none).
      graphOptimizationLevel: 'all',
      // Ops a GPU provider lacks run on the CPU inside the same session.
      executionProviders: device === 'cpu' ? ['cpu'] : [device, 'cpu'],
      logSeverityLevel: 3,
      interOpNumThreads: 1,
      // Many small sessions live at once; per-session arenas would each keep their peak.
      enableCpuMemArena: o.arena ?? false,
      // A planned block per input shape grew the arena to 3 GB over a 10k-image sweep; freed
      // buffers reused from the arena hold it near the live set.
      ...(o.arena ? { enableMemPattern: false } : {}),
      // The engine alternates between many sessions: a pool that spins after its run steals the
      // cores the next session needs (measured: 2x slower on 2 cores with spinning on).
      extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
      ...(this.threads ? { intraOpNumThreads: this.threads } : {}),
      ...(keep.size ? { preferredOutputLocation: Object.fromEntries(outputNames.map((n) => [n, keep.has(n) ? 'gpu-buffer' : 'cpu'] as const)) } : {}),
      ...(profile ? { enableProfiling: true, profileFilePrefix: profile } : {}),
    };
    let s: OrtTypes.InferenceSession;
    try {
      s = await ort.InferenceSession.create(bytes, options);
    } catch (e) {
      // The graph comes from the user's file (or a cut of it): a refusal here is almost always
      // a damaged or unsupported model.
      throw new UserError(`onnxruntime cannot load the model (${label}): ${firstLine(e)}; is the file damaged, or does it use an operator onnxruntime lacks?`);
    }
    let released = false;
    const copies = this.copies;
    const onGpu = device !== 'cpu';
    const profiled = () => {
      if (!profile) return;
      s.endProfiling();
      const dir = path.dirname(profile);
      const base = path.basename(profile);
      for (const f of readdirSync(dir).filter((n) => n.startsWith(`${base}_`))) {
        const p = readPlacement(path.join(dir, f), device);
        this.placements.push({ label, device, placement: p });
        this.onPlacement!(formatPlacement(label, device, p));
        rmSync(path.join(dir, f), { force: true });
      }
      profile = null;
    };
    const runMixed = async (feeds: Record<string, Value>, outputs?: string[]): Promise<Record<string, Value>> => {
      const ortFeeds: Record<string, OrtTypes.Tensor> = {};
      for (const [k, v] of Object.entries(feeds)) {
        ortFeeds[k] = toOrt(ort, v);
        if (onGpu && isHost(v)) copies.uploads++;
      }
      let res: OrtTypes.InferenceSession.ReturnType;
      try {
        res = outputs ? await s.run(ortFeeds, outputs) : await s.run(ortFeeds);
      } catch (e) {
        throw new UserError(`onnxruntime failed running the model (${label}): ${firstLine(e)}; is the file damaged, or do the data not fit the model?`);
      }
      profiled();
      const out: Record<string, Value> = {};
      for (const [k, v] of Object.entries(res)) {
        if (v.location === 'gpu-buffer') {
          const t: DeviceTensor = { dims: v.dims.map(Number), onDevice: true, dispose: () => { ortOf.delete(t); v.dispose(); } };
          ortOf.set(t, v);
          out[k] = t;
        } else {
          if (onGpu) copies.downloads++;
          out[k] = { data: v.data as Float32Array, dims: v.dims.map(Number) };
        }
      }
      return out;
    };
    const session: Session = {
      label,
      inputNames: s.inputNames,
      outputNames: s.outputNames,
      runMixed,
      async run(feeds, outputs) {
        const out = await runMixed(feeds, outputs);
        for (const [k, v] of Object.entries(out)) if (!isHost(v)) throw new Error(`${label}: output ${k} is on the device; use runMixed`);
        return out as Record<string, Tensor>;
      },
      async release() {
        if (released) return;
        released = true;
        await s.release();
      },
    };
    this.sessions.push(session);
    return session;
  }

  /** Runs `fn` at close, for what holds sessions elsewhere (the engine's worker threads). */
  atClose(fn: () => Promise<void>): void {
    this.closers.push(fn);
  }

  async close(): Promise<void> {
    const all = this.sessions;
    this.sessions = [];
    const closers = this.closers;
    this.closers = [];
    await Promise.all([...all.map((s) => s.release()), ...closers.map((f) => f())]);
    if (this.profileDir) rmSync(this.profileDir, { recursive: true, force: true });
    this.profileDir = null;
  }
}

/** onnxruntime's whole message on one line (its multi-line messages carry the cause after the first). */
function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n').map((l) => l.trim()).filter((l) => l).join(' ');
}

export async function onnxruntimeVersion(): Promise<string> {
  const ort = await loadOrt();
  return ort.env.versions?.common ?? 'unknown';
}
