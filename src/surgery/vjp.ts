/**
 * Vector-Jacobian products as ONNX models, so that onnxruntime can run the backward passes
 * of docs/science.md's path-restricted gradients. buildVjp cuts the nodes between two tensors
 * and emits, in reverse topological order, each node's backward rule (vjp-rules.ts):
 * input gradients only, weights are constants, the forward point is fixed (the backward
 * reads forward tensors it lists as `saved`). Pure: graph in, model out.
 */
import { UserError } from '../errors.js';
import { DataType, floatTensor, makeModel, makeNode, type ModelProto, type ValueInfoProto } from '../loader/proto.js';
import { ancestors, descendants, withOutputs, type GraphIndex } from './graph.js';
import { ALL_OUTPUTS, Builder, ruleFor } from './vjp-rules.js';

export { reluMaskName, SUPPORTED_OPS } from './vjp-rules.js';

export interface VjpSpec {
  /** Tensor whose gradient we want (e.g. a block input x). */
  from: string;
  /** Tensor whose gradient is given (e.g. the block output y, or the logits). */
  to: string;
  /**
   * Static shapes of forward tensors for batch size N (batch dim included), from a probe
   * run. Needs every data-dependent tensor of the region a rule looks at (in practice: the
   * inputs and outputs of the nodes between `from` and `to`).
   */
  shapes: Map<string, number[]>;
  /** Edges through which no gradient flows: input slot `input` of the node named `node`. */
  cut?: { node: string; input: number }[];
  /**
   * ReLU masks as saved inputs (named by reluMaskName, listed in `masks`) instead of being
   * recomputed from the ReLU's output on every run: for callers that run many backwards on
   * one forward. The forward that feeds them: withSavedOutputs.
   */
  reluMasks?: boolean;
}

export interface Vjp {
  /** Inputs 'grad_out' (shape of `to`) then `saved` (by their forward names); output 'grad_in'. */
  model: ModelProto;
  /** Forward tensors the backward reads; the caller computes them in the forward pass. */
  saved: string[];
  /** The saved names that are ReLU masks, each with the ReLU output it is read off. */
  masks: Map<string, string>;
}

export const GRAD_OUT = 'grad_out';
export const GRAD_IN = 'grad_in';

/** The model's default-domain opset. */
function forwardOpset(model: ModelProto): number {
  const o = (model.opsetImport ?? []).find((x) => !x.domain || x.domain === 'ai.onnx');
  const v = o?.version;
  return v === null || v === undefined ? 13 : Number(v);
}

export function buildVjp(model: ModelProto, g: GraphIndex, spec: VjpSpec): Vjp {
  const { from, to } = spec;
  const names = new Set(g.nodes.map((n) => n.name ?? ''));
  const cut = new Set<string>();
  for (const c of spec.cut ?? []) {
    if (!names.has(c.node)) throw new Error(`vjp: cut names node '${c.node}', which is not in the graph`);
    cut.add(`${c.node}\u0000${c.input}`);
  }

  const desc = descendants(g, from);
  const live = new Set<string>([from]);
  for (const i of desc) for (const o of g.nodes[i]!.output ?? []) if (o) live.add(o);
  if (from !== to && !live.has(to)) {
    throw new UserError(`cannot build a gradient from '${to}' back to '${from}': '${to}' does not depend on '${from}'`);
  }
  const region = [...ancestors(g, [to], new Set([from]))].filter((i) => desc.has(i)).sort((a, b) => b - a);

  const b = new Builder(g, spec.shapes, forwardOpset(model), spec.reluMasks ?? false);
  const grads = new Map<string, string[]>([[to, [GRAD_OUT]]]);
  const total = (t: string): string | null => {
    const list = grads.get(t);
    if (!list || !list.length) return null;
    if (list.length === 1) return list[0]!;
    // Adds, not one Sum: onnxruntime 1.30's WebGPU provider has no Sum kernel (it fell back to the CPU).
    const s = list.slice(1).reduce((acc, t) => b.op('Add', [acc, t]), list[0]!);
    grads.set(t, [s]);
    return s;
  };

  for (const i of region) {
    const node = g.nodes[i]!;
    const gys = (node.output ?? []).map((o) => (o ? total(o) : null));
    const gy = gys[0] ?? (ALL_OUTPUTS.has(node.opType ?? '') ? gys.find((x) => x) : null);
    if (!gy) continue; // no gradient reaches this node (cut, or only non-differentiable outputs)
    const inputs = node.input ?? [];
    ruleFor(node)({
      b,
      node,
      gy,
      grads: gys,
      wants: (k) => {
        const t = inputs[k];
        return !!t && live.has(t) && !cut.has(`${node.name ?? ''}\u0000${k}`);
      },
      emit: (k, grad) => {
        const t = inputs[k]!;
        const list = grads.get(t) ?? [];
        list.push(grad);
        grads.set(t, list);
      },
    });
  }

  let gFrom = from === to ? GRAD_OUT : total(from);
  if (!gFrom) {
    // Every path is cut: a zero gradient of x's shape, batch taken from grad_out.
    const fs = b.shape(from, { name: '(zero gradient)', opType: 'vjp' });
    let dims: string;
    if (fs.length) {
      const n = b.op('Slice', [b.op('Shape', [GRAD_OUT]), b.i64([0]), b.i64([1])]);
      dims = b.op('Concat', [n, b.i64(fs.slice(1))], { axis: 0 });
    } else dims = b.i64([], [0]);
    b.op('ConstantOfShape', [dims], {}, GRAD_IN); // float 0 by default
  } else {
    b.op('Identity', [gFrom], {}, GRAD_IN);
  }

  const info = new Map<string, ValueInfoProto>();
  for (const v of [...(g.graph.input ?? []), ...(g.graph.valueInfo ?? []), ...(g.graph.output ?? [])]) info.set(v.name!, v);
  const io = (n: string, elemType?: number): ValueInfoProto => ({
    name: n,
    type: { tensorType: { elemType: elemType ?? info.get(n)?.type?.tensorType?.elemType ?? DataType.FLOAT } },
  });
  const fwd = forwardOpset(model);
  const opset = Math.max(b.opset, Math.min(fwd, 21));
  const m = makeModel(
    {
      name: `vjp_${from}_${to}`,
      nodes: b.nodes,
      inputs: [io(GRAD_OUT, DataType.FLOAT), ...b.saved.map((t) => io(t))],
      outputs: [io(GRAD_IN, DataType.FLOAT)],
      initializers: [...b.initializers.values()],
    },
    opset,
  );
  return { model: m, saved: [...b.saved], masks: new Map(b.masks) };
}

