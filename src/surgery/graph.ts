/**
 * An indexed, read-only view of an ONNX graph (producers, consumers, topological order,
 * what depends on the input) and the pure functions that cut sub-models out of it.
 * Nothing here does I/O or opens sessions.
 */
import { DataType, type GraphProto, type ModelProto, type NodeProto, type TensorProto, type ValueInfoProto } from '../loader/proto.js';

export interface GraphIndex {
  graph: GraphProto;
  /** Nodes in topological order. */
  nodes: NodeProto[];
  /** tensor name → index (in `nodes`) of the node producing it. */
  producer: Map<string, number>;
  /** tensor name → indices of the nodes consuming it. */
  consumers: Map<string, number[]>;
  initializers: Map<string, TensorProto>;
  /** Graph inputs that are not initializers (the data inputs). */
  inputs: string[];
  outputs: string[];
  /** Tensors whose value depends on a data input (the rest are constants). */
  computed: Set<string>;
}

export function indexGraph(graph: GraphProto): GraphIndex {
  const initializers = new Map<string, TensorProto>();
  for (const t of graph.initializer ?? []) initializers.set(t.name!, t);
  const inputs = (graph.input ?? []).map((v) => v.name!).filter((n) => !initializers.has(n));
  const outputs = (graph.output ?? []).map((v) => v.name!);
  const nodes = topoSort(graph.node ?? [], new Set([...inputs, ...initializers.keys()]));
  const producer = new Map<string, number>();
  const consumers = new Map<string, number[]>();
  nodes.forEach((n, i) => {
    for (const o of n.output ?? []) if (o) producer.set(o, i);
    for (const inp of n.input ?? []) {
      if (!inp) continue;
      const list = consumers.get(inp) ?? [];
      list.push(i);
      consumers.set(inp, list);
    }
  });
  const computed = new Set<string>(inputs);
  for (const n of nodes) {
    if ((n.input ?? []).some((i) => computed.has(i))) for (const o of n.output ?? []) if (o) computed.add(o);
  }
  return { graph, nodes, producer, consumers, initializers, inputs, outputs, computed };
}

/** Kahn's algorithm, stable with respect to the file's order. */
export function topoSort(nodes: NodeProto[], available: Set<string>): NodeProto[] {
  const have = new Set(available);
  const waiting = new Map<string, number[]>();
  const missing: number[] = nodes.map(() => 0);
  const ready: number[] = [];
  nodes.forEach((n, i) => {
    for (const inp of n.input ?? []) {
      if (!inp || have.has(inp)) continue;
      if (nodes.some((m) => (m.output ?? []).includes(inp))) {
        missing[i]!++;
        const w = waiting.get(inp) ?? [];
        w.push(i);
        waiting.set(inp, w);
      }
    }
    if (missing[i] === 0) ready.push(i);
  });
  const out: NodeProto[] = [];
  // A min-heap would be faster; ResNets have at most a few thousand nodes.
  while (ready.length) {
    ready.sort((a, b) => a - b);
    const i = ready.shift()!;
    out.push(nodes[i]!);
    for (const o of nodes[i]!.output ?? []) {
      for (const j of waiting.get(o) ?? []) if (--missing[j]! === 0) ready.push(j);
      waiting.delete(o);
    }
  }
  if (out.length !== nodes.length) throw new Error('graph has a cycle or a node whose input is never produced');
  return out;
}

/** Node indices whose outputs (transitively) feed `tensor`, stopping at `stop` tensors. */
export function ancestors(g: GraphIndex, tensors: string[], stop: Set<string> = new Set()): Set<number> {
  const seen = new Set<number>();
  const stack = [...tensors];
  while (stack.length) {
    const t = stack.pop()!;
    if (stop.has(t)) continue;
    const p = g.producer.get(t);
    if (p === undefined || seen.has(p)) continue;
    seen.add(p);
    for (const i of g.nodes[p]!.input ?? []) if (i) stack.push(i);
  }
  return seen;
}

/** Node indices that (transitively) consume `tensor`. */
export function descendants(g: GraphIndex, tensor: string): Set<number> {
  const seen = new Set<number>();
  const stack = [tensor];
  while (stack.length) {
    const t = stack.pop()!;
    for (const c of g.consumers.get(t) ?? []) {
      if (seen.has(c)) continue;
      seen.add(c);
      for (const o of g.nodes[c]!.output ?? []) if (o) stack.push(o);
    }
  }
  return seen;
}

/**
 * Immediate dominators over computed nodes (Cooper, Harvey & Kennedy 2001), with a virtual
 * root (-1) standing for the data inputs. idom[i] is a node index, or -1.
 */
