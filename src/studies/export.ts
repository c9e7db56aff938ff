/**
 * A changed network (units deleted, branches scaled, blocks reordered) as one ordinary ONNX
 * model: what `reslens export` writes and what explore's x key saves.
 */
import { OptionError } from '../errors.js';
import { analyseModel, type Network } from '../engine/network.js';
import type { Runtime } from '../engine/session.js';
import { modelFromBytes } from '../loader/model.js';
import { encodeModel, type ModelProto } from '../loader/proto.js';
import { exportProgram, intactProgram, type Program } from '../surgery/split.js';
import { requireSplittable, unitInfo, unitsOf } from './network.js';

export interface ExportOptions {
  /** Units to delete. */
  delete?: number[];
  /** Residual branches to scale by alpha. */
  scale?: { blocks: number[]; alpha: number };
  /** The block order, a permutation of 0..n-1. */
  reorder?: number[];
}

/** The program the options describe, checked against the network. */
export function exportedProgram(net: Network, o: ExportOptions): Program {
  requireSplittable(net);
  const n = unitsOf(net);
  const p = intactProgram(n);
  const info = unitInfo(net);
  for (const u of o.delete ?? []) {
    if (!info[u]!.deletable) throw new OptionError('delete', (f) => `${f('delete')}: layer ${u} cannot be deleted (${info[u]!.reason})`);
    p.modes[u] = { kind: 'delete' };
  }
  if (o.scale) {
    if (net.structure.kind !== 'residual') throw new OptionError('scale', (f) => `${f('scale')}: only residual blocks have a branch to scale`);
    for (const u of o.scale.blocks) {
      if (p.modes[u]!.kind === 'delete') throw new OptionError('scale', (f) => `${f('scale')}: block ${u} is also in ${f('delete')}`);
      p.modes[u] = { kind: 'scale', alpha: o.scale.alpha };
    }
  }
  if (o.reorder) {
    const order = o.reorder;
    if (net.structure.kind !== 'residual') throw new OptionError('reorder', (f) => `${f('reorder')}: only residual networks can be reordered`);
    const sorted = [...order].sort((a, b) => a - b);
    if (order.length !== n || sorted.some((v, i) => v !== i)) {
      throw new OptionError('reorder', (f) => `${f('reorder')}: give a permutation of 0-${n - 1} (all ${n} blocks, each once), e.g. 1,0,2,...`);
    }
    order.forEach((u, slot) => {
      const want = info[slot]!;
      const got = info[u]!;
      if (want.inShape !== got.inShape || want.outShape !== got.outShape) {
        throw new OptionError('reorder', (f) => `${f('reorder')}: block ${u} (${got.inShape} → ${got.outShape}) cannot run in place of block ${slot} (${want.inShape} → ${want.outShape})`);
      }
    });
    p.order = order;
  }
  return p;
}

/**
 * The program as one model with the original input, output and metadata, plus
 * reslens.exported_from: the source's sha256 and `changes` (what was deleted, scaled, reordered).
 */
export function exportedModel(net: Network, p: Program, changes: { delete: string; scale: string; reorder: string }): ModelProto {
  const out = exportProgram(net.model.proto, net.graph, net.structure, p);
  out.metadataProps = [...exportedMetadata(out.metadataProps ?? [], p), { key: 'reslens.exported_from', value: `${net.model.sha256} delete=${changes.delete} scale=${changes.scale} reorder=${changes.reorder}` }];
  return out;
}

/** Metadata that states a measurement of the source network, untrue of a changed one. */
export const MEASURED_KEYS = ['reslens.test_accuracy'];

/**
 * The source's metadata as it holds for the changed network: measured keys dropped when
 * anything changed, reslens.survival following its blocks (deleted ones out, in the new
 * order), an earlier reslens.exported_from replaced.
 */
export function exportedMetadata(props: { key?: string | null; value?: string | null }[], p: Program): { key: string; value: string }[] {
  const changed = p.modes.some((m) => m.kind !== 'full') || p.order.some((u, i) => u !== i);
  const kept = p.order.filter((u) => p.modes[u]!.kind !== 'delete');
  const out: { key: string; value: string }[] = [];
  for (const { key, value } of props) {
    if (!key || key === 'reslens.exported_from' || (changed && MEASURED_KEYS.includes(key))) continue;
    if (key === 'reslens.survival' && value) {
      const q = value.split(',');
      out.push({ key, value: q.length === p.modes.length ? kept.map((u) => q[u]!.trim()).join(',') : value });
      continue;
    }
    out.push({ key, value: value ?? '' });
  }
  return out;
}

/**
 * The changed network opened for analysis like a file of its own (blocks renumbered, deleted
 * ones gone), with the source's preprocessing: explore's exact shares of the network as it stands.
 */
export async function exportedNetwork(rt: Runtime, net: Network, o: ExportOptions): Promise<Network> {
  const changes = { delete: (o.delete ?? []).join(','), scale: o.scale ? `${o.scale.blocks.join(',')}:${o.scale.alpha}` : '', reorder: (o.reorder ?? []).join(',') };
  const proto = exportedModel(net, exportedProgram(net, o), changes);
  const what = [changes.delete && `blocks ${changes.delete} deleted`, changes.scale && `scaled ${changes.scale}`, changes.reorder && `order ${changes.reorder}`].filter(Boolean).join(', ');
  const model = modelFromBytes(encodeModel(proto), `${net.model.path} (${what || 'unchanged'})`);
  const { mean, std, inputShape } = net.preprocessing;
  return analyseModel(rt, model, { mean, std, size: inputShape.slice(1) });
}
