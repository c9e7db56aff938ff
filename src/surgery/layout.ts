/**
 * Channels-last inputs: exporters of NHWC models (TensorFlow via tf2onnx, a PyTorch model that
 * permutes its input) put a Transpose with perm [0,3,1,2] first in the graph. reslens's data are
 * NCHW, so the Transpose is taken out and the graph input takes its place, declared N,C,H,W:
 * every later tensor, and so every block, is unchanged. Pure: the input model is not changed.
 */
import { attrInts, type ModelProto } from '../loader/proto.js';

const NHWC_TO_NCHW = [0, 3, 1, 2];

export interface Nchw {
  model: ModelProto;
  /** Whether a leading NHWC → NCHW Transpose was taken out. */
  transposed: boolean;
}

export function nchwInput(model: ModelProto): Nchw {
  const g = model.graph!;
  const inits = new Set((g.initializer ?? []).map((t) => t.name));
  const data = (g.input ?? []).filter((v) => !inits.has(v.name));
  if (data.length !== 1) return { model, transposed: false };
  const inp = data[0]!;
  const dims = inp.type?.tensorType?.shape?.dim;
  const readers = (g.node ?? []).filter((n) => (n.input ?? []).includes(inp.name!));
  const t = readers[0];
  if (readers.length !== 1 || t!.opType !== 'Transpose' || (t!.domain && t!.domain !== 'ai.onnx') || !dims || dims.length !== 4) return { model, transposed: false };
  if (attrInts(t!, 'perm', []).join() !== NHWC_TO_NCHW.join()) return { model, transposed: false };
  const out = t!.output![0]!;
  if ((g.output ?? []).some((o) => o.name === out || o.name === inp.name)) return { model, transposed: false };
  // The input keeps the name the user exported it under; the Transpose's readers read it instead.
  const node = (g.node ?? []).filter((n) => n !== t).map((n) => ((n.input ?? []).includes(out) ? { ...n, input: n.input!.map((i) => (i === out ? inp.name! : i)) } : n));
  const input = (g.input ?? []).map((v) =>
    v === inp ? { ...v, type: { ...v.type, tensorType: { ...v.type!.tensorType, shape: { dim: NHWC_TO_NCHW.map((p) => dims[p]!) } } } } : v,
  );
  return { model: { ...model, graph: { ...g, node, input } }, transposed: true };
}
