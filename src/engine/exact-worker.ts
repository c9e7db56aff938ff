/**
 * A worker thread of the exact decomposition (engine/exact.ts): a lane of its own sessions,
 * fed one slice of a batch's images at a time. onnxruntime-node's run holds the JavaScript
 * thread it is called on, so slices run side by side only in threads of their own.
 * Messages: in, a SliceJob; out, { id, sums } or { id, error }, and { ready } once the sessions exist.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { UserError } from '../errors.js';
import { openLane, runSlice, type LaneSpec, type SliceSums } from './exact-slice.js';
import { Runtime } from './session.js';

export interface SliceJob {
  id: number;
  images: Float32Array;
  labels: Int32Array;
  /** Images in the whole batch (the loss is its mean). */
  batch: number;
  keep: boolean;
}

export type WorkerReply = { ready: true } | { id: number; sums: SliceSums } | { id: number | null; error: { message: string; user: boolean } };

const { spec, threads } = workerData as { spec: LaneSpec; threads: number };
const port = parentPort!;
const failed = (id: number | null, e: unknown): WorkerReply => ({ id, error: { message: e instanceof Error ? e.message : String(e), user: e instanceof UserError } });
try {
  const rt = new Runtime({ threads, device: 'cpu' });
  const lane = await openLane(rt, spec);
  // The shared models are read: without this reference (workerData keeps the spec) they go
  // once every worker has opened its sessions.
  for (const m of [spec.forward, spec.lossGrad, spec.head, spec.full, ...spec.chains]) if (m) m.model = new Uint8Array(0);
  port.on('message', (job: SliceJob) => {
    runSlice(lane, job.images, job.labels, job.batch, job.keep).then(
      (sums) => {
        const buffers = [sums.norms2, sums.dots, ...(sums.gradients ?? []), ...(sums.full ? [sums.full] : [])].map((a) => a.buffer as ArrayBuffer);
        port.postMessage({ id: job.id, sums } satisfies WorkerReply, buffers);
      },
      (e: unknown) => port.postMessage(failed(job.id, e)),
    );
  });
  port.postMessage({ ready: true } satisfies WorkerReply);
} catch (e) {
  port.postMessage(failed(null, e));
}
