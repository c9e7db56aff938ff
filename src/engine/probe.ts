/** Static shapes of chosen tensors, read off one forward pass of a tiny batch. */
import { UserError } from '../errors.js';
import type { ModelProto } from '../loader/proto.js';
import { withOutputs } from '../surgery/graph.js';
import type { Runtime } from './session.js';

/** The most a probe holds at once (every tensor asked for, of the whole batch). */
export const PROBE_BYTES = 2 ** 30;

/** Runs the model on a zero batch of `batch` and returns the shape of each tensor asked for. */
export async function probeShapes(
  rt: Runtime,
  model: ModelProto,
  input: string,
  inputDims: number[],
  tensors: string[],
  file: string,
  batch = 1,
): Promise<Map<string, number[]>> {
  const dims = [batch, ...inputDims.slice(1)];
  if (dims.some((d) => !(d > 0))) {
    throw new UserError(`${file}: the input '${input}' has no fixed size (${inputDims.join('x')}); pass --size H,W or set reslens.input_size in the model's metadata`);
  }
  const s = await rt.create(withOutputs(model, tensors), file);
  const at = async (b: number) => {
    const d = [b, ...dims.slice(1)];
    const out = await s.run({ [input]: { data: new Float32Array(d.reduce((x, y) => x * y, 1)), dims: d } }, tensors);
    return tensors.map((t) => out[t]!.dims);
  };
  try {
    const shapes = new Map<string, number[]>();
    if (batch <= 2) {
      const got = await at(batch);
      tensors.forEach((t, i) => shapes.set(t, got[i]!));
      return shapes;
    }
    // Every tensor of a batch of B at once holds B images' worth of all of them (a 4 GB peak
    // for ResNet-50 at batch 32): past PROBE_BYTES, batches of 1 and 2, each dim extended
    // linearly to B. Below it the whole batch runs as before: freeing those buffers leaves the
    // process's allocator warm, and without it the exact decomposition's many small runs took
    // 13-20% more CPU on resnet56 (page faults; measured 2026-12-02, 1365 against 1550-1650 ms
    // a batch; glibc's MALLOC_MMAP_THRESHOLD_ set by hand gave the same 1365).
    const one = await at(1);
    const perImage = one.reduce((a, d) => a + 4 * d.reduce((x, y) => x * y, 1), 0);
    if (perImage * batch <= PROBE_BYTES) {
      const got = await at(batch);
      tensors.forEach((t, i) => shapes.set(t, got[i]!));
      return shapes;
    }
    const two = await at(2);
    tensors.forEach((t, i) => shapes.set(t, one[i]!.map((v, j) => v + (two[i]![j]! - v) * (batch - 1))));
    return shapes;
  } finally {
    await s.release();
  }
}
