/** Where gradient time goes: one block's forward against its residual-part backward, in onnxruntime. */
import { openNetwork } from '../src/engine/network.js';
import { Runtime } from '../src/engine/session.js';
import { buildVjp } from '../src/surgery/vjp.js';
import { probeShapes } from '../src/engine/probe.js';
import { extractSubmodel, withOutputs } from '../src/surgery/graph.js';

const file = process.argv[2] ?? 'fixtures/models/resnet20.onnx';
const B = 32;
const rt = new Runtime({ threads: Number(process.env.THREADS ?? 1) });
const net = await openNetwork(rt, file);
const g = net.graph;
const all = g.nodes.flatMap((n) => n.output ?? []).filter((t) => g.computed.has(t));
const shapes = await probeShapes(rt, net.model.proto, net.input, [1, 1, 28, 28], all, file, B);
const x = new Float32Array(B * 784).map(() => Math.random());
const fwd = await (await rt.create(withOutputs(net.model.proto, all), 'fwd')).run({ [net.input]: { data: x, dims: [B, 1, 28, 28] } });
const time = async (f: () => Promise<unknown>, n = 20) => {
  await f();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await f();
  return (performance.now() - t0) / n;
};
for (const bi of [1, 4, 7]) {
  const b = net.structure.blocks[bi]!;
  const fs = await rt.create(extractSubmodel(net.model.proto, g, [b.input], [b.output]), 'f');
  const v = buildVjp(net.model.proto, g, { from: b.input, to: b.output, shapes, cut: [{ node: b.addNode, input: 1 - b.residualSlot }] });
  const bs = await rt.create(v.model, 'b');
  const feeds: Record<string, any> = { grad_out: fwd[b.output] };
  for (const t of v.saved) feeds[t] = fwd[t];
  const tf = await time(() => fs.run({ [b.input]: fwd[b.input]! }));
  const tb = await time(() => bs.run(feeds));
  console.log(`block ${bi} ${shapes.get(b.output)!.join('x')}: forward ${tf.toFixed(2)} ms, residual backward ${tb.toFixed(2)} ms, ops ${v.model.graph!.node!.map((n) => n.opType).join(' ')}`);
}
await rt.close();
