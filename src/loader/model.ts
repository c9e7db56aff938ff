/**
 * Reads an ONNX file into a Model, refusing anything it cannot handle with one line that
 * names the file, what is wrong and what to do.
 */
import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readFileSync, readSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../errors.js';
import { kindOf, osCause } from '../oserror.js';
import { DataType, decodeModel, num, tensorDims, type ModelProto, type TensorProto } from './proto.js';

export const SUPPORTED_IR = { min: 3, max: 10 };
export const SUPPORTED_OPSET = { min: 7, max: 21 };
/** Refuse files larger than this before reading them (a 2 GB protobuf limit applies anyway). */
const MAX_MODEL_BYTES = 2 ** 31 - 1;
/** No tensor in a model reslens handles has more elements than this. */
export const MAX_TENSOR_ELEMENTS = 2 ** 31;

export interface Model {
  path: string;
  bytes: Uint8Array;
  sha256: string;
  proto: ModelProto;
  irVersion: number;
  opset: number;
  /** ONNX metadata_props, all keys (reslens.* among them). */
  metadata: Record<string, string>;
}

const ELEM_BYTES: Record<number, number> = {
  [DataType.FLOAT]: 4, [DataType.UINT8]: 1, [DataType.INT8]: 1, [DataType.UINT16]: 2, [DataType.INT16]: 2,
  [DataType.INT32]: 4, [DataType.INT64]: 8, [DataType.BOOL]: 1, [DataType.FLOAT16]: 2, [DataType.DOUBLE]: 8,
  [DataType.UINT32]: 4, [DataType.UINT64]: 8, [DataType.BFLOAT16]: 2,
};

export function loadModel(file: string): Model {
  let size: number;
  try {
    const st = statSync(file);
    if (st.isDirectory()) throw new UserError(`${file}: is a folder, not an ONNX file; give the path of a .onnx file`);
    if (!st.isFile()) throw new UserError(`${file}: is ${kindOf(st)}, not an ONNX file; give the path of a .onnx file`);
    size = st.size;
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`${file}: no such file; check the path (reslens inspect fixtures/models/resnet20.onnx shows a shipped model)`);
  }
  if (size === 0) throw new UserError(`${file}: empty file; it is not an ONNX model`);
  if (size > MAX_MODEL_BYTES) throw new UserError(`${file}: ${size} bytes is over the 2 GiB protobuf limit; save the weights as external data`);
  const bytes = readFileSync(file);
  return modelFromBytes(bytes, file);
}

export function modelFromBytes(bytes: Uint8Array, file: string): Model {
  let proto: ModelProto;
  try {
    proto = decodeModel(bytes);
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new UserError(`${file}: not a readable ONNX model (protobuf decoding failed: ${why}); is the file truncated or of another format?`);
  }
  const graph = proto.graph;
  if (!graph || !graph.node || graph.node.length === 0) {
    throw new UserError(`${file}: not an ONNX model (no graph with nodes found); is it of another format?`);
  }
  const irVersion = num(proto.irVersion);
  if (irVersion < SUPPORTED_IR.min || irVersion > SUPPORTED_IR.max) {
    throw new UserError(`${file}: ONNX IR version ${irVersion} is not supported (${SUPPORTED_IR.min}-${SUPPORTED_IR.max}); re-export the model with an older exporter setting`);
  }
  const opsets = proto.opsetImport ?? [];
  const main = opsets.find((o) => !o.domain || o.domain === 'ai.onnx');
  const opset = main ? num(main.version) : 0;
  if (opset < SUPPORTED_OPSET.min || opset > SUPPORTED_OPSET.max) {
    throw new UserError(`${file}: opset ${opset || 'missing'} is not supported (${SUPPORTED_OPSET.min}-${SUPPORTED_OPSET.max}); re-export with opset_version=13`);
  }
  for (const o of opsets) {
    if (o.domain && o.domain !== 'ai.onnx' && o.domain !== 'com.microsoft' && o.domain !== 'ai.onnx.ml') {
      throw new UserError(`${file}: uses the custom operator domain '${o.domain}', which onnxruntime cannot run; export with standard ONNX operators`);
    }
  }
  if (!graph.input?.length || !graph.output?.length) {
    throw new UserError(`${file}: the graph declares no ${graph.input?.length ? 'outputs' : 'inputs'}; is the file truncated?`);
  }
  for (const t of graph.initializer ?? []) checkTensor(t, file);
  // Surgery addresses nodes by name; ONNX makes names optional, so give nameless or duplicate ones one.
  const all = new Set(graph.node.map((n) => n.name).filter((n) => n));
  const seen = new Set<string>();
  graph.node.forEach((n, i) => {
    if (n.name && !seen.has(n.name)) {
      seen.add(n.name);
      return;
    }
    let name = `${n.opType ?? 'node'}_${i}`;
    while (all.has(name) || seen.has(name)) name += '_';
    n.name = name;
    seen.add(name);
  });
  loadExternalData(graph.initializer ?? [], file);
  const metadata: Record<string, string> = {};
  for (const p of proto.metadataProps ?? []) if (p.key) metadata[p.key] = p.value ?? '';
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  return { path: file, bytes, sha256, proto, irVersion, opset, metadata };
}

