/**
 * Checks backward rules against central finite differences of the forward graph, both run
 * with onnxruntime: for random gy and directions v, <gx, v> must match
 * (<gy, f(x + eps v)> - <gy, f(x - eps v)>) / (2 eps). Small graphs are written with Net.
 * With `f64` the differences come from a float64 copy of the graph, so that float32's
 * rounding in f(x ± eps v) does not enter the comparison (onnxruntime has no double kernel
 * for some ops, Conv and Erf among them: those stay float32).
 */
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import {
  DataType,
  encodeModel,
  floatTensor,
  int64Tensor,
  makeModel,
  makeNode,
  tensorFloats,
  valueInfo,
  type AttrValue,
  type ModelProto,
  type NodeProto,
  type TensorProto,
} from '../../src/loader/proto.js';
import { indexGraph } from '../../src/surgery/graph.js';
import { buildVjp, type VjpSpec } from '../../src/surgery/vjp.js';
import { Random } from '../../src/random.js';

export function mulberry32(seed: number): () => number {
  const r = new Random(seed);
  return () => r.next();
}

export type Rng = () => number;
export function randn(rng: Rng, n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(rng(), 1e-12);
    out[i] = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng()) * scale;
  }
  return out;
}
export const size = (d: number[]): number => d.reduce((p, q) => p * q, 1);

/** Values away from zero: |x| in [0.2, 1.2]. */
export function awayFromZero(rng: Rng, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rng() < 0.5 ? -1 : 1) * (0.2 + rng());
  return out;
}

/** Distinct values spaced 0.05 apart, shuffled (no ties, no near-ties for max pooling). */
export function distinct(rng: Rng, n: number): Float32Array {
  const v = Array.from({ length: n }, (_, i) => (i - n / 2) * 0.05);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [v[i], v[j]] = [v[j]!, v[i]!];
  }
  return Float32Array.from(v);
}

export class Net {
  nodes: NodeProto[] = [];
  inits: TensorProto[] = [];
  constructor(
    readonly rng: Rng,
    readonly xDims: number[],
  ) {}
  node(op: string, inputs: string[], output: string, attrs: Record<string, AttrValue> = {}): string {
    this.nodes.push(makeNode(op, inputs, [output], attrs, `${op}_${output}`));
    return output;
  }
  w(name: string, dims: number[], scale?: number): string {
    const fanIn = size(dims.slice(1)) || 1;
    this.inits.push(floatTensor(name, dims, randn(this.rng, size(dims), scale ?? 1 / Math.sqrt(fanIn))));
    return name;
  }
  f(name: string, dims: number[], data: number[]): string {
    this.inits.push(floatTensor(name, dims, data));
    return name;
  }
  i(name: string, data: number[], dims = [data.length]): string {
    this.inits.push(int64Tensor(name, dims, data));
    return name;
  }
  /** A node with several outputs (Split). */
  nodeN(op: string, inputs: string[], outputs: string[], attrs: Record<string, AttrValue> = {}): string[] {
    this.nodes.push(makeNode(op, inputs, outputs, attrs, `${op}_${outputs[0]}`));
    return outputs;
  }
  conv(x: string, out: string, cin: number, cout: number, k: number, attrs: Record<string, AttrValue> = {}, bias = true): string {
    const group = typeof attrs.group === 'number' ? attrs.group : 1;
    const ins = [x, this.w(`${out}_W`, [cout, cin / group, k, k])];
    if (bias) ins.push(this.w(`${out}_B`, [cout], 0.1));
    return this.node('Conv', ins, out, { kernel_shape: [k, k], ...attrs });
  }
  bn(x: string, out: string, c: number): string {
    const r = this.rng;
    const scale = this.f(`${out}_s`, [c], Array.from({ length: c }, () => 0.5 + r()));
    const bias = this.f(`${out}_b`, [c], Array.from({ length: c }, () => r() - 0.5));
    const mean = this.f(`${out}_m`, [c], Array.from({ length: c }, () => r() - 0.5));
    const v = this.f(`${out}_v`, [c], Array.from({ length: c }, () => 0.5 + r()));
    return this.node('BatchNormalization', [x, scale, bias, mean, v], out, { epsilon: { float: 1e-5 } });
  }
  model(outputs: string[] = ['y'], opset = 13, inputs = ['x']): ModelProto {
    return makeModel(
      {
        nodes: this.nodes,
        inputs: inputs.map((n) => valueInfo(n, n === 'x' ? this.xDims.map((d, i) => (i === 0 ? 'N' : d)) : [])),
        outputs: outputs.map((n) => ({ name: n, type: { tensorType: { elemType: 1 } } })),
        initializers: this.inits,
      },
      opset,
    );
  }
}

export type Feed = Record<string, ort.Tensor>;
export const sessOpts: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: 'all', intraOpNumThreads: 1, interOpNumThreads: 1 };

export async function session(m: ModelProto): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(encodeModel(m), sessOpts);
}

/** The model with every node output exposed as a graph output (all float in these tests). */
export function exposeAll(m: ModelProto): ModelProto {
  const g = m.graph!;
  const have = new Set((g.output ?? []).map((o) => o.name));
  const extra = (g.node ?? [])
    .flatMap((n) => n.output ?? [])
    .filter((o) => o && !have.has(o))
    .map((name) => ({ name, type: { tensorType: { elemType: 1 } } }));
  return { ...m, graph: { ...g, output: [...(g.output ?? []), ...extra] } };
}

