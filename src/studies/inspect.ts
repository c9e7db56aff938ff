/**
 * The inspect study: the residual structure of a model as a document (the JSON of `reslens
 * inspect`, a report's `inspect`): blocks, layers, stages, shapes, parameter counts.
 */
import { attrInt, type NodeProto } from '../loader/proto.js';
import { openNetwork, type Network, type PreprocessOptions } from '../engine/network.js';
import type { Runtime } from '../engine/session.js';
import { sublayersOf, unitInfo } from './network.js';

export interface InspectReport {
  model: { path: string; sha256: string; irVersion: number; opset: number; metadata: Record<string, string> };
  kind: 'residual' | 'plain' | 'dense';
  input: { name: string; shape: number[] };
  blocks: {
    index: number; stage: number; input: string; output: string; shortcut: 'identity' | 'projection';
    post: string | null; downsampling: boolean; residualBranch: string[]; shortcutOps: string[];
    params: number; inputShape: number[] | null; outputShape: number[] | null;
    /** Transformers only. */
    sublayer?: { layer: number; kind: 'attention' | 'mlp' };
  }[];
  layers: { index: number; stage: number; input: string; output: string; ops: string[]; params: number; inputShape: number[] | null; outputShape: number[] | null; deletable: boolean }[];
  stages: { index: number; units: number[]; outputShape: number[] | null }[];
  totals: { blocks: number; layers: number; stages: number; paths: string; params: number };
  stem: string[];
  head: string[];
  notes: string[];
}

function opLabel(n: NodeProto): string {
  if (n.opType === 'Conv') {
    const group = attrInt(n, 'group', 1);
    if (group > 1) return `Conv/g${group}`;
  }
  return n.opType!;
}

export function inspectReport(net: Network): InspectReport {
  const { structure: s, graph: g, shapes, model } = net;
  const shape = (t: string) => shapes.get(t) ?? null;
  const units = s.kind === 'residual' ? s.blocks : s.layers;
  // What lesion may delete, decided in one place (empty for dense and branching networks).
  const deletable = new Set(unitInfo(net).filter((u) => u.deletable).map((u) => u.unit));
  const subs = sublayersOf(net);
  const stages: InspectReport['stages'] = [];
  for (const u of units) {
    let st = stages.find((x) => x.index === u.stage);
    if (!st) stages.push((st = { index: u.stage, units: [], outputShape: shape(u.output) }));
    st.units.push(u.index);
  }
  return {
    model: { path: model.path, sha256: model.sha256, irVersion: model.irVersion, opset: model.opset, metadata: model.metadata },
    kind: s.kind,
    input: { name: net.input, shape: [1, ...net.preprocessing.inputShape] },
    blocks: s.blocks.map((b) => ({
      index: b.index, stage: b.stage, input: b.input, output: b.output, shortcut: b.shortcutKind, post: b.post,
      downsampling: b.downsampling, residualBranch: b.residualBranch.map((j) => opLabel(g.nodes[j]!)),
      shortcutOps: b.shortcut.map((j) => opLabel(g.nodes[j]!)), params: b.params,
      inputShape: shape(b.input), outputShape: shape(b.output),
      ...(subs ? { sublayer: { layer: subs[b.index]!.layer, kind: subs[b.index]!.kind } } : {}),
    })),
    layers: s.layers.map((l) => ({
      index: l.index, stage: l.stage, input: l.input, output: l.output, ops: l.nodes.map((j) => opLabel(g.nodes[j]!)),
      params: l.params, inputShape: shape(l.input), outputShape: shape(l.output), deletable: s.kind === 'plain' && deletable.has(l.index),
    })),
    stages,
    totals: {
      blocks: s.blocks.length, layers: s.layers.length, stages: stages.length,
      paths: (1n << BigInt(s.blocks.length)).toString(), params: s.params,
    },
    stem: s.stemOps,
    head: s.headOps,
    notes: s.notes,
  };
}

export async function inspect(rt: Runtime, file: string, o: PreprocessOptions): Promise<InspectReport> {
  return inspectReport(await openNetwork(rt, file, { ...o, sizeOptional: true }));
}