/**
 * The forward model with every tensor a set of backwards reads as an output: forward tensors
 * by name, and the ReLU masks (Vjp.masks) computed from theirs.
 */
export function withSavedOutputs(model: ModelProto, saved: string[], masks: Map<string, string>): ModelProto {
  const g = model.graph!;
  const zero = '__reslens_zero';
  const nodes = [...(g.node ?? [])];
  const initializer = [...(g.initializer ?? [])];
  if (masks.size) initializer.push(floatTensor(zero, [], [0]));
  let i = 0;
  for (const [name, y] of masks) {
    const gt = `__reslens_gt${i}`;
    nodes.push(makeNode('Greater', [y, zero], [gt], {}, `__reslens_mask${i}_gt`));
    nodes.push(makeNode('Cast', [gt], [name], { to: DataType.FLOAT }, `__reslens_mask${i++}_cast`));
  }
  const inputs = new Set((g.input ?? []).map((v) => v.name));
  return withOutputs({ ...model, graph: { ...g, node: nodes, initializer } }, saved.filter((t) => !inputs.has(t)));
}

/**
 * Gradient of the mean softmax cross-entropy: inputs 'logits' [N, K] float and 'labels' [N]
 * float (the class index: a GPU provider runs float tensors, not int64 ones); outputs
 * 'grad_logits' = (softmax(logits) - onehot(labels)) / N and 'loss' (scalar). Every op here
 * has a WebGPU kernel in onnxruntime 1.30, so the graph runs there without falling back; the
 * log-softmax is written out (that provider has no LogSoftmax).
 */
export function buildSoftmaxCrossEntropyGrad(numClasses: number): ModelProto {
  const g = { nodes: [], inputs: [], outputs: [], graph: { input: [] } } as unknown as GraphIndex;
  const b = new Builder(g, new Map(), 13);
  const sm = b.op('Softmax', ['logits'], { axis: 1 });
  // log softmax = z - log Σ exp z, z = logits - max (no overflow).
  const z = b.op('Sub', ['logits', b.op('ReduceMax', ['logits'], { axes: [1], keepdims: 1 })]);
  const lsm = b.op('Sub', [z, b.op('Log', [b.op('ReduceSum', [b.op('Exp', [z]), b.i64([1])], { keepdims: 1 })])]);
  const classes = b.f32(Array.from({ length: numClasses }, (_, i) => i), [1, numClasses]);
  const lab = b.op('Unsqueeze', ['labels', b.i64([1])]);
  const onehot = b.op('Cast', [b.op('Equal', [lab, classes])], { to: DataType.FLOAT });
  // N as a float: the sum of one per label (the shape would be int64).
  const n = b.op('ReduceSum', [b.op('Add', [b.op('Mul', ['labels', b.scalar(0)]), b.scalar(1)])], { keepdims: 0 });
  b.op('Div', [b.op('Sub', [sm, onehot]), n], {}, 'grad_logits');
  const picked = b.op('ReduceSum', [b.op('Mul', [lsm, onehot]), b.i64([1])], { keepdims: 0 });
  b.op('Neg', [b.op('ReduceMean', [picked], { keepdims: 0 })], {}, 'loss');
  return makeModel(
    {
      name: 'softmax_cross_entropy_grad',
      nodes: b.nodes,
      inputs: [
        { name: 'logits', type: { tensorType: { elemType: DataType.FLOAT, shape: { dim: [{ dimParam: 'N' }, { dimValue: numClasses }] } } } },
        { name: 'labels', type: { tensorType: { elemType: DataType.FLOAT, shape: { dim: [{ dimParam: 'N' }] } } } },
      ],
      outputs: [
        { name: 'grad_logits', type: { tensorType: { elemType: DataType.FLOAT } } },
        { name: 'loss', type: { tensorType: { elemType: DataType.FLOAT } } },
      ],
      initializers: [...b.initializers.values()],
    },
    13,
  );
}
