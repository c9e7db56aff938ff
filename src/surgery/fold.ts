/**
 * BatchNormalization folded into the Conv before it: W'[o] = W[o]·γ[o]/√(σ²[o]+ε),
 * b'[o] = (b[o] − μ[o])·γ[o]/√(σ²[o]+ε) + β[o], in float64, then stored as float32. onnxruntime
 * does the same fusion at load time, but per Conv node, so a fused session that holds many
 * copies of a step (engine: one graph for all programs) held a folded copy of the weights for
 * each; folded beforehand, the copies share one initializer. The Conv takes over the BN's output
 * name, so every tensor the residual structure names stays. Pure: the input model is not changed.
 */
import { attrFloat, attrInt, DataType, floatTensor, tensorDims, tensorFloats, type ModelProto, type NodeProto, type TensorProto } from '../loader/proto.js';

export interface Folded {
  model: ModelProto;
  /** BatchNormalization nodes folded. */
  folded: number;
}

export function foldBatchNorm(model: ModelProto): Folded {
  const g = model.graph!;
  const nodes = g.node ?? [];
  const inits = new Map((g.initializer ?? []).map((t) => [t.name!, t]));
  const consumers = new Map<string, number>();
  for (const n of nodes) for (const t of n.input ?? []) if (t) consumers.set(t, (consumers.get(t) ?? 0) + 1);
  const graphOutputs = new Set((g.output ?? []).map((o) => o.name));
  const producer = new Map<string, number>();
  nodes.forEach((n, i) => (n.output ?? []).forEach((t) => producer.set(t, i)));

  const replaced = new Map<number, NodeProto>(); // conv index → folded conv
  const dropped = new Set<number>();
  const added: TensorProto[] = [];
  const usedNames = new Set([...inits.keys(), ...nodes.flatMap((n) => n.output ?? [])]);
  const fresh = (base: string) => {
    let name = base;
    while (usedNames.has(name)) name += '_';
    usedNames.add(name);
    return name;
  };
  // torch.onnx shares equal constants: a BN's bias can arrive through an Identity of another
  // initializer (resnet20 at opsets 9-17), and older exporters write Constant nodes.
  const constant = (name: string | undefined | null): TensorProto | undefined => {
    for (let hops = 0; name && hops < 8; hops++) {
      const t = inits.get(name);
      if (t) return t;
      const p = producer.get(name);
      const n = p === undefined ? undefined : nodes[p]!;
      if (n?.opType === 'Constant') return n.attribute?.find((a) => a.name === 'value')?.t ?? undefined;
      if (n?.opType !== 'Identity') return undefined;
      name = n.input?.[0];
    }
    return undefined;
  };
  const floats = (name: string | undefined | null) => {
    const t = constant(name);
    return t && t.dataType === DataType.FLOAT ? tensorFloats(t) : null;
  };

  nodes.forEach((bn, bi) => {
    if (bn.opType !== 'BatchNormalization' || (bn.output ?? []).filter((o) => o).length !== 1) return;
    if (bn.domain && bn.domain !== 'ai.onnx') return;
    // Opset 7's spatial=0 normalises each activation on its own, not per channel.
    if (attrInt(bn, 'spatial', 1) !== 1) return;
    const ci = producer.get(bn.input![0]!);
    if (ci === undefined || replaced.has(ci)) return;
    const conv = nodes[ci]!;
    if (conv.opType !== 'Conv' || (conv.output ?? []).length !== 1 || consumers.get(conv.output![0]!) !== 1 || graphOutputs.has(conv.output![0]!)) return;
    const wT = constant(conv.input![1]);
    const W = floats(conv.input![1]);
    const [scale, beta, mean, variance] = [1, 2, 3, 4].map((k) => floats(bn.input![k]));
    if (!wT || !W || !scale || !beta || !mean || !variance) return;
    const dims = tensorDims(wT);
    const O = dims[0]!;
    if (scale.length !== O || beta.length !== O || mean.length !== O || variance.length !== O) return;
    const b0 = conv.input![2] ? floats(conv.input![2]) : new Float32Array(O);
    if (!b0 || b0.length !== O) return;
    const eps = attrFloat(bn, 'epsilon', 1e-5);
    const per = W.length / O;
    const w = new Float32Array(W.length), b = new Float32Array(O);
    for (let o = 0; o < O; o++) {
      const f = scale[o]! / Math.sqrt(variance[o]! + eps);
      for (let j = 0; j < per; j++) w[o * per + j] = W[o * per + j]! * f;
      b[o] = (b0[o]! - mean[o]!) * f + beta[o]!;
    }
    const wName = fresh(`${conv.input![1]}_bnfolded`), bName = fresh(`${conv.name || 'conv'}_bnfolded_bias`);
    added.push(floatTensor(wName, dims, w), floatTensor(bName, [O], b));
    replaced.set(ci, { ...conv, input: [conv.input![0]!, wName, bName], output: [bn.output![0]!] });
    dropped.add(bi);
  });
  if (!dropped.size) return { model, folded: 0 };

  let node = nodes.flatMap((n, i) => (dropped.has(i) ? [] : [replaced.get(i) ?? n]));
  const graphOut = new Set((g.output ?? []).map((o) => o.name!));
  // Identity and Constant nodes that fed only the folded BNs go with them.
  for (let again = true; again; ) {
    const read = new Set(node.flatMap((n) => n.input ?? []));
    const before = node.length;
    node = node.filter((n) => !(n.opType === 'Identity' || n.opType === 'Constant') || (n.output ?? []).some((o) => read.has(o) || graphOut.has(o)));
    again = node.length < before;
  }
  const stillUsed = new Set(node.flatMap((n) => n.input ?? []));
  for (const o of graphOut) stillUsed.add(o);
  const initializer = [...(g.initializer ?? []).filter((t) => stillUsed.has(t.name!)), ...added];
  const inputs = (g.input ?? []).filter((i) => !inits.has(i.name!) || stillUsed.has(i.name!));
  return { model: { ...model, graph: { ...g, node, initializer, input: inputs } }, folded: dropped.size };
}
