/** A data set held in memory, for engine tests on graphs built in the test. */
import type { Batch, Dataset } from '../../src/loader/data/dataset.js';

export function memoryDataset(images: Float32Array, labels: Int32Array, shape: [number, number, number], classes: number): Dataset {
  const per = shape[0] * shape[1] * shape[2];
  const size = labels.length;
  const take = (indices: number[]): Batch => {
    const out = new Float32Array(indices.length * per);
    indices.forEach((i, j) => out.set(images.subarray(i * per, (i + 1) * per), j * per));
    return { images: out, labels: Int32Array.from(indices, (i) => labels[i]!), indices, n: indices.length };
  };
  return {
    description: `memory (${size} samples)`,
    format: 'npy',
    size,
    shape,
    classes,
    sha256: async () => 'memory',
    async *batches(bs: number) {
      for (let i = 0; i < size; i += bs) yield take([...Array(Math.min(bs, size - i)).keys()].map((k) => i + k));
    },
    batch: async (indices) => take(indices),
    close: async () => {},
  };
}
