/** Static shape inference agrees with onnxruntime's real shapes on every computed tensor. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { probeShapes } from '../src/engine/probe.js';
import { Runtime } from '../src/engine/session.js';
import { indexGraph } from '../src/surgery/graph.js';
import { inferShapes } from '../src/surgery/shapes.js';
import { makeModel, makeNode, valueInfo } from '../src/loader/proto.js';
import { buildNet } from './helpers/build.js';

test('inferred shapes equal probed shapes (strides, glue, pre-activation, bottleneck, Reshape head)', async () => {
  const rt = new Runtime({ threads: 1 });
  try {
    for (const [size, model] of [
      [9, buildNet({ size: 9, blocks: [{ cout: 4 }, { cout: 8, stride: 2 }, { cout: 8, glueAfter: true }, { cout: 12, stride: 2, act: 'pre' }], head: 'reshape' })],
      [7, buildNet({ size: 7, blocks: [{ cout: 8, bottleneck: true, projection: true }, { cout: 8, bottleneck: true, group: 2, stride: 2 }] })],
    ] as const) {
      const g = indexGraph(model.graph!);
      const inferred = inferShapes(g, [3, 1, size, size]);
      assert.ok(inferred, 'every op is covered');
      const tensors = g.nodes.flatMap((n) => n.output ?? []).filter((t) => g.computed.has(t));
      const probed = await probeShapes(rt, model, 'input', [1, 1, size, size], tensors, 'm', 3);
      for (const t of tensors) assert.deepEqual(inferred.get(t), probed.get(t), t);
    }
  } finally {
    await rt.close();
  }
});

test('an op without a rule gives null, so callers fall back to a probe run', () => {
  const m = makeModel({ nodes: [makeNode('Erf', ['input'], ['y'])], inputs: [valueInfo('input', [1, 2])], outputs: [valueInfo('y', [1, 2])] });
  assert.equal(inferShapes(indexGraph(m.graph!), [1, 2]), null);
});
