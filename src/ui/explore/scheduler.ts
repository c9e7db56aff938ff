/**
 * One batch of compute at a time, most urgent first. Explore runs several studies in the
 * background while the user toggles blocks; each job takes the gate per batch, so the
 * evaluation the user waits for overtakes the background sweeps at the next batch boundary,
 * and two onnxruntime runs never compete for the same cores.
 */
import { Interrupted } from '../../errors.js';
import type { Batch, Dataset } from '../../loader/data/dataset.js';

/**
 * Lower runs first: what the user waits for (the error, then the exact shares of the network as
 * it stands), what the user asked for (g), then the background studies.
 */
export const PRIORITY = { current: 0, exact: 1, gradients: 2, sweep: 3, ensemble: 4, compare: 5 } as const;

export interface Lease {
  release(): void;
}

interface Waiter {
  priority: number;
  seq: number;
  grant: (l: Lease) => void;
}

export class Gate {
  private busy = false;
  private queue: Waiter[] = [];
  private seq = 0;

  /** Resolves when the caller may run one batch; rejects with Interrupted on abort. */
  acquire(priority: number, signal?: AbortSignal): Promise<Lease> {
    if (signal?.aborted) return Promise.reject(new Interrupted());
    return new Promise<Lease>((resolve, reject) => {
      const w: Waiter = { priority, seq: this.seq++, grant: resolve };
      const onAbort = () => {
        const i = this.queue.indexOf(w);
        if (i >= 0) {
          this.queue.splice(i, 1);
          reject(new Interrupted());
        }
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      w.grant = (l) => {
        signal?.removeEventListener('abort', onAbort);
        resolve(l);
      };
      this.queue.push(w);
      this.queue.sort((a, b) => a.priority - b.priority || a.seq - b.seq);
      this.pump();
    });
  }

  private pump(): void {
    if (this.busy) return;
    const w = this.queue.shift();
    if (!w) return;
    this.busy = true;
    let released = false;
    w.grant({
      release: () => {
        if (released) return;
        released = true;
        this.busy = false;
        // Let the event loop breathe (render, keys) between batches.
        setImmediate(() => this.pump());
      },
    });
  }
}

export interface GatedDataset extends Dataset {
  /** Releases the gate held for the last batch handed out by batch(). */
  done(): void;
}

/**
 * The data set seen through the gate: every batch is computed under a lease, taken before
 * the batch is read and given back when the consumer asks for the next one (or stops).
 */
export function gatedDataset(data: Dataset, gate: Gate, priority: number, signal?: AbortSignal): GatedDataset {
  let held: Lease | null = null;
  const drop = () => {
    held?.release();
    held = null;
  };
  return {
    description: data.description,
    format: data.format,
    size: data.size,
    shape: data.shape,
    classes: data.classes,
    ...(data.classNames ? { classNames: data.classNames } : {}),
    sha256: () => data.sha256(),
    close: () => data.close(),
    async *batches(batchSize: number): AsyncIterable<Batch> {
      const it = data.batches(batchSize)[Symbol.asyncIterator]();
      try {
        for (;;) {
          const lease = await gate.acquire(priority, signal);
          try {
            const r = await it.next();
            if (r.done) return;
            yield r.value;
          } finally {
            lease.release();
          }
        }
      } finally {
        await it.return?.();
      }
    },
    async batch(indices: number[]): Promise<Batch> {
      drop();
      held = await gate.acquire(priority, signal);
      return data.batch(indices);
    },
    done: drop,
  };
}
