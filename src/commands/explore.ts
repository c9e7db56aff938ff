/** reslens explore: delete blocks by hand and watch the error, the paths and the ensemble curve. */
import type { Command } from 'commander';
import { Option } from 'commander';
import { openNetwork } from '../engine/network.js';
import { UserError } from '../errors.js';
import type { Dataset } from '../loader/data/dataset.js';
import { EngineBackend } from '../ui/explore/backend.js';
import { ExploreController } from '../ui/explore/controller.js';
import { modelStem } from '../ui/explore/files.js';
import { addDataOptions, addPreprocessOptions, addRuntimeOptions, batchFor, modelArgument, openDataFor, positiveInt, preprocessOptions, seedArg, withRuntime, type DataFlags, type PreprocessFlags, type RuntimeFlags } from './common.js';
import { whyNotSplittable } from '../studies/network.js';

export const NOT_A_TERMINAL = 'explore needs an interactive terminal; for scripts use reslens lesion --json';

interface ExploreFlags extends DataFlags, RuntimeFlags, PreprocessFlags {
  compare?: string;
  batch?: number;
  samples: number;
  seed: number;
}

/** Random sets per k in the ensemble curve: 3 left k = 4 above k = 5 on resnet20; 10 is lesion's default too. */
export const ENSEMBLE_SAMPLES = 10;

export function registerExplore(program: Command): void {
  const cmd = program
    .command('explore')
    .description('interactive: delete blocks and watch the error, the path lengths and the ensemble curve')
    .addArgument(modelArgument())
    .addOption(new Option('--compare <plain.onnx>', "a plain (or other) network whose error-vs-deleted curve is drawn beside the model's"))
    .addOption(new Option('--samples <n>', 'random sets of k blocks per k in the ensemble curve (its spread: min-max and sd)').argParser(positiveInt('--samples', 100000)).default(ENSEMBLE_SAMPLES))
    .addOption(new Option('--seed <n>', 'seed for the random sets of the ensemble curve').argParser(seedArg('--seed')).default(0))
    .addHelpText('after', `
Every configuration is measured on the first --limit samples (default here: 1000), so a
deletion shows its error within seconds; single-block errors, the ensemble curve and, on g,
path-restricted gradients are computed in the background.

Keys: arrows or j/k select a block, Space deletes it (or puts it back), Tab or 1-3 switch view,
x writes the current network as ONNX, s saves the state as JSON, g measures gradients, ? help, q quits.

Examples:
  reslens explore                                  # resnet56 on the shipped 1k Fashion-MNIST subset
  reslens explore fixtures/models/resnet20.onnx --limit 500
  reslens explore model.onnx --data test_batch.bin --compare plain.onnx
  reslens explore --samples 30                     # a smoother ensemble curve, measured longer`);
  addPreprocessOptions(addRuntimeOptions(addDataOptions(cmd)));
  // Every toggle is measured again, so a subset keeps the answer interactive.
  cmd.setOptionValueWithSource('limit', 1000, 'default');
  cmd.action(async (modelPath: string, o: ExploreFlags) => {
    if (!process.stdin.isTTY || !process.stdout.isTTY) throw new UserError(NOT_A_TERMINAL);
    await withRuntime(o, async (rt) => {
      const net = await openNetwork(rt, modelPath, preprocessOptions(o));
      const opened: Dataset[] = [];
      try {
        const data = await openDataFor(net, o);
        opened.push(data);
        let compare = null;
        if (o.compare) {
          const cnet = await openNetwork(rt, o.compare, preprocessOptions(o));
          const why = whyNotSplittable(cnet);
          if (why) throw new UserError(`${o.compare}: ${why}; --compare takes a plain chain or a residual network`);
          const cdata = await openDataFor(cnet, o);
          opened.push(cdata);
          compare = { net: cnet, data: cdata, name: modelStem(o.compare) };
        }
        const backend = new EngineBackend({ rt, net, data, compare, batch: await batchFor(rt, net, o, data.size), ensembleSamples: o.samples, seed: o.seed });
        const controller = new ExploreController(backend);
        // Ink (is-in-ci) draws only the final frame when CI is set; explore runs only on a
        // terminal, so the user wants the live screen. Ink reads this when first imported.
        delete process.env.CI;
        delete process.env.CONTINUOUS_INTEGRATION;
        const { runExploreApp } = await import('../ui/explore/run.js');
        try {
          await runExploreApp(controller);
        } finally {
          await controller.close();
        }
      } finally {
        for (const d of opened) await d.close();
      }
    });
  });
}
