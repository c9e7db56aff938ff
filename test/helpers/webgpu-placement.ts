/**
 * Builds every graph reslens makes for one model and runs each once on WebGPU, with placement
 * profiling, on 2 images: the fused lesion session (intact, every unit deleted, scaled, replaced
 * by its mean, the order reversed within stages) and the branch means; for residual networks
 * also the sampled gradients' forward, loss and backward graphs (every routing of every group),
 * the exact decomposition's graphs, and explore's checkpoint graphs (the intact spine, a run of
 * steps from a checkpoint). Prints one JSON line: each session's label and placement.
 * test/webgpu-placement.test.ts runs it per fixture in a child process (SwiftShader must be set
 * up in the environment before the process starts).
 *
 *   node --import tsx test/helpers/webgpu-placement.ts MODEL.onnx
 */
import { openDataFor } from '../../src/commands/common.js';
import { Checkpoints, Engine } from '../../src/engine/engine.js';
import { DEFAULT_GROUP, PathGradients } from '../../src/engine/gradients.js';
import { openNetwork } from '../../src/engine/network.js';
import type { Placement } from '../../src/engine/placement.js';
import { Runtime } from '../../src/engine/session.js';
import { exactSession } from '../../src/studies/exact.js';
import { changedMode, eligibleUnits, runConfigurations, toProgram } from '../../src/studies/lesion.js';
import { intactProgram, unitCount } from '../../src/surgery/split.js';
import { planNetwork } from '../../src/studies/network.js';

export interface PlacementReport {
  model: string;
  kind: string;
  placements: { label: string; placement: Placement }[];
}

const IMAGES = 2;

export async function placements(model: string): Promise<PlacementReport> {
  const rt = new Runtime({ device: 'webgpu', threads: 2, onPlacement: () => {} });
  try {
    const net = await openNetwork(rt, model);
    const data = await openDataFor(net, { limit: IMAGES });
    const engine = new Engine(rt, net);
    const s = net.structure;
    const residual = s.kind === 'residual';
    // Lesion: one fused session holding every way a unit can change (plain and dense networks
    // only delete, and only the units that keep their shape).
    const units = residual ? s.blocks.map((b) => b.index) : eligibleUnits(planNetwork(net), false);
    const n = unitCount(s);
    const del = await changedMode(engine, data, { kind: 'delete' }, IMAGES);
    const programs = [intactProgram(n), toProgram({ changed: units }, n, del)];
    if (residual) {
      const scale = await changedMode(engine, data, { kind: 'scale', alpha: 0.5 }, IMAGES);
      const mean = await changedMode(engine, data, { kind: 'mean' }, IMAGES);
      // Every block in every mode: deleted, scaled, mean in turn, in three rotations.
      const modes = [del, scale, mean];
      for (let r = 1; r < 3; r++) programs.push(toProgram({ changed: units }, n, (u) => modes[(u + r) % 3]!(u)));
      programs[1] = toProgram({ changed: units }, n, (u) => modes[u % 3]!(u));
      // Reordered: the identity-shortcut blocks of each stage in reverse.
      const order = [...Array(n).keys()];
      for (const stage of new Set(s.blocks.map((b) => b.stage))) {
        const idx = s.blocks.filter((b) => b.stage === stage && b.shortcutKind === 'identity').map((b) => b.index);
        idx.forEach((b, i) => (order[b] = idx[idx.length - 1 - i]!));
      }
      programs.push(toProgram({ order }, n, del));
    }
    await engine.evaluate(programs, data, { batch: IMAGES });

    if (residual) {
      const batch = await data.batch([...Array(IMAGES).keys()]);
      // Sampled gradients: every routing of every group of blocks (bit j of r: the group's
      // block j takes its residual branch), so that each backward graph is built and run.
      const pg = await PathGradients.create(rt, net, IMAGES, data.classes ?? 10);
      const choices = Array.from({ length: 2 ** DEFAULT_GROUP }, (_, r) => s.blocks.map((b) => b.index).filter((_, j) => (r >> j % DEFAULT_GROUP) & 1));
      await pg.runBatch(batch.images, batch.labels, choices);
      const eg = await exactSession(rt, net, data, IMAGES);
      await eg.runBatch(batch.images, batch.labels);
      // Explore: the checkpoints, then a block deleted from the one before it.
      const cp = new Checkpoints(net, data.size);
      for (const changed of [[], [Math.min(1, s.blocks.length - 1)]]) await runConfigurations(engine, data, [{ changed }], [0], del, { batch: IMAGES, checkpoints: cp });
      cp.dispose();
    }
    await data.close();
    return { model, kind: s.kind, placements: rt.placements.map((p) => ({ label: p.label, placement: p.placement })) };
  } finally {
    await rt.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(`${JSON.stringify(await placements(process.argv[2]!))}\n`);
}
