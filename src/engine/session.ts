/**
 * The one place that creates onnxruntime sessions. Commands and the engine see only
 * `Runtime`, `Session` and plain `Tensor`s, never onnxruntime types.
 */
import type * as OrtTypes from 'onnxruntime-node';
import { UserError } from '../errors.js';
import { encodeModel, type ModelProto } from '../loader/proto.js';

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

export interface Session {
  label: string;
  inputNames: readonly string[];
  outputNames: readonly string[];
  run(feeds: Record<string, Tensor>, outputs?: string[]): Promise<Record<string, Tensor>>;
  release(): Promise<void>;
}

export type Device = 'cpu' | 'webgpu' | 'cuda';

export interface RuntimeOptions {
  /** Intra-op threads; default: all cores. */
  threads?: number;
  device?: Device;
}

export function toOrt(ort: Ort, t: Tensor): OrtTypes.Tensor {
  if (t.data instanceof Float32Array) return new ort.Tensor('float32', t.data, t.dims);
  if (t.data instanceof BigInt64Array) return new ort.Tensor('int64', t.data, t.dims);
  return new ort.Tensor('int32', t.data, t.dims);
}

export class Runtime {
  readonly threads: number | undefined;
  private sessions: Session[] = [];
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
  async create(model: ModelProto | Uint8Array, label: string, o: { arena?: boolean } = {}): Promise<Session> {
    const device = await this.resolveDevice();
    const ort = await loadOrt();
    const bytes = model instanceof Uint8Array ? model : encodeModel(model);
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
    const session: Session = {
      label,
      inputNames: s.inputNames,
      outputNames: s.outputNames,
      async run(feeds, outputs) {
        const ortFeeds: Record<string, OrtTypes.Tensor> = {};
        for (const [k, v] of Object.entries(feeds)) ortFeeds[k] = toOrt(ort, v);
        let res: OrtTypes.InferenceSession.ReturnType;
        try {
          res = outputs ? await s.run(ortFeeds, outputs) : await s.run(ortFeeds);
        } catch (e) {
          throw new UserError(`onnxruntime failed running the model (${label}): ${firstLine(e)}; is the file damaged, or do the data not fit the model?`);
        }
        const out: Record<string, Tensor> = {};
        for (const [k, v] of Object.entries(res)) {
          out[k] = { data: v.data as Float32Array, dims: v.dims.map(Number) };
        }
        return out;
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

  async close(): Promise<void> {
    const all = this.sessions;
    this.sessions = [];
    await Promise.all(all.map((s) => s.release()));
  }
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0]!.slice(0, 300);
}

export async function onnxruntimeVersion(): Promise<string> {
  const ort = await loadOrt();
  return ort.env.versions?.common ?? 'unknown';
}
