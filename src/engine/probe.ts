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
  try {
    const n = dims.reduce((a, b) => a * b, 1);
    const out = await s.run({ [input]: { data: new Float32Array(n), dims } }, tensors);
    const shapes = new Map<string, number[]>();
    for (const t of tensors) shapes.set(t, out[t]!.dims);
    return shapes;
  } finally {
    await s.release();
  }
}
