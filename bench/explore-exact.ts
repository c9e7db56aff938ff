/**
 * How long explore's paths view takes to show the exact shares of the network as it stands
 * after a change: the changed network built and analysed, the exact decomposition's sessions
 * created, one batch of EXACT_IMAGES images run, the sessions released (EngineBackend.exact,
 * alone: no other background work).
 *
 *   node --import tsx bench/explore-exact.ts [--model fixtures/models/resnet56.onnx]
 *     [--threads N] [--images 16] [--sets '-;3;3,10,20']
 *
 * Prints CPU seconds (user + system of this process) and wall seconds per configuration.
 */
import os from 'node:os';
import { openDataFor } from '../src/commands/common.js';
import { openNetwork } from '../src/engine/network.js';
import { Runtime } from '../src/engine/session.js';
import { EngineBackend, EXACT_IMAGES } from '../src/ui/explore/backend.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}

const model = arg('model', 'fixtures/models/resnet56.onnx');
const threads = Number(arg('threads', String(os.availableParallelism())));
const images = Number(arg('images', String(EXACT_IMAGES)));
const sets = arg('sets', '-;3;3,10,20').split(';').map((s) => (s === '-' ? [] : s.split(',').map(Number)));
const rt = new Runtime({ threads });
const net = await openNetwork(rt, model, {});
const data = await openDataFor(net, { limit: 1000 } as never);
const backend = new EngineBackend({ rt, net, data, exactImages: images });
const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
console.log(`${model}: exact shares of ${images} images, ${threads} threads, load average ${os.loadavg()[0]!.toFixed(1)}`);
for (const deleted of sets) {
  const c0 = cpu();
  const t0 = performance.now();
  const x = await backend.exact(deleted, { signal: new AbortController().signal });
  const [lo, hi] = x.effectiveRange;
  console.log(`${deleted.length ? `blocks ${deleted.join(',')} deleted` : 'intact'}: n = ${x.n}, ${(cpu() - c0).toFixed(2)} s CPU, ${((performance.now() - t0) / 1000).toFixed(2)} s wall; lengths ${lo}-${hi}, identity ${x.identityError.toExponential(1)}`);
}
await data.close();
await rt.close();
