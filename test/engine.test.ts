/** The block-wise engine against the exported single-graph model, run by onnxruntime. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Checkpoints, Engine, predictedClass } from '../src/engine/engine.js';
import { analyseModel, openNetwork } from '../src/engine/network.js';
import { openDataset } from '../src/loader/data/index.js';
import { Runtime, type Tensor } from '../src/engine/session.js';
import { modelFromBytes } from '../src/loader/model.js';
import { encodeModel } from '../src/loader/proto.js';
import { DELETE, exportProgram, FULL, intactProgram, type BlockMode, type Program } from '../src/surgery/split.js';
import { buildNet, randomInput } from './helpers/build.js';
import { memoryDataset } from './helpers/memory-dataset.js';

const SIZE = 8;
const spec = {
  size: SIZE,
  blocks: [
    { cout: 4 }, { cout: 4 }, { cout: 8, stride: 2 }, { cout: 8, scale: 0.7 }, { cout: 8, glueAfter: true },
    { cout: 8, act: 'pre' as const }, { cout: 8, act: 'none' as const },
  ],
};
const model = modelFromBytes(encodeModel(buildNet(spec)), 'test-net.onnx');
model.metadata['reslens.input_size'] = `${SIZE},${SIZE}`;

function maxAbsDiff(a: Tensor, b: Tensor): number {
  const x = a.data as Float32Array;
  const y = b.data as Float32Array;
  assert.equal(x.length, y.length);
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  return m;
}

async function reference(rt: Runtime, p: Program, x: Tensor, net: Awaited<ReturnType<typeof analyseModel>>): Promise<Tensor> {
  const s = await rt.create(exportProgram(model.proto, net.graph, net.structure, p), 'reference');
  const out = await s.run({ input: x });
  await s.release();
  return out.logits!;
}

test('every kind of program equals the exported single-graph model (1e-5)', async () => {
  const rt = new Runtime({ threads: 1 });
  try {
    const net = await analyseModel(rt, model);
    const n = net.structure.blocks.length;
    assert.equal(n, 7);
    const engine = new Engine(rt, net);
    const x: Tensor = { data: randomInput(5, 1, SIZE), dims: [5, 1, SIZE, SIZE] };
    const data = memoryDataset(x.data as Float32Array, Int32Array.from([0, 1, 2, 3, 4]), [1, SIZE, SIZE], 10);
    const means = await engine.branchMeans(data, 2);
    const programs: [string, Program][] = [['intact', intactProgram(n)]];
    for (let i = 0; i < n; i++) {
      const p = intactProgram(n);
      p.modes[i] = DELETE;
      programs.push([`delete ${i}`, p]);
    }
    const several = intactProgram(n);
    several.modes = several.modes.map((_, i): BlockMode => (i % 2 ? DELETE : FULL));
    programs.push(['delete 1,3,5', several]);
    const scaled = intactProgram(n);
    scaled.modes[1] = { kind: 'scale', alpha: 0.5 };
    scaled.modes[2] = { kind: 'scale', alpha: 0 };
    programs.push(['scale', scaled]);
    const mean = intactProgram(n);
    mean.modes[0] = means.get(0)!;
    mean.modes[3] = means.get(3)!;
    programs.push(['mean', mean]);
    const reordered = intactProgram(n);
    reordered.order = [1, 0, 2, 3, 4, 5, 6];
    programs.push(['reorder 0<->1', reordered]);
    const swapDelete = { order: [0, 1, 2, 4, 3, 5, 6], modes: intactProgram(n).modes.map((m, i) => (i === 4 ? DELETE : m)) };
    programs.push(['reorder 3<->4 + delete 4', swapDelete]);
    for (const [name, p] of programs) {
      const got = await engine.logits(p, x);
      const want = await reference(rt, p, x, net);
      assert.ok(maxAbsDiff(got, want) < 1e-5, `${name}: engine and exported model differ by ${maxAbsDiff(got, want)}`);
    }
    // Deleting nothing is the original model.
    const orig = await rt.create(model.proto, 'original');
    const o = (await orig.run({ input: x })).logits!;
    assert.ok(maxAbsDiff(await engine.logits(intactProgram(n), x), o) < 1e-5);
    // Deleting a block changes the output (the test would pass vacuously otherwise).
    assert.ok(maxAbsDiff(await engine.logits(programs[1]![1], x), o) > 1e-3);
  } finally {
    await rt.close();
  }
});

test('prefix cache on and off give identical results', async () => {
  const rt = new Runtime({ threads: 1 });
  try {
    const net = await analyseModel(rt, model);
    const engine = new Engine(rt, net);
    const N = 37;
    const images = randomInput(N, 1, SIZE, 3);
    // Labels from the intact network's own predictions on half the samples: errors are not trivially 0 or 1.
    const logits = await engine.logits(intactProgram(7), { data: images, dims: [N, 1, SIZE, SIZE] });
    const labels = Int32Array.from({ length: N }, (_, i) => {
      const row = Array.from((logits.data as Float32Array).subarray(i * 10, i * 10 + 10));
      return i % 2 ? row.indexOf(Math.max(...row)) : i % 10;
    });
    const data = memoryDataset(images, labels, [1, SIZE, SIZE], 10);
    const programs = [intactProgram(7), ...[0, 1, 2, 3, 4, 5, 6].map((i) => ({ ...intactProgram(7), modes: intactProgram(7).modes.map((m, j) => (j === i ? DELETE : m)) }))];
    const on = await engine.evaluate(programs, data, { batch: 10, cache: true });
    const off = await engine.evaluate(programs, data, { batch: 10, cache: false });
    assert.deepEqual(on, off);
    assert.ok(on[0]!.correct >= Math.floor(N / 2), 'the intact network predicts its own labels');
    assert.equal(on[0]!.total, N);
  } finally {
    await rt.close();
  }
});

/** resnet20 (a trained fixture: its predictions vary between images) on 200 shipped images. */
async function resnet20On200(rt: Runtime) {
  const net = await openNetwork(rt, 'fixtures/models/resnet20.onnx');
  const n = net.structure.blocks.length;
  const pre = net.preprocessing;
  const data = await openDataset('fixtures/data/t10k-images-idx3-ubyte', { preprocess: { mean: pre.mean, std: pre.std, size: [28, 28], channels: 1 }, limit: 200 });
  const del = (...ds: number[]): Program => ({ ...intactProgram(n), modes: intactProgram(n).modes.map((m, j) => (ds.includes(j) ? DELETE : m)) });
  return { net, n, engine: new Engine(rt, net), data, del };
}

