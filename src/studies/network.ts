/**
 * What every study asks of a network before it starts: its units (blocks or layers) and which
 * can be deleted, whether it can be split at all, whether it has residual blocks, and how many
 * classes it tells apart. Each study asks once, when it is set up.
 */
import { OptionError, UserError } from '../errors.js';
import type { Dataset } from '../loader/data/dataset.js';
import type { Network } from '../engine/network.js';
import { notSplittable } from '../surgery/blocks.js';
import { unitCount } from '../surgery/split.js';
import { layerBlocks, sublayerName, transformerSublayers, type Sublayer } from '../surgery/sublayers.js';

export interface UnitInfo {
  unit: number;
  stage: number;
  downsampling: boolean;
  deletable: boolean;
  reason?: string;
  inShape: string;
  outShape: string;
}

export function unitInfo(net: Network): UnitInfo[] {
  const s = net.structure;
  const shape = (t: string) => (net.shapes.get(t) ?? []).slice(1).join('x');
  if (s.kind === 'residual') {
    return s.blocks.map((b) => ({ unit: b.index, stage: b.stage, downsampling: b.downsampling || b.shortcutKind === 'projection', deletable: true, inShape: shape(b.input), outShape: shape(b.output) }));
  }
  if (notSplittable(s)) return [];
  return s.layers.map((l) => {
    const [i, o] = [shape(l.input), shape(l.output)];
    const deletable = i === o && i !== '';
    return { unit: l.index, stage: l.stage, downsampling: i !== o, deletable, inShape: i, outShape: o, ...(deletable ? {} : { reason: `input ${i} ≠ output ${o}` }) };
  });
}

/** What planning needs of a network: its kind and units (a report's NetworkDesc). */
export interface PlanNetwork {
  kind: 'residual' | 'plain' | 'dense';
  n: number;
  units: (Pick<UnitInfo, 'unit' | 'stage' | 'downsampling' | 'deletable'> & { reason?: string })[];
}

export function planNetwork(net: Network): { kind: PlanNetwork['kind']; n: number; units: UnitInfo[] } {
  const s = net.structure;
  return { kind: s.kind, n: unitCount(s), units: unitInfo(net) };
}

/** Why the network does not split into units that programs can change (branching layers, dense), or null. */
export function whyNotSplittable(net: Network): string | null {
  return notSplittable(net.structure);
}

/** Throws unless the network splits into units that programs can change. */
export function requireSplittable(net: Network): void {
  const why = whyNotSplittable(net);
  if (why) throw new UserError(`${net.model.path}: ${why}`);
}

/** Throws unless the network has residual blocks; `forWhat` ends the sentence ("so no paths to count"). */
export function requireResidual(net: Network, forWhat: string): void {
  const s = net.structure;
  if (s.kind !== 'residual') throw new UserError(`${net.model.path}: a ${s.kind} network has no residual blocks, ${forWhat}`);
}

/** The number of classes: from the model's reslens.classes, else from the data's labels. */
export function classCount(net: Network, data: Pick<Dataset, 'classes'>): number {
  // The logits' width first: the data's labels may reach only part of the classes (2 images
  // of ImageNet labelled 9 and 511 made the loss gradient 512 wide against 1000 logits).
  const width = net.shapes.get(net.output)?.[1];
  const classes = (width && width > 0 ? width : undefined) ?? net.preprocessing.classNames?.length ?? data.classes ?? 0;
  if (!classes) throw new UserError(`${net.model.path}: cannot tell the number of classes; add reslens.classes to the model's metadata`);
  return classes;
}

/** Units a program has: residual blocks, or the layers of a plain network. */
export function unitsOf(net: Network): number {
  return unitCount(net.structure);
}

const sublayerCache = new WeakMap<Network, Sublayer[] | null>();

/** A transformer's blocks as attention and MLP sublayers, or null for other networks. */
export function sublayersOf(net: Network): Sublayer[] | null {
  if (!sublayerCache.has(net)) sublayerCache.set(net, transformerSublayers(net.graph, net.structure));
  return sublayerCache.get(net)!;
}

/** Each block's sublayer name ("layer 3 · attention") for a transformer, by block index; null otherwise. */
export function sublayerNames(net: Network): string[] | null {
  const subs = sublayersOf(net);
  if (!subs) return null;
  const names: string[] = [];
  for (const s of subs) names[s.block] = sublayerName(s);
  return names;
}

/** What a lesion deletes as one unit: a residual block (a sublayer) or a whole transformer layer. */
export type LesionUnit = 'block' | 'layer';

/**
 * The blocks each unit stands for: one block each for 'block'; the sublayers of each layer for
 * 'layer', which only transformers have.
 */
export function unitBlocks(net: Network, unit: LesionUnit): number[][] {
  if (unit === 'block') return [...Array(unitsOf(net)).keys()].map((b) => [b]);
  const subs = sublayersOf(net);
  if (!subs) {
    throw new OptionError('unit', (f) => `${net.model.path}: ${f('unit')} layer needs a transformer (residual sublayers with attention); this network's units are its ${net.structure.kind === 'residual' ? 'residual blocks' : 'layers'}, use ${f('unit')} block`);
  }
  return layerBlocks(subs);
}

/** The plan's view of the network when each unit is a transformer layer (all its sublayers together). */
export function layerPlanNetwork(net: Network): PlanNetwork & { units: UnitInfo[] } {
  const groups = unitBlocks(net, 'layer');
  const blocks = unitInfo(net);
  const units = groups.map((bs, l) => {
    const first = blocks[bs[0]!]!;
    const last = blocks[bs[bs.length - 1]!]!;
    return { unit: l, stage: first.stage, downsampling: bs.some((b) => blocks[b]!.downsampling), deletable: true, inShape: first.inShape, outShape: last.outShape };
  });
  return { kind: 'residual', n: groups.length, units };
}

export { sublayerName };
