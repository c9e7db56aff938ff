/** Static shapes of chosen tensors, read off one forward pass of a tiny batch. */
import { UserError } from '../errors.js';
import type { ModelProto } from '../loader/proto.js';
import { withOutputs } from '../surgery/graph.js';
import type { Runtime } from './session.js';

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
    // Every tensor of a batch of B at once held B images' worth of all of them (a 4 GB peak
    // for ResNet-50 at batch 32): batches of 1 and 2, each dim extended linearly to B.
    const one = await at(1);
    const two = await at(2);
    tensors.forEach((t, i) => shapes.set(t, one[i]!.map((v, j) => v + (two[i]![j]! - v) * (batch - 1))));
    return shapes;
  } finally {
    await s.release();
  }
}
