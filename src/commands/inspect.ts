/** reslens inspect: the residual structure of a model, as a table or JSON. */
import Table from 'cli-table3';
import { attrInt, type NodeProto } from '../loader/proto.js';
import { unitInfo } from '../engine/lesion.js';
import { openNetwork, type Network } from '../engine/network.js';
import type { Runtime } from '../engine/session.js';
import { fmtCount, fmtShape, shortOps } from './output.js';

export interface InspectReport {
  model: { path: string; sha256: string; irVersion: number; opset: number; metadata: Record<string, string> };
  kind: 'residual' | 'plain' | 'dense';
  input: { name: string; shape: number[] };
  blocks: {
    index: number; stage: number; input: string; output: string; shortcut: 'identity' | 'projection';
    post: string | null; downsampling: boolean; residualBranch: string[]; shortcutOps: string[];
    params: number; inputShape: number[] | null; outputShape: number[] | null;
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

function bigPow2(n: number): string {
  const exact = (1n << BigInt(n)).toString();
  return exact.length > 24 ? `2^${n} (${exact.slice(0, 1)}.${exact.slice(1, 4)}e${exact.length - 1})` : `2^${n} = ${exact}`;
}

export function renderInspect(r: InspectReport, color: boolean): string {
  const style = color ? {} : { head: [], border: [] };
  const out: string[] = [];
  const name = r.model.path;
  if (r.kind === 'residual') {
    const t = new Table({ head: ['block', 'stage', 'shortcut', 'post', 'residual branch', 'params', 'out shape', ''], style });
    for (const b of r.blocks) {
      t.push([b.index, b.stage, b.shortcut === 'identity' ? 'identity' : `proj (${shortOps(b.shortcutOps, 16)})`, b.post ?? '-',
        shortOps(b.residualBranch, 40), fmtCount(b.params), fmtShape(b.outputShape ?? undefined), b.downsampling ? '↓' : '']);
    }
    out.push(`${name}: residual network, ${r.totals.blocks} blocks in ${r.totals.stages} stages`);
    out.push(t.toString());
    const st = new Table({ head: ['stage', 'blocks', 'out shape'], style });
    for (const s of r.stages) st.push([s.index, `${s.units[0]}-${s.units[s.units.length - 1]} (${s.units.length})`, fmtShape(s.outputShape ?? undefined)]);
    out.push(st.toString());
    out.push(`stem: ${shortOps(r.stem)}   head: ${shortOps(r.head)}`);
    out.push(`blocks ${r.totals.blocks}, stages ${r.totals.stages}, paths ${bigPow2(r.totals.blocks)}, parameters ${fmtCount(r.totals.params)} (↓ downsampling)`);
  } else {
    const what = r.kind === 'plain' ? 'plain network (no residual Add): its layers' : 'dense network (Concat feature reuse): its layers';
    const t = new Table({ head: ['layer', 'stage', 'ops', 'params', 'in shape', 'out shape', 'deletable'], style });
    for (const l of r.layers) {
      const same = !!l.inputShape && !!l.outputShape && l.inputShape.join() === l.outputShape.join();
      t.push([l.index, l.stage, shortOps(l.ops, 40), fmtCount(l.params), fmtShape(l.inputShape ?? undefined), fmtShape(l.outputShape ?? undefined),
        l.deletable ? 'yes' : same ? 'no' : 'no (shape)']);
    }
    out.push(`${name}: ${what}`);
    out.push(t.toString());
    out.push(`layers ${r.totals.layers}, parameters ${fmtCount(r.totals.params)}; no residual blocks, so no paths to unravel`);
  }
  for (const n of r.notes) out.push(`note: ${n}`);
  return out.join('\n') + '\n';
}

export async function inspect(rt: Runtime, file: string, flags: { size?: string }): Promise<InspectReport> {
  const net = await openNetwork(rt, file, flags);
  return inspectReport(net);
}