test('checkpoints: programs started from stored intact activations score as from the input (resnet20, 200 images)', async () => {
  const rt = new Runtime({ threads: 2 });
  try {
    const { net, n, engine, data: source, del } = await resnet20On200(rt);
    const N = source.size;
    const { images } = await source.batch([...Array(N).keys()]);
    await source.close();
    const x: Tensor = { data: images, dims: [N, 1, 28, 28] };
    const swapped = intactProgram(n);
    swapped.order = [0, 1, 2, 3, 5, 4, 6, 7, 8];
    const programs: Program[] = [intactProgram(n), ...[...Array(n).keys()].map((i) => del(i)), del(2, 7), { ...intactProgram(n), modes: intactProgram(n).modes.map((m, j): BlockMode => (j === 5 ? { kind: 'scale', alpha: 0.3 } : m)) }, swapped];
    // Each program labelled with its own predictions: a sample started from another sample's
    // activation, or from a wrong boundary, shows up as an error.
    const own = await Promise.all(programs.map(async (p) => {
      const l = (await engine.logits(p, x)).data as Float32Array;
      return Int32Array.from({ length: N }, (_, i) => predictedClass(l, i, 10));
    }));
    assert.ok(own.every((l) => new Set(l).size >= 5), 'predictions vary between samples');
    const all = new Checkpoints(net, N, Infinity);
    // A budget for part of the boundaries.
    const budget = N * 4 * 16 * 28 * 28 * 3;
    const cp = new Checkpoints(net, N, budget);
    assert.ok(cp.positions.length < all.positions.length && cp.positions.length > 2, `a small budget keeps fewer boundaries (${cp.positions} of ${all.positions})`);
    // Each program alone (as explore asks), in batches of 64 or 50: later calls read what the first stored.
    for (const [i, p] of programs.entries()) {
      const data = memoryDataset(images, own[i]!, [1, 28, 28], 10);
      const [got] = await engine.evaluate([p], data, { batch: i % 2 ? 50 : 64, checkpoints: cp });
      assert.equal(got!.correct, N, `program ${i}: ${N - got!.correct} samples differ`);
      const [full] = await engine.evaluate([p], data, { batch: 64, checkpoints: all });
      assert.equal(full!.correct, N, `program ${i}, every boundary kept`);
    }
    assert.ok(cp.bytes > 0 && cp.bytes <= budget, `${cp.bytes} bytes stored`);
  } finally {
    await rt.close();
  }
});

test('all programs fused into one session score exactly as the trie walked step by step (resnet20, 200 images)', async () => {
  const rt = new Runtime({ threads: 2 });
  try {
    const { n, engine, data, del } = await resnet20On200(rt);
    const means = await engine.branchMeans(data, 100, [1, 6]);
    const programs: Program[] = [
      intactProgram(n), ...[...Array(n).keys()].map((i) => del(i)), del(2, 7), del(1, 4, 5, 8),
      { ...intactProgram(n), modes: intactProgram(n).modes.map((m, j): BlockMode => (j === 5 ? { kind: 'scale', alpha: 0.3 } : j === 6 ? means.get(6)! : m)) },
      { ...intactProgram(n), modes: intactProgram(n).modes.map((m, j): BlockMode => (j === 1 ? means.get(1)! : m)) },
      { ...intactProgram(n), order: [0, 1, 2, 3, 5, 4, 6, 7, 8] },
    ];
    const fused = await engine.evaluate(programs, data, { batch: 64 });
    const walked = await engine.evaluate(programs, data, { batch: 64, fuseUpTo: 0 });
    const alone = await engine.evaluate(programs, data, { batch: 64, cache: false });
    assert.deepEqual(fused, walked);
    assert.deepEqual(fused, alone);
    assert.ok(new Set(fused.map((r) => r.correct)).size > 5, 'the programs differ in what they get right');
    await data.close();
  } finally {
    await rt.close();
  }
});

