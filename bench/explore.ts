/**
 * How long explore takes to show the error of a configuration it has not measured yet, on
 * the data it explores (the first --limit samples), while its background work (the
 * single-block sweep and the ensemble curve) runs as it does in the app:
 *
 *   node --import tsx bench/explore.ts [--model fixtures/models/resnet56.onnx] [--limit 1000]
 *     [--threads N] [--blocks 0,4,9,13,18,22]
 *
 * Block `--keep` (default: the last) stays deleted, so that every toggle asks for a new
 * configuration {b, keep} that the sweep cannot have measured; the time runs from the
 * toggle to the measurement arriving in the controller's state (what the screen shows).
 * Each toggle is timed twice: with Checkpoints (what explore does) and from the input (the
 * naive way), each in a fresh controller.
 */
import os from 'node:os';
import Table from 'cli-table3';
import { openDataFor } from '../src/commands/common.js';
import { openNetwork } from '../src/engine/network.js';
import { Runtime } from '../src/engine/session.js';
import { parseBlockList } from '../src/blocklist.js';
import { EngineBackend } from '../src/ui/explore/backend.js';
import { ExploreController } from '../src/ui/explore/controller.js';
import { currentMeasurement } from '../src/ui/explore/state.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}

const model = arg('model', 'fixtures/models/resnet56.onnx');
const limit = Number(arg('limit', '1000'));
const threads = Number(arg('threads', String(os.availableParallelism())));
const rt = new Runtime({ threads });
const net = await openNetwork(rt, model, {});
const n = net.structure.blocks.length;
const keep = Number(arg('keep', String(n - 1)));
const blocks = parseBlockList(arg('blocks', [0, 4, 9, 13, 18, 22].filter((b) => b < n && b !== keep).join(',')), '--blocks', n);

const until = (c: ExploreController, cond: () => boolean) =>
  new Promise<void>((resolve) => {
    if (cond()) return resolve();
    const off = c.subscribe(() => {
      if (cond()) {
        off();
        resolve();
      }
    });
  });

async function run(checkpoints: boolean): Promise<number[]> {
  const data = await openDataFor(net, { limit });
  const backend = new EngineBackend({ rt, net, data, checkpoints });
  const c = new ExploreController(backend);
  c.start();
  await until(c, () => currentMeasurement(c.getState()) !== null);
  c.toggle(keep);
  await until(c, () => currentMeasurement(c.getState()) !== null);
  const times: number[] = [];
  for (const b of blocks) {
    const t0 = performance.now();
    c.toggle(b);
    await until(c, () => currentMeasurement(c.getState()) !== null);
    times.push(performance.now() - t0);
    c.toggle(b);
    await until(c, () => currentMeasurement(c.getState()) !== null);
  }
  await c.close();
  await data.close();
  return times;
}

const withCp = await run(true);
const naive = await run(false);
const t = new Table({ head: [`toggle (block ${keep} deleted)`, 'explore (checkpoints) ms', 'from the input ms'], style: { head: [], border: [] }, colAligns: ['left', 'right', 'right'] });
blocks.forEach((b, i) => t.push([`block ${b}`, withCp[i]!.toFixed(0), naive[i]!.toFixed(0)]));
const mean = (xs: number[]) => xs.reduce((a, x) => a + x, 0) / xs.length;
t.push(['mean', mean(withCp).toFixed(0), mean(naive).toFixed(0)], ['max', Math.max(...withCp).toFixed(0), Math.max(...naive).toFixed(0)]);
console.log(`${model}, ${limit} samples, ${threads} threads, background sweep and ensemble running; load average ${os.loadavg()[0]!.toFixed(2)} at the end`);
console.log(t.toString());
console.log(`peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB`);
await rt.close();