export function dominators(g: GraphIndex): number[] {
  const idom: number[] = g.nodes.map(() => -2);
  const preds = g.nodes.map((n) => {
    const ps = new Set<number>();
    for (const i of n.input ?? []) {
      if (!i || !g.computed.has(i)) continue;
      const p = g.producer.get(i);
      ps.add(p === undefined ? -1 : p);
    }
    return [...ps];
  });
  // Topological order means each node's predecessors are final when it is visited.
  const intersect = (a: number, b: number): number => {
    while (a !== b) {
      while (a > b) a = idom[a]!;
      while (b > a) b = idom[b]!;
    }
    return a;
  };
  g.nodes.forEach((_, i) => {
    const ps = preds[i]!;
    if (ps.length === 0) return; // constant-only node: no dominator
    let d = ps[0]!;
    for (const p of ps.slice(1)) d = intersect(d, p);
    idom[i] = d;
  });
  return idom;
}

/**
 * A self-contained model computing `outputs` from `inputs` (tensor names in `model`):
 * the nodes between them, the constants they need and the model's opsets.
 * Throws if an output depends on a data input through a path that avoids `inputs`.
 */
export function extractSubmodel(
  model: ModelProto,
  g: GraphIndex,
  inputs: string[],
  outputs: string[],
  name = 'sub',
): ModelProto {
  const stop = new Set(inputs);
  const keep = ancestors(g, outputs, stop);
  const used = new Set<string>();
  for (const i of keep) for (const t of g.nodes[i]!.input ?? []) if (t) used.add(t);
  for (const o of outputs) used.add(o);
  for (const t of used) {
    if (stop.has(t) || g.initializers.has(t)) continue;
    if (g.producer.has(t)) continue;
    if (g.inputs.includes(t)) {
      throw new Error(`cannot cut the graph at [${inputs.join(', ')}]: '${t}' is needed by [${outputs.join(', ')}] but is not reached through the cut`);
    }
  }
  const nodes = [...keep].sort((a, b) => a - b).map((i) => g.nodes[i]!);
  const initializer = [...used].filter((t) => g.initializers.has(t)).map((t) => g.initializers.get(t)!);
  const info = new Map<string, ValueInfoProto>();
  for (const v of [...(g.graph.input ?? []), ...(g.graph.valueInfo ?? []), ...(g.graph.output ?? [])]) info.set(v.name!, v);
  const io = (n: string): ValueInfoProto => {
    const v = info.get(n);
    const elemType = v?.type?.tensorType?.elemType ?? DataType.FLOAT;
    return { name: n, type: { tensorType: { elemType } } };
  };
  return {
    irVersion: model.irVersion,
    opsetImport: model.opsetImport,
    producerName: 'reslens',
    graph: {
      name,
      node: nodes,
      initializer,
      input: inputs.map(io),
      output: outputs.map(io),
    },
  };
}

/** The model with `tensors` added to its outputs (float; those already outputs are skipped). */
export function withOutputs(model: ModelProto, tensors: string[]): ModelProto {
  const g = model.graph!;
  const have = new Set((g.output ?? []).map((o) => o.name));
  const types = elemTypes(g);
  const extra = tensors.filter((t) => !have.has(t)).map((name) => ({ name, type: { tensorType: { elemType: types.get(name) ?? DataType.FLOAT } } }));
  return { ...model, graph: { ...g, output: [...(g.output ?? []), ...extra] } };
}

/** Ops whose output is int64 whatever their input (ONNX operator definitions). */
const INT64_OUT = new Set(['Shape', 'Size', 'NonZero', 'ArgMax', 'ArgMin']);
/** Ops whose output is bool. */
const BOOL_OUT = new Set(['Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual', 'Not', 'And', 'Or', 'Xor', 'IsNaN', 'IsInf']);

/**
 * Element types of every tensor, propagated in node order from the inputs, initializers and
 * Constants: shape ops give int64, Cast its `to`, comparisons bool, Where its branches' type,
 * anything else its first input's. torchvision's vit_b_16 computes its class token's batch
 * from Shape and Gather; a backward that saved those tensors declared them float, which
 * onnxruntime refuses.
 */
function elemTypes(g: GraphProto): Map<string, number> {
  const t = new Map<string, number>();
  for (const v of [...(g.input ?? []), ...(g.valueInfo ?? [])]) if (v.type?.tensorType?.elemType) t.set(v.name!, v.type.tensorType.elemType);
  for (const init of g.initializer ?? []) if (init.dataType) t.set(init.name!, init.dataType);
  for (const n of g.node ?? []) {
    const op = n.opType ?? '';
    let type: number | undefined;
    if (INT64_OUT.has(op)) type = DataType.INT64;
    else if (BOOL_OUT.has(op)) type = DataType.BOOL;
    else if (op === 'Cast') type = Number(n.attribute?.find((a) => a.name === 'to')?.i ?? DataType.FLOAT);
    else if (op === 'Constant') type = n.attribute?.find((a) => a.name === 'value')?.t?.dataType ?? (n.attribute?.some((a) => a.name === 'value_ints' || a.name === 'value_int') ? DataType.INT64 : DataType.FLOAT);
    else if (op === 'Where') type = t.get(n.input?.[1] ?? '');
    else type = t.get(n.input?.[0] ?? '');
    for (const o of n.output ?? []) if (o && !t.has(o)) t.set(o, type ?? DataType.FLOAT);
  }
  return t;
}