test('a trie past the fuse limit is cut into pieces, said once per engine with its size, and scores as fused (resnet20)', async () => {
  const made: string[] = [];
  class Recording extends Runtime {
    override async create(...a: Parameters<Runtime['create']>) {
      made.push(a[1]);
      return super.create(...a);
    }
  }
  const rt = new Recording({ threads: 2 });
  try {
    const { n, engine, data, del } = await resnet20On200(rt);
    const means = await engine.branchMeans(data, 100, [4]);
    const programs: Program[] = [
      intactProgram(n), del(0), del(3), del(2, 7), del(8), { ...intactProgram(n), order: [0, 1, 2, 3, 5, 4, 6, 7, 8] },
      { ...intactProgram(n), modes: intactProgram(n).modes.map((m, j): BlockMode => (j === 4 ? means.get(4)! : j === 6 ? { kind: 'scale', alpha: 0.5 } : m)) },
    ];
    const notes: string[] = [];
    const onNote = (l: string) => notes.push(l);
    const fused = await engine.evaluate(programs, data, { batch: 100, onNote });
    assert.deepEqual(notes, [], 'nothing is said when the programs are fused');
    assert.equal(made.filter((l) => l.startsWith('7 programs')).length, 1, 'one session');
    const apart = await engine.evaluate(programs, data, { batch: 100, onNote, cache: false });
    assert.deepEqual(notes, [], 'nor when --no-cache runs each program alone');
    assert.deepEqual(apart, fused);
    // One session holding every program apart, not a session (and a copy of the weights) each.
    assert.equal(made.filter((l) => l === '7 programs').length, 2);
    assert.ok(new Set(fused.map((r) => r.correct)).size > 3, 'the programs differ in what they get right');
    for (const limit of [20, 7, 1]) {
      made.length = 0;
      const cut = await engine.evaluate(programs, data, { batch: 100, onNote, fuseUpTo: limit });
      assert.deepEqual(cut, fused, `pieces of at most ${limit} steps`);
      const count = made.filter((l) => l.startsWith('7 programs, piece')).length;
      assert.ok(count > 1 && made.includes(`7 programs, piece ${count} of ${count}`), `${count} pieces built: ${made.join('; ')}`);
    }
    assert.equal(notes.length, 1, 'said once per engine, not per batch or per study');
    assert.match(notes[0]!, /the 7 configurations share \d+ distinct block steps; running them as \d+ onnxruntime sessions of at most 20 steps.*; each holds the weights it uses, \d+ MiB in all$/);
    await data.close();
  } finally {
    await rt.close();
  }
});

test('an idle fused session is released when another study is fused, never one that is running', async () => {
  // Records each session's label and whether it was released.
  const made: { label: string; released: boolean }[] = [];
  class Recording extends Runtime {
    override async create(...a: Parameters<Runtime['create']>) {
      const s = await super.create(...a);
      const rec = { label: a[1], released: false };
      made.push(rec);
      const release = s.release.bind(s);
      s.release = async () => {
        rec.released = true;
        await release();
      };
      return s;
    }
  }
  const rt = new Recording({ threads: 2 });
  try {
    const { n, engine, data, del } = await resnet20On200(rt);
    const a = [intactProgram(n), del(1), del(2)];
    const b = [intactProgram(n), del(3), del(4), del(5)];
    const fusedOf = (k: number) => made.filter((m) => m.label === `${k} programs`);
    // Two studies at once: neither may release the other's session mid-run.
    const [ra, rb] = await Promise.all([engine.evaluate(a, data, { batch: 64 }), engine.evaluate(b, data, { batch: 50 })]);
    assert.equal(fusedOf(3).length, 1);
    assert.equal(fusedOf(4).length, 1);
    assert.ok(!fusedOf(3)[0]!.released && !fusedOf(4)[0]!.released, 'a session in use was released');
    // Then a third study: both idle ones go; running a first one again rebuilds it, same counts.
    const c = [intactProgram(n), del(6), del(7), del(8), del(0)];
    await engine.evaluate(c, data, { batch: 64 });
    assert.ok(fusedOf(3)[0]!.released && fusedOf(4)[0]!.released, 'idle fused sessions stay alive');
    assert.deepEqual(await engine.evaluate(a, data, { batch: 64 }), ra);
    assert.equal(fusedOf(3).length, 2);
    assert.ok(fusedOf(5)[0]!.released);
    assert.ok(rb.every((r) => r.total === data.size));
    await data.close();
  } finally {
    await rt.close();
  }
});
