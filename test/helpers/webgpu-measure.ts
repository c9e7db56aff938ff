/**
 * The measurements test/webgpu.test.ts compares between the CPU and WebGPU: one lesion study per
 * mode through the fused session, sampled path gradients, and explore's evaluation path
 * (checkpoints). Run as a script it measures on WebGPU and prints one JSON line; the test runs
 * it in a child process because the software Vulkan (SwiftShader) must be set up in the
 * environment before the process starts.
 *
 *   node --import tsx test/helpers/webgpu-measure.ts [--keep|--no-keep] [--limit N]
 */
import { openDataFor } from '../../src/commands/common.js';
import { Checkpoints, Engine } from '../../src/engine/engine.js';
import { PathGradients } from '../../src/engine/gradients.js';
import { openNetwork } from '../../src/engine/network.js';
import { Runtime, type Device } from '../../src/engine/session.js';
import type { Placement } from '../../src/engine/placement.js';
import { changedMode, runConfigurations, runLesion, type LesionMode } from '../../src/studies/lesion.js';
import { makePlan, runGradients } from '../../src/studies/gradients.js';
import { exactSession, makeExactPlan, runExact } from '../../src/studies/exact.js';

export const MODEL = 'fixtures/models/resnet20.onnx';

export interface Measurements {
  device: Device;
  /** Wrong images of every configuration of each lesion mode, in the study's order. */
  lesion: Record<string, { configs: string[]; wrong: number[]; nonFinite: number[] }>;
  gradients: { k: number; blocks: number[]; norm: number }[];
  /** The exact decomposition by path length (gradients --exact): per-k norm and share, ‖Σ_k G_k − G‖ / ‖G‖. */
  exact: { perLength: { k: number; norm: number; share: number }[]; identityError: number };
  explore: { deleted: number[]; wrong: number }[];
  /** Tensors copied between JavaScript and the device over one gradient batch, and over each explore evaluation (in `explore`'s order). */
  copies: { gradientBatch: { uploads: number; downloads: number }; exploreEvals: { uploads: number; downloads: number }[] };
  placements: { label: string; placement: Placement }[];
  seconds: Record<string, number>;
}

const MODES: [string, LesionMode][] = [
  ['delete', { kind: 'delete' }],
  ['scale', { kind: 'scale', alpha: 0.5 }],
  ['mean', { kind: 'mean' }],
];

export async function measure(device: Device, o: { limit: number; keepOnDevice?: boolean; placements?: boolean; log?: (line: string) => void }): Promise<Measurements> {
  const rt = new Runtime({ device, threads: 2, keepOnDevice: o.keepOnDevice, ...(o.placements ? { onPlacement: () => {} } : {}) });
  const seconds: Record<string, number> = {};
  const timed = async <T>(what: string, f: () => Promise<T>): Promise<T> => {
    const t = performance.now();
    try {
      return await f();
    } finally {
      seconds[what] = Math.round(performance.now() - t) / 1000;
      o.log?.(`${what}: ${seconds[what]} s`);
    }
  };
  try {
    const net = await openNetwork(rt, MODEL);
    const data = await openDataFor(net, { limit: o.limit });
    const engine = new Engine(rt, net);
    const lesion: Measurements['lesion'] = {};
    for (const [name, mode] of MODES) {
      // Deletion: every block alone and random k-subsets; scale and mean (SwiftShader is slow),
      // two random sets of four blocks each.
      const r = await timed(`lesion ${name}`, () =>
        runLesion(engine, data, { mode, single: name === 'delete', k: name === 'delete' ? [2, 4] : [4], samples: 2, seed: 3, batch: o.limit }),
      );
      const configs = [{ c: 'intact', m: r.baseline }, ...r.single.map((s) => ({ c: `single ${s.unit}`, m: s })), ...r.k.flatMap((k) => k.samples.map((s) => ({ c: `k ${s.blocks.join(',')}`, m: s })))];
      lesion[name] = { configs: configs.map((x) => x.c), wrong: configs.map((x) => x.m.total - x.m.correct), nonFinite: configs.map((x) => x.m.nonFinite) };
    }

    const n = net.structure.blocks.length;
    const batch = Math.min(8, o.limit);
    const plan = makePlan(n, data.size, { ks: [0, 3, 6, 9], samples: 2, batchSize: batch, seed: 5 });
    const pg = await PathGradients.create(rt, net, batch, data.classes ?? 10);
    const before = { ...rt.copies };
    const first = await data.batch(plan.batches[0]!);
    await pg.runBatch(first.images, first.labels, [[1, 4]]);
    const gradientBatch = { uploads: rt.copies.uploads - before.uploads, downloads: rt.copies.downloads - before.downloads };
    const g = await timed('gradients', () => runGradients(pg, data, plan, { ks: [0, 3, 6, 9], seed: 5 }));

    // The exact recursion: two batches of 8, so that the per-batch sums are merged as well.
    const exactPlan = makeExactPlan(data.size, { batchSize: batch, limit: 2 * batch });
    const ex = await timed('exact', async () => (await runExact(await exactSession(rt, net, data, batch), data, exactPlan, 0.9)).summary);

    // Explore: one configuration per call, each from the intact activations checkpointed on the first.
    const checkpoints = new Checkpoints(net, data.size);
    const changed = await changedMode(engine, data, { kind: 'delete' }, o.limit);
    const explore: Measurements['explore'] = [];
    const exploreEvals: Measurements['copies']['exploreEvals'] = [];
    await timed('explore', async () => {
      for (const deleted of [[], [4], [4, 7], [0, 8]]) {
        const c0 = { ...rt.copies };
        const [r] = await runConfigurations(engine, data, [{ changed: deleted }], [0], changed, { batch: o.limit, checkpoints });
        exploreEvals.push({ uploads: rt.copies.uploads - c0.uploads, downloads: rt.copies.downloads - c0.downloads });
        explore.push({ deleted, wrong: r!.total - r!.correct });
      }
    });
    checkpoints.dispose();
    await data.close();
    return {
      device,
      lesion,
      gradients: g.samples.map((s) => ({ k: s.k, blocks: s.blocks, norm: s.norm })),
      exact: { perLength: ex.perLength, identityError: ex.identityError },
      explore,
      copies: { gradientBatch, exploreEvals },
      placements: rt.placements.map((p) => ({ label: p.label, placement: p.placement })),
      seconds,
    };
  } finally {
    await rt.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const limit = args.includes('--limit') ? Number(args[args.indexOf('--limit') + 1]) : 16;
  const m = await measure('webgpu', { limit, keepOnDevice: !args.includes('--no-keep'), placements: true, log: (l) => process.stderr.write(`${l}\n`) });
  process.stdout.write(`${JSON.stringify(m)}\n`);
}
