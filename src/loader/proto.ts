/**
 * The one place that knows which protobuf library decodes ONNX. onnx-proto decodes a
 * 100 MB model in milliseconds without copying weights; int64 fields arrive as Long.
 */
import onnxProto from 'onnx-proto';

export const onnx = onnxProto.onnx;
export type ModelProto = onnxProto.onnx.IModelProto;
export type GraphProto = onnxProto.onnx.IGraphProto;
export type NodeProto = onnxProto.onnx.INodeProto;
export type TensorProto = onnxProto.onnx.ITensorProto;
export type ValueInfoProto = onnxProto.onnx.IValueInfoProto;
export type AttributeProto = onnxProto.onnx.IAttributeProto;

export const DataType = onnxProto.onnx.TensorProto.DataType;
export const AttrType = onnxProto.onnx.AttributeProto.AttributeType;

/** Long | number | null → number (ONNX dims and ints fit easily in a double here). */
export function num(v: unknown): number {
  if (v === null || v === undefined) return 0;
  if (typeof v === 'number') return v;
  if (typeof v === 'object' && v !== null && 'toNumber' in v) return (v as { toNumber(): number }).toNumber();
  return Number(v);
}

export function decodeModel(bytes: Uint8Array): ModelProto {
  return onnx.ModelProto.decode(bytes);
}

export function encodeModel(model: ModelProto): Uint8Array {
  return onnx.ModelProto.encode(model as onnxProto.onnx.ModelProto).finish();
}

// ---------------------------------------------------------------- builders
// Small constructors so surgery code and tests can write graphs tersely.

export type AttrValue = number | number[] | string | TensorProto | { float: number } | { floats: number[] };

/** An attribute from a plain value: integers → INT(S), {float}/{floats} → FLOAT(S). */
export function attr(name: string, v: AttrValue): AttributeProto {
  if (typeof v === 'number') {
    return Number.isInteger(v) ? { name, type: AttrType.INT, i: v } : { name, type: AttrType.FLOAT, f: v };
  }
  if (typeof v === 'string') return { name, type: AttrType.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) {
    return v.every(Number.isInteger) ? { name, type: AttrType.INTS, ints: v } : { name, type: AttrType.FLOATS, floats: v };
  }
  if ('float' in v) return { name, type: AttrType.FLOAT, f: v.float };
  if ('floats' in v) return { name, type: AttrType.FLOATS, floats: v.floats };
  return { name, type: AttrType.TENSOR, t: v };
}

export function makeNode(
  opType: string,
  inputs: string[],
  outputs: string[],
  attrs: Record<string, AttrValue> = {},
  name = '',
): NodeProto {
  return {
    opType,
    input: inputs,
    output: outputs,
    name: name || `${opType}_${outputs[0] ?? ''}`,
    attribute: Object.entries(attrs).map(([k, v]) => attr(k, v)),
  };
}

export function floatTensor(name: string, dims: number[], data: ArrayLike<number>): TensorProto {
  const f = Float32Array.from(data);
  return { name, dims, dataType: DataType.FLOAT, rawData: new Uint8Array(f.buffer, f.byteOffset, f.byteLength) };
}

export function int64Tensor(name: string, dims: number[], data: number[]): TensorProto {
  const b = new BigInt64Array(data.map((d) => BigInt(d)));
  return { name, dims, dataType: DataType.INT64, rawData: new Uint8Array(b.buffer) };
}

export function valueInfo(name: string, dims: (number | string)[], elemType = DataType.FLOAT): ValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

export function makeModel(
  graph: { nodes: NodeProto[]; inputs: ValueInfoProto[]; outputs: ValueInfoProto[]; initializers?: TensorProto[]; name?: string },
  opset = 13,
  extraOpsets: { domain: string; version: number }[] = [],
): ModelProto {
  return {
    irVersion: 7,
    producerName: 'reslens',
    opsetImport: [{ domain: '', version: opset }, ...extraOpsets],
    graph: {
      name: graph.name ?? 'g',
      node: graph.nodes,
      input: graph.inputs,
      output: graph.outputs,
      initializer: graph.initializers ?? [],
    },
  };
}

// ---------------------------------------------------------------- readers

export function getAttr(node: NodeProto, name: string): AttributeProto | undefined {
  return node.attribute?.find((a) => a.name === name);
}
export function attrInt(node: NodeProto, name: string, dflt: number): number {
  const a = getAttr(node, name);
  return a ? num(a.i) : dflt;
}
export function attrFloat(node: NodeProto, name: string, dflt: number): number {
  const a = getAttr(node, name);
  return a ? (a.f ?? dflt) : dflt;
}
export function attrInts(node: NodeProto, name: string, dflt: number[]): number[] {
  const a = getAttr(node, name);
  return a && a.ints && a.ints.length ? a.ints.map(num) : dflt;
}
export function attrString(node: NodeProto, name: string, dflt: string): string {
  const a = getAttr(node, name);
  return a?.s ? new TextDecoder().decode(a.s) : dflt;
}

export function tensorDims(t: TensorProto): number[] {
  return (t.dims ?? []).map(num);
}

/** Float32 values of a FLOAT initializer (raw_data or float_data). */
export function tensorFloats(t: TensorProto): Float32Array {
  if (t.dataType !== DataType.FLOAT) throw new Error(`tensor ${t.name}: expected FLOAT, got data type ${t.dataType}`);
  if (t.rawData && t.rawData.byteLength) {
    const r = t.rawData;
    // raw_data may be unaligned inside the file buffer: copy when it is.
    if (r.byteOffset % 4 === 0) return new Float32Array(r.buffer, r.byteOffset, r.byteLength / 4);
    return new Float32Array(Uint8Array.from(r).buffer); // (Buffer#slice would be a view, not a copy)
  }
  return Float32Array.from(t.floatData ?? []);
}

/** Integer values of an INT64/INT32 initializer. */
export function tensorInts(t: TensorProto): number[] {
  if (t.rawData && t.rawData.byteLength) {
    const r = Uint8Array.from(t.rawData); // a copy, aligned; Buffer#slice would be a view
    if (t.dataType === DataType.INT64) return Array.from(new BigInt64Array(r.buffer), Number);
    if (t.dataType === DataType.INT32) return Array.from(new Int32Array(r.buffer));
  }
  const tt = t as { int64Data?: unknown[]; int32Data?: number[] };
  if (tt.int64Data?.length) return tt.int64Data.map(num);
  return tt.int32Data ?? [];
}
