/** The head every study's JSON document starts with: what ran, on what, where, for how long. */
import type { Dataset } from '../loader/data/dataset.js';
import type { Network } from '../engine/network.js';
import { onnxruntimeVersion, type Runtime } from '../engine/session.js';

export interface DocHead {
  model: { path: string; sha256: string };
  data: { description: string; size: number; sha256: string };
  onnxruntime: string;
  device: string;
  seconds: number;
}

/** `modelPath` as the user gave it. */
export async function docHead(rt: Runtime, net: Network, modelPath: string, data: Dataset, seconds: number): Promise<DocHead> {
  return {
    model: { path: modelPath, sha256: net.model.sha256 },
    data: { description: data.description, size: data.size, sha256: await data.sha256() },
    onnxruntime: await onnxruntimeVersion(),
    device: rt.device,
    seconds,
  };
}
