/**
 * Where the nodes of a session ran. onnxruntime puts a node that the GPU provider cannot run
 * on the CPU without a word (and copies its tensors across); its profiling output names the
 * provider of every node that ran, so one profiled run tells the placement.
 */
import { readFileSync } from 'node:fs';

export interface Placement {
  /** Nodes that ran, excluding the copies onnxruntime inserts between providers. */
  nodes: number;
  /** Of those, the nodes on the session's device. */
  onDevice: number;
  /** Op types that ran elsewhere (on the CPU), with their counts. */
  fellBack: Record<string, number>;
  /** Copy nodes onnxruntime inserted (MemcpyToHost / MemcpyFromHost). */
  copies: number;
}

const PROVIDER: Record<string, string> = { webgpu: 'WebGpuExecutionProvider', cuda: 'CUDAExecutionProvider', cpu: 'CPUExecutionProvider' };

interface ProfileEvent {
  cat?: string;
  name?: string;
  args?: { op_name?: string; provider?: string; node_index?: string };
}

/** The placement read from onnxruntime's profile JSON (an array of trace events). */
export function placementOf(events: ProfileEvent[], device: string): Placement {
  const provider = PROVIDER[device] ?? device;
  // A node runs once per run; count each node index once.
  const seen = new Map<string, { op: string; provider: string }>();
  for (const e of events) {
    if (e.cat !== 'Node' || !e.name?.endsWith('_kernel_time') || !e.args?.op_name) continue;
    seen.set(e.args.node_index ?? e.name, { op: e.args.op_name, provider: e.args.provider ?? '' });
  }
  const p: Placement = { nodes: 0, onDevice: 0, fellBack: {}, copies: 0 };
  for (const { op, provider: where } of seen.values()) {
    if (op === 'MemcpyToHost' || op === 'MemcpyFromHost') {
      p.copies++;
      continue;
    }
    p.nodes++;
    if (where === provider) p.onDevice++;
    else p.fellBack[op] = (p.fellBack[op] ?? 0) + 1;
  }
  return p;
}

export function readPlacement(file: string, device: string): Placement {
  return placementOf(JSON.parse(readFileSync(file, 'utf8')) as ProfileEvent[], device);
}

/** One line: "resnet block 3: 12 of 12 nodes on webgpu" or "...; fell back: Cast×2, OneHot×1". */
export function formatPlacement(label: string, device: string, p: Placement): string {
  const fb = Object.entries(p.fellBack).sort(([a], [b]) => a.localeCompare(b));
  const back = fb.length ? `; fell back: ${fb.map(([op, n]) => `${op}×${n}`).join(', ')}` : '';
  const copies = p.copies ? `; ${p.copies} copy node${p.copies > 1 ? 's' : ''}` : '';
  return `placement: ${label}: ${p.onDevice} of ${p.nodes} nodes on ${device}${back}${copies}`;
}