export interface Probe {
  sess: ort.InferenceSession;
  shapes: Map<string, number[]>;
  values: Record<string, ort.Tensor>;
}

export async function probe(m: ModelProto, feed: Feed): Promise<Probe> {
  const sess = await session(exposeAll(m));
  const values: Record<string, ort.Tensor> = { ...(await sess.run(feed)) };
  const shapes = new Map<string, number[]>();
  for (const [k, v] of Object.entries(values)) shapes.set(k, [...v.dims]);
  for (const [k, v] of Object.entries(feed)) {
    shapes.set(k, [...v.dims]);
    values[k] = v;
  }
  return { sess, shapes, values };
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}
export const norm = (a: ArrayLike<number>): number => Math.sqrt(dot(a, a));

export async function runVjp(spec: VjpSpec, m: ModelProto, p: Probe, gy: Float32Array): Promise<Float32Array> {
  const vjp = buildVjp(m, indexGraph(m.graph!), spec);
  const bsess = await session(vjp.model);
  const feeds: Feed = { grad_out: new ort.Tensor('float32', gy, p.shapes.get(spec.to)!) };
  for (const s of vjp.saved) {
    const v = p.values[s];
    assert.ok(v, `saved tensor ${s} missing from the probe`);
    feeds[s] = v;
  }
  const r = await bsess.run(feeds);
  const gx = r.grad_in!;
  assert.deepEqual([...gx.dims], p.shapes.get(spec.from), 'grad_in has the shape of from');
  return gx.data as Float32Array;
}

export interface CheckOpts {
  x?: Float32Array;
  eps?: number;
  tol?: number;
  seed?: number;
  to?: string;
  cut?: VjpSpec['cut'];
  opset?: number;
  /** Finite differences of a float64 copy of the graph (toDouble). */
  f64?: boolean;
}

/** Builds the VJP of y w.r.t. x and checks it against finite differences in 3 directions. */
export async function check(net: Net, opts: CheckOpts = {}): Promise<{ gx: Float32Array; gy: Float32Array }> {
  const rng = mulberry32(opts.seed ?? 7);
  const to = opts.to ?? 'y';
  const m = net.model([to], opts.opset ?? 13);
  const x = opts.x ?? randn(rng, size(net.xDims));
  const xFeed = (d: Float32Array): Feed => ({ x: new ort.Tensor('float32', d, net.xDims) });
  const p = await probe(m, xFeed(x));
  const yShape = p.shapes.get(to)!;
  const gy = randn(rng, size(yShape));
  const gx = await runVjp({ from: 'x', to, shapes: p.shapes, cut: opts.cut }, m, p, gy);
  const eps = opts.eps ?? 1e-3;
  const tol = opts.tol ?? 1e-2;
  const f64 = opts.f64 ? await session(toDouble(m)) : null;
  const f = async (d: Float32Array | Float64Array): Promise<number> => {
    if (f64) return dot(gy, (await f64.run({ x: new ort.Tensor('float64', Float64Array.from(d), net.xDims) }))[to]!.data as Float64Array);
    const r = await p.sess.run(xFeed(Float32Array.from(d)));
    return dot(gy, r[to]!.data as Float32Array);
  };
  for (let k = 0; k < 3; k++) {
    const v = randn(rng, x.length);
    // x ± eps v in float64 for the float64 graph (float32 would round the step).
    const step = (sign: number) => Float64Array.from(x, (xi, i) => xi + sign * eps * v[i]!);
    const xp = f64 ? step(1) : x.map((xi, i) => xi + eps * v[i]!);
    const xm = f64 ? step(-1) : x.map((xi, i) => xi - eps * v[i]!);
    const fd = ((await f(xp)) - (await f(xm))) / (2 * eps);
    const an = dot(gx, v);
    const scale = Math.max(Math.abs(an), (norm(gx) * norm(v)) / Math.sqrt(v.length), 1e-6);
    assert.ok(Math.abs(fd - an) < tol * scale, `direction ${k}: finite difference ${fd} vs vjp ${an} (scale ${scale})`);
  }
  assert.ok(norm(gx) > 0, 'gradient is not identically zero');
  return { gx, gy };
}

/** A FLOAT tensor as DOUBLE (other types unchanged). */
function doubleTensor(t: TensorProto): TensorProto {
  if (t.dataType !== DataType.FLOAT) return t;
  const d = Float64Array.from(tensorFloats(t));
  return { name: t.name, dims: t.dims, dataType: DataType.DOUBLE, rawData: new Uint8Array(d.buffer) };
}

/** The model in float64: inputs, outputs, initializers, Constant values and Cast targets. */
export function toDouble(m: ModelProto): ModelProto {
  const g = m.graph!;
  const io = (v: NonNullable<typeof g.input>[number]) =>
    v.type?.tensorType?.elemType === DataType.FLOAT ? { ...v, type: { tensorType: { ...v.type.tensorType, elemType: DataType.DOUBLE } } } : v;
  const node = (g.node ?? []).map((n) => ({
    ...n,
    attribute: (n.attribute ?? []).map((a) => {
      if (a.t) return { ...a, t: doubleTensor(a.t) };
      if (n.opType === 'Cast' && a.name === 'to' && Number(a.i) === DataType.FLOAT) return { ...a, i: DataType.DOUBLE };
      return a;
    }),
  }));
  return { ...m, graph: { ...g, node, input: (g.input ?? []).map(io), output: (g.output ?? []).map(io), initializer: (g.initializer ?? []).map(doubleTensor) } };
}