/** Refuses absurd sizes before anything is allocated for them. */
function checkTensor(t: TensorProto, file: string): void {
  const dims = tensorDims(t);
  let n = 1;
  for (const d of dims) {
    if (!Number.isFinite(d) || d < 0) throw new UserError(`${file}: initializer '${t.name}' has an invalid dimension ${d}; the file is damaged`);
    n *= d;
  }
  if (n > MAX_TENSOR_ELEMENTS) {
    throw new UserError(`${file}: initializer '${t.name}' claims ${dims.join('x')} elements, more than reslens handles (2^31); the file is damaged or not a ResNet`);
  }
  const eb = ELEM_BYTES[t.dataType ?? 0];
  if (t.rawData?.byteLength && eb && t.dataLocation !== 1 && t.rawData.byteLength !== n * eb) {
    throw new UserError(`${file}: initializer '${t.name}' holds ${t.rawData.byteLength} bytes but its shape ${dims.join('x')} needs ${n * eb}; the file is damaged`);
  }
}

/**
 * Inlines external-data initializers. The location must resolve, symlinks followed, to a regular
 * file inside the model's folder (its real path), and only the bytes the tensor needs are read:
 * a symlink to ../elsewhere or to /dev/zero, a FIFO or a device is refused, not read.
 */
function loadExternalData(inits: TensorProto[], file: string): void {
  const dir = path.dirname(path.resolve(file));
  let realDir: string | undefined;
  for (const t of inits) {
    if (t.dataLocation !== 1) continue;
    const kv: Record<string, string> = {};
    for (const e of t.externalData ?? []) if (e.key) kv[e.key] = e.value ?? '';
    const loc = kv.location;
    const what = `initializer '${t.name}'`;
    if (!loc) throw new UserError(`${file}: ${what} is external but names no location; the file is damaged`);
    const target = path.resolve(dir, loc);
    if (path.isAbsolute(loc) || !target.startsWith(dir + path.sep) || loc.includes('\0')) {
      throw new UserError(`${file}: ${what} points outside the model's folder (${loc}); refusing to read it. Move the data file beside the model`);
    }
    realDir ??= realpathSync(dir);
    let real: string;
    try {
      real = realpathSync(target);
    } catch (e) {
      throw new UserError(`${file}: external data file '${loc}' for '${t.name}' ${osCause(e) === 'no such file' ? 'not found beside the model; copy it next to ' + path.basename(file) : `cannot be opened (${osCause(e)})`}`);
    }
    if (!real.startsWith(realDir + path.sep)) {
      throw new UserError(`${file}: external data '${loc}' for '${t.name}' is a link to ${real}, outside the model's folder; refusing to read it. Copy the data file beside the model`);
    }
    const elems = tensorDims(t).reduce((a, b) => a * b, 1);
    const eb = ELEM_BYTES[t.dataType ?? 0];
    const offset = kv.offset ? Number(kv.offset) : 0;
    const length = kv.length ? Number(kv.length) : eb ? elems * eb : NaN;
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw new UserError(`${file}: external data for '${t.name}' has offset '${kv.offset ?? 0}' and length '${kv.length ?? '?'}', which are not byte counts; the file is damaged`);
    }
    if (eb && length !== elems * eb) {
      throw new UserError(`${file}: external data for '${t.name}' is ${length} bytes but its shape ${tensorDims(t).join('x')} needs ${elems * eb}; the file is damaged`);
    }
    t.rawData = readRegion(real, loc, offset, length, file, t.name ?? '');
    t.dataLocation = 0;
    t.externalData = [];
  }
}

/** Exactly `length` bytes at `offset` of the regular file `real` (a path without links). */
function readRegion(real: string, loc: string, offset: number, length: number, file: string, tensor: string): Buffer {
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOFOLLOW: the path was resolved, a link now is a swap.
    fd = openSync(real, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  } catch (e) {
    throw new UserError(`${file}: external data file '${loc}' for '${tensor}' cannot be opened (${osCause(e)})`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) {
      throw new UserError(`${file}: external data '${loc}' for '${tensor}' is ${kindOf(st)}, not a regular file; refusing to read it`);
    }
    if (offset + length > st.size) {
      throw new UserError(`${file}: external data for '${tensor}' (offset ${offset}, length ${length}) runs past the end of '${loc}' (${st.size} bytes); the data file is truncated`);
    }
    const buf = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const n = readSync(fd, buf, done, length - done, offset + done);
      if (n === 0) throw new UserError(`${file}: external data file '${loc}' ended early while reading '${tensor}'; the data file is truncated`);
      done += n;
    }
    return buf;
  } finally {
    closeSync(fd);
  }
}

/** The model's single float input and output names, and the input's static dims (0 where dynamic). */
export function modelIO(model: Model): { input: string; output: string; inputDims: number[] } {
  const g = model.proto.graph!;
  const inits = new Set((g.initializer ?? []).map((t) => t.name));
  const inputs = (g.input ?? []).filter((i) => !inits.has(i.name));
  if (inputs.length !== 1) {
    throw new UserError(`${model.path}: reslens needs a model with exactly one image input, found ${inputs.length} (${inputs.map((i) => i.name).join(', ')})`);
  }
  const inp = inputs[0]!;
  const dims = (inp.type?.tensorType?.shape?.dim ?? []).map((d) => (d.dimValue != null ? num(d.dimValue) : 0));
  return { input: inp.name!, output: g.output![0]!.name!, inputDims: dims };
}
