/**
 * The programs' prefix trie cut into connected pieces of at most a given number of steps, each
 * run as one onnxruntime session. A piece starts from the activation where its first step
 * leaves the piece above it, so nothing is computed twice; each piece is small enough for
 * onnxruntime's layout passes, whose build time grows faster than the graph (resnet152's
 * 1377-step single-block sweep: 25 s in one session). Pure: steps in, a plan out.
 */
import type { Step } from '../surgery/split.js';

/** One output of a piece: the steps from the piece's input to it, and who reads it. */
export interface PieceOutput {
  steps: Step[];
  /** Programs whose logits this is. */
  programs: number[];
  /** Pieces that start from this activation. */
  feeds: number[];
}

export interface Piece {
  /** The piece whose output this one starts from, and which of its outputs (-1, -1: the network input). */
  parent: number;
  from: number;
  outputs: PieceOutput[];
  /** Distinct steps in the piece (its graph's size in blocks and layers). */
  size: number;
}

interface Node {
  step: Step | null;
  parent: Node | null;
  children: Node[];
  programs: number[];
  /** Steps in this node's subtree not yet cut off into pieces of their own. */
  open: number;
  cut: boolean;
}

function trie(stepLists: Step[][]): Node {
  const root: Node = { step: null, parent: null, children: [], programs: [], open: 0, cut: true };
  const byKey = new Map<string, Node>();
  stepLists.forEach((steps, pi) => {
    let node = root;
    for (const st of steps) {
      let child = byKey.get(st.key);
      if (!child) {
        child = { step: st, parent: node, children: [], programs: [], open: 1, cut: false };
        byKey.set(st.key, child);
        node.children.push(child);
      }
      node = child;
    }
    node.programs.push(pi);
  });
  return root;
}

/**
 * Bottom-up: a subtree grown past `limit` steps gives up its largest open children as pieces
 * of their own until it fits (the greedy that makes the fewest pieces of a tree). On a sweep
 * of single deletions these are ranges of the intact spine, each with the branches leaving it.
 */
function cut(node: Node, limit: number): void {
  for (const c of node.children) cut(c, limit);
  let open = node.step ? 1 : 0;
  for (const c of node.children) open += c.open;
  const bySize = [...node.children].sort((a, b) => b.open - a.open);
  for (const c of bySize) {
    if (open <= limit) break;
    c.cut = true;
    open -= c.open;
  }
  node.open = open;
}

/** Cuts the trie of `stepLists` into pieces of at most `limit` steps; piece 0 starts from the input. */
export function pieces(stepLists: Step[][], limit: number): Piece[] {
  const root = trie(stepLists);
  cut(root, Math.max(1, limit));
  // Breadth first, so that a piece comes after the piece it starts from.
  const out: Piece[] = [];
  const queue: { start: Node; parent: number; from: number }[] = [{ start: root, parent: -1, from: -1 }];
  for (let qi = 0; qi < queue.length; qi++) {
    const { start, parent, from } = queue[qi]!;
    const piece: Piece = { parent, from, outputs: [], size: 0 };
    out.push(piece);
    const pathTo = (n: Node): Step[] => {
      const steps: Step[] = [];
      for (let m: Node | null = n; m && m !== start.parent && m.step; m = m.parent) steps.push(m.step);
      return steps.reverse();
    };
    const visit = (n: Node) => {
      if (n.step) piece.size++;
      const feeds = n.children.filter((c) => c.cut);
      if (n.programs.length || feeds.length) {
        piece.outputs.push({ steps: pathTo(n), programs: [...n.programs], feeds: feeds.map((c) => queue.push({ start: c, parent: qi, from: piece.outputs.length }) - 1) });
      }
      for (const c of n.children) if (!c.cut) visit(c);
    };
    visit(start);
  }
  return out;
}
