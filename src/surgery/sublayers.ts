/**
 * Transformer sublayers (docs/science.md, "Beyond convolutional ResNets"): in a transformer
 * every residual block is an attention or an MLP sublayer, and an attention sublayer with the
 * sublayers after it up to the next attention form one layer. Pure: graph and structure in,
 * names out.
 */
import type { GraphIndex } from './graph.js';
import type { ResidualStructure } from './blocks.js';

export type SublayerKind = 'attention' | 'mlp';

export interface Sublayer {
  /** The residual block this sublayer is. */
  block: number;
  kind: SublayerKind;
  /** The transformer layer it belongs to, from 0. */
  layer: number;
}

/**
 * Whether a residual branch holds self-attention: a Softmax computed from a MatMul whose two
 * operands are both computed from the data (queries times keys; a MatMul with a weight
 * matrix is a projection, not attention).
 */
export function isAttention(g: GraphIndex, branch: number[]): boolean {
  const inBranch = new Set(branch);
  for (const j of branch) {
    if (g.nodes[j]!.opType !== 'Softmax') continue;
    // Walk back from the Softmax inside the branch looking for a data-by-data MatMul.
    const stack = [j];
    const seen = new Set<number>();
    while (stack.length) {
      const k = stack.pop()!;
      if (seen.has(k)) continue;
      seen.add(k);
      const n = g.nodes[k]!;
      const data = (n.input ?? []).filter((t) => t && g.computed.has(t));
      if (k !== j && (n.opType === 'MatMul' || n.opType === 'Einsum') && data.length === 2) return true;
      for (const t of data) {
        const p = g.producer.get(t);
        if (p !== undefined && inBranch.has(p)) stack.push(p);
      }
    }
  }
  return false;
}

/**
 * The blocks of a transformer as sublayers, or null when no block holds attention (a
 * convolutional ResNet). A layer starts at each attention sublayer, and at an MLP sublayer
 * that follows another MLP sublayer.
 */
export function transformerSublayers(g: GraphIndex, s: ResidualStructure): Sublayer[] | null {
  if (s.kind !== 'residual') return null;
  const kinds: SublayerKind[] = s.blocks.map((b) => (isAttention(g, b.residualBranch) ? 'attention' : 'mlp'));
  if (!kinds.includes('attention')) return null;
  const out: Sublayer[] = [];
  let layer = -1;
  let hasMlp = true;
  kinds.forEach((kind, block) => {
    if (kind === 'attention' || hasMlp) {
      layer++;
      hasMlp = false;
    }
    if (kind === 'mlp') hasMlp = true;
    out.push({ block, kind, layer });
  });
  return out;
}

/** The blocks of each transformer layer, layer by layer. */
export function layerBlocks(sublayers: Sublayer[]): number[][] {
  const groups: number[][] = [];
  for (const s of sublayers) (groups[s.layer] ??= []).push(s.block);
  return groups;
}

/** "layer 3 · attention". */
export function sublayerName(s: Pick<Sublayer, 'kind' | 'layer'>): string {
  return `layer ${s.layer} · ${s.kind}`;
}
