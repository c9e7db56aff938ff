/**
 * Benchmark: path-restricted gradients (docs/science.md; `reslens gradients`) measured two ways on
 * the SAME sampling plan, each in its own child process:
 *
 *   reslens  PathGradients.runBatch via runGradients: per batch one forward, then one
 *            restricted backward per sample, one onnxruntime call per group of DEFAULT_GROUP
 *            blocks (a session per group and routing); samples that make the same choices
 *            for the last blocks share that part of the backward
 *   per block  the same with one call per block (group 1), the way before groups
 *   torch    PyTorch eager autograd (bench/torch_gradients.py): per batch one forward that
 *            keeps its graph, per sample torch.autograd.grad(loss, x0, retain_graph=True)
 *            with the routing switched per sample by gate Functions
 *
 *   node --import tsx bench/gradients.ts [--model fixtures/models/resnet56.onnx] [--batches 5]
 *     [--batch 32] [--k 0-N] [--seed 1] [--data IDX] [--threads N] [--weights M.pt]
 *     [--python /usr/bin/python3] [--no-torch] [--reference] [--device cpu] [--json FILE]
 *
 * The plan is makePlan's (as `reslens gradients` makes it): --batches random batches of
 * --batch images, on each one sample per k (k = 0..n by default), so samples = batches × |k|.
 * The parent writes it to a temporary JSON that both children read, so PyTorch runs the same
 * images and the same block subsets; the per-sample norms are compared (max relative
 * difference). Seconds cover the batches (data, forwards, backwards); setup (opening the
 * network and data, creating the ORT sessions; for PyTorch building the model and reading
 * weights and data) is shown apart. Both use the same thread count (ORT intra-op threads =
 * torch.set_num_threads; inter-op 1). Peak RSS is each child's maxRSS. --reference also runs
 * PyTorch in float64 (about 15x slower) and judges reslens by its distance to that instead
 * of to PyTorch's float32. Exit status 1 when the judged norms differ beyond 1e-3 relative
 * (or the grouped and per-block reslens runs beyond 1e-4), 2 on a usage or run failure.
 *
 *   node --import tsx bench/gradients.ts --exact [--model M.onnx] [--limit 1000] [--batch 32] [--threads N] [--device D]
 *
 * --exact times the exact decomposition by path length instead (docs/science.md; `reslens
 * gradients --exact`) on the first --limit images in consecutive batches: reslens
 * (ExactGradients, one stacked backward per block) against fixtures/torch_exact.py --float32
 * (the same recursion in PyTorch autograd, one backward per length per block), each in its own
 * child process, one run each. Seconds cover the batches only. The per-length norms and shares
 * are compared (max relative difference of the norms; of the shares where a share is above 1e-3).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import Table from 'cli-table3';
import { benchMain, CountingRuntime, DEFAULT_MODEL, machine, positive, PYTHON, ROOT, runJson, torchMissing, UsageError } from './common.js';
import { parseBlockList } from '../src/blocklist.js';
import { openDataFor } from '../src/commands/common.js';
import { DEFAULT_GROUP, PathGradients } from '../src/engine/gradients.js';
import { makePlan, runGradients, type GradientPlan } from '../src/studies/gradients.js';
import { exactSession, makeExactPlan, runExact, type ExactSummary } from '../src/studies/exact.js';
import { openNetwork } from '../src/engine/network.js';
import { Runtime, onnxruntimeVersion, type Device } from '../src/engine/session.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const DEFAULT_DATA = path.join(ROOT, 'fixtures', 'data', 't10k-images-idx3-ubyte');
const TOLERANCE = 1e-3;

interface Args {
  child: boolean;
  plan?: string;
  model: string;
  data: string;
  batches: number;
  batch: number;
  k?: string;
  seed: number;
  threads: number;
  /** Where the reslens children run (webgpu, cuda: scripts/device-check.sh). */
  device: Device;
  weights?: string;
  python: string;
  torch: boolean;
  /** Also run PyTorch in float64, the reference both float32 implementations are judged by. */
  reference: boolean;
  json?: string;
  /** Child only: blocks per backward call. */
  group: number;
  exact: boolean;
  limit: number;
}

/** What a child reports (one JSON line on stdout). */
interface MethodResult {
  method: 'reslens' | 'reslens-block' | 'torch' | 'torch64';
  seconds: number;
  setupSeconds: number;
  norms: number[];
  losses: number[];
  peakRssMb: number;
  threads: number;
  sessions?: number;
  version: string;
}

function parse(): Args {
  const { values } = parseArgs({
    options: {
      child: { type: 'boolean', default: false },
      plan: { type: 'string' },
      model: { type: 'string', default: DEFAULT_MODEL },
      data: { type: 'string', default: DEFAULT_DATA },
      batches: { type: 'string', default: '5' },
      batch: { type: 'string', default: '32' },
      k: { type: 'string' },
      seed: { type: 'string', default: '1' },
      threads: { type: 'string', default: String(os.cpus().length) },
      device: { type: 'string', default: 'cpu' },
      weights: { type: 'string' },
      python: { type: 'string', default: PYTHON },
      'no-torch': { type: 'boolean', default: false },
      reference: { type: 'boolean', default: false },
      json: { type: 'string' },
      group: { type: 'string', default: String(DEFAULT_GROUP) },
      exact: { type: 'boolean', default: false },
      limit: { type: 'string', default: '1000' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(
      'node --import tsx bench/gradients.ts [--model M.onnx] [--batches 5] [--batch 32] [--k 0-N] [--seed 1]\n' +
        '  [--data IDX] [--threads N] [--device cpu|webgpu|cuda] [--weights M.pt] [--python /usr/bin/python3] [--no-torch] [--reference] [--json FILE]\n' +
        'node --import tsx bench/gradients.ts --exact [--model M.onnx] [--limit 1000] [--batch 32] [--threads N] [--device cpu|webgpu|cuda] [--python /usr/bin/python3] [--no-torch]\n',
    );
    process.exit(0);
  }
  if (!['cpu', 'webgpu', 'cuda'].includes(values.device!)) throw new UsageError(`--device: '${values.device}' is not cpu, webgpu or cuda`);
  return {
    child: values.child!,
    device: values.device as Device,
    plan: values.plan,
    model: path.resolve(values.model!),
    data: path.resolve(values.data!),
    batches: positive('batches', values.batches!),
    batch: positive('batch', values.batch!),
    k: values.k,
    seed: positive('seed', values.seed!),
    threads: positive('threads', values.threads!),
    weights: values.weights,
    python: values.python!,
    torch: !values['no-torch'],
    reference: values.reference!,
    json: values.json,
    group: positive('group', values.group!),
    exact: values.exact!,
    limit: positive('limit', values.limit!),
  };
}

// ---------------------------------------------------------------- child (reslens)

async function child(a: Args): Promise<MethodResult | ExactResult> {
  if (a.exact) return exactChild(a);
  const plan = JSON.parse(readFileSync(a.plan!, 'utf8')) as GradientPlan;
  const t0 = performance.now();
  const rt = new CountingRuntime({ threads: a.threads, device: a.device });
  try {
    const net = await openNetwork(rt, a.model);
    const data = await openDataFor(net, { data: a.data });
    try {
      const classes = net.preprocessing.classNames?.length ?? data.classes ?? 0;
      const pg = await PathGradients.create(rt, net, plan.batchSize, classes, { group: a.group });
      const setupSeconds = (performance.now() - t0) / 1000;
      const losses: number[] = [];
      // runGradients reports only the mean loss; the per-batch losses come from its runBatch calls.
      const run = pg.runBatch.bind(pg);
      pg.runBatch = async (...args) => {
        const r = await run(...args);
        losses.push(r.loss);
        return r;
      };
      const t1 = performance.now();
      const res = await runGradients(pg, data, plan, { ks: [], seed: 0 }, {
        onProgress: (done, total) => process.stderr.isTTY && process.stderr.write(`\rreslens: ${done}/${total} samples\x1b[K`),
      });
      const seconds = (performance.now() - t1) / 1000;
      if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
      return {
        method: a.group === 1 ? 'reslens-block' : 'reslens',
        seconds,
        setupSeconds,
        norms: res.samples.map((s) => s.norm),
        losses,
        peakRssMb: process.resourceUsage().maxRSS / 1024,
        threads: a.threads,
        sessions: rt.count,
        version: `onnxruntime ${await onnxruntimeVersion()}`,
      };
    } finally {
      await data.close();
    }
  } finally {
    await rt.close();
  }
}

// ---------------------------------------------------------------- parent

interface TorchJson {
  skipped?: string;
  seconds: number;
  setup_seconds: number;
  norms: number[];
  losses: number[];
  blocks: number;
  peak_rss_mb: number;
  threads: number;
  torch: string;
}

/**
 * Backward calls reslens makes with `group` blocks per call: per batch, one per distinct suffix
 * of the choices that ends at a group boundary (the edges of its trie). Group 1 counts block steps.
 */
function backwardCalls(plan: GradientPlan, n: number, group: number): number {
  let calls = 0;
  plan.batches.forEach((_, b) => {
    const sets = plan.samples.filter((s) => s.batch === b).map((s) => new Set(s.blocks));
    for (let first = Math.floor((n - 1) / group) * group; first >= 0; first -= group) {
      calls += new Set(sets.map((set) => Array.from({ length: n - first }, (_, i) => (set.has(n - 1 - i) ? 'f' : 's')).join(''))).size;
    }
  });
  return calls;
}

interface Comparison {
  max: number;
  worst: number;
  /** Worst per path length: long paths pass many ReLU masks, and a unit within rounding of
   * zero in the forward pass can take the other side in one of two float32 implementations. */
  byK: Map<number, number>;
}

/** Relative differences of norms a against b, sample by sample. */
function compare(a: number[], b: number[], plan: GradientPlan): Comparison {
  const c: Comparison = { max: 0, worst: -1, byK: new Map() };
  a.forEach((v, i) => {
    const w = b[i]!;
    const rel = Math.abs(v - w) / Math.max(Math.abs(w), Number.MIN_VALUE);
    if (!(rel <= c.max)) [c.max, c.worst] = [rel, i];
    const k = plan.samples[i]!.k;
    c.byK.set(k, Math.max(c.byK.get(k) ?? 0, rel));
  });
  return c;
}

const json = (c: Comparison) => ({ maxRelativeNormDifference: c.max, worstSample: c.worst, worstByK: Object.fromEntries(c.byK) });

async function parent(a: Args): Promise<number> {
  const m = machine();
  // The plan, exactly as `reslens gradients` makes it (makePlan over the network's blocks and the data).
  let plan: GradientPlan;
  let n: number;
  let arch: string;
  let dataDescription: string;
  {
    const rt = new Runtime({ threads: 1 });
    try {
      const net = await openNetwork(rt, a.model);
      if (net.structure.kind !== 'residual') throw new UsageError(`${a.model}: a ${net.structure.kind} network has no residual blocks`);
      n = net.structure.blocks.length;
      arch = net.model.metadata['reslens.model'] ?? path.basename(a.model, '.onnx');
      const data = await openDataFor(net, { data: a.data });
      dataDescription = data.description;
      const ks = a.k ? parseBlockList(a.k, '--k', n, 0) : [...Array(n + 1).keys()];
      plan = makePlan(n, data.size, { ks, samples: a.batches, batchSize: a.batch, seed: a.seed });
      await data.close();
    } finally {
      await rt.close();
    }
  }
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'reslens-bench-gradients-'));
  const planFile = path.join(tmp, 'plan.json');
  writeFileSync(planFile, JSON.stringify(plan));
  const results: MethodResult[] = [];
  let torchSkipped: string | null = null;
  try {
    process.stderr.write(`reslens: ${plan.samples.length} samples on ${plan.batches.length} batches…\n`);
    const argv = ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', '--plan', planFile, '--model', a.model, '--data', a.data, '--threads', String(a.threads), '--device', a.device];
    results.push((await runJson(process.execPath, argv)) as unknown as MethodResult);
    process.stderr.write('reslens, one backward call per block…\n');
    results.push((await runJson(process.execPath, [...argv, '--group', '1'])) as unknown as MethodResult);

    const weights = a.weights ? path.resolve(a.weights) : path.join(path.dirname(a.model), '..', 'weights', `${arch}.pt`);
    if (!a.torch) torchSkipped = '--no-torch';
    else torchSkipped = torchMissing(a.python, weights);
    for (const method of ['torch', 'torch64'] as const) {
      if (torchSkipped || (method === 'torch64' && !a.reference)) continue;
      process.stderr.write(`${method}: the same plan in PyTorch eager autograd${method === 'torch64' ? ', float64' : ''}…\n`);
      const argv = [path.join(HERE, 'torch_gradients.py'), '--arch', arch, '--weights', weights, '--data', a.data, '--plan', planFile, '--threads', String(a.threads)];
      const r = (await runJson(a.python, method === 'torch64' ? [...argv, '--float64'] : argv)) as unknown as TorchJson;
      if (r.skipped) torchSkipped = r.skipped;
      else {
        if (r.blocks !== n) throw new Error(`torch: ${arch} has ${r.blocks} blocks, the ONNX model ${n}`);
        results.push({ method, seconds: r.seconds, setupSeconds: r.setup_seconds, norms: r.norms, losses: r.losses, peakRssMb: r.peak_rss_mb, threads: r.threads, version: `torch ${r.torch}` });
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  if (torchSkipped) process.stderr.write(`torch: skipped (${torchSkipped})\n`);

  const ref = results[0]!;
  const torch = results.find((r) => r.method === 'torch');
  const torch64 = results.find((r) => r.method === 'torch64');
  // Grouping only changes which onnxruntime calls run; the two reslens runs must agree to rounding.
  const groupRel = compare(ref.norms, results.find((r) => r.method === 'reslens-block')!.norms, plan).max;
  const vsTorch = torch ? compare(ref.norms, torch.norms, plan) : null;
  // With the float64 reference, each float32 implementation is judged by its distance to it;
  // without it, reslens by its distance to PyTorch's float32.
  const vs64 = torch64 ? compare(ref.norms, torch64.norms, plan) : null;
  const torchVs64 = torch && torch64 ? compare(torch.norms, torch64.norms, plan) : null;
  const judged = vs64 ?? vsTorch;
  const ok = (!judged || judged.max <= TOLERANCE) && groupRel <= 1e-4;
  let maxLoss = 0;
  if (torch) ref.losses.forEach((l, i) => (maxLoss = Math.max(maxLoss, Math.abs(l - torch.losses[i]!))));

  const samples = plan.samples.length;
  const ks = [...new Set(plan.samples.map((s) => s.k))];
  const shared = backwardCalls(plan, n, 1);
  const grouped = backwardCalls(plan, n, DEFAULT_GROUP);
  const lines = [
    `model        ${path.relative(process.cwd(), a.model)} (${n} blocks)`,
    `data         ${dataDescription}`,
    `plan         ${plan.batches.length} batches of ${plan.batchSize}, ${ks.length === n + 1 ? `k = 0..${n}` : `k = ${ks.join(',')}`} on each: ${samples} samples (seed ${a.seed})`,
    `backwards    ${shared} block backward steps in reslens (samples of a batch share the steps of equal suffixes) in ${grouped} calls of up to ${DEFAULT_GROUP} blocks, ${n * samples} in PyTorch (${n} per sample)`,
    `threads      ${a.threads} (ORT intra-op${torch ? ' = torch.set_num_threads' : ''}; inter-op 1)`,
    `machine      ${m.line}`,
    `versions     ${[...new Set(results.map((r) => r.version))].join("; ")}; node ${process.version}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
  const t = new Table({
    head: ['method', 'samples', 'seconds', 'samples/s', 'reslens speedup', 'setup s', 'peak RSS MB'],
    colAligns: ['left', 'right', 'right', 'right', 'right', 'right', 'right'],
    style: process.stdout.isTTY ? {} : { head: [], border: [] },
  });
  const label = {
    reslens: `reslens (${DEFAULT_GROUP} blocks per call, shared suffixes)`,
    'reslens-block': 'reslens, one call per block (shared suffixes)',
    torch: 'PyTorch eager autograd (1 backward per sample)',
    torch64: 'PyTorch eager autograd in float64 (reference)',
  };
  for (const r of results) {
    t.push([label[r.method], samples, r.seconds.toFixed(2), (samples / r.seconds).toFixed(1), `${(r.seconds / ref.seconds).toFixed(2)}×`, r.setupSeconds.toFixed(2), r.peakRssMb.toFixed(0)]);
  }
  process.stdout.write(t.toString() + '\n');
  process.stdout.write(`norms, ${DEFAULT_GROUP} blocks per call vs one: max relative difference ${groupRel.toExponential(2)}\n`);
  const say = (what: string, c: Comparison, judgedHere: boolean) => {
    const sm = c.worst >= 0 ? plan.samples[c.worst]! : undefined;
    const verdict = judgedHere ? (c.max <= TOLERANCE ? ` ≤ ${TOLERANCE} ok` : ` > ${TOLERANCE} FAIL`) : '';
    process.stdout.write(`${what}: max relative difference ${c.max.toExponential(2)}${sm ? ` (k=${sm.k}, batch ${sm.batch})` : ''}${verdict}\n`);
    process.stdout.write(`  worst by k: ${[...c.byK.keys()].sort((x, y) => x - y).map((k) => `${k}:${c.byK.get(k)!.toExponential(0)}`).join(' ')}\n`);
  };
  if (vsTorch) say('norms, reslens vs PyTorch float32', vsTorch, !vs64);
  if (vs64) say('norms, reslens vs PyTorch float64 (reference)', vs64, true);
  if (torchVs64) say('norms, PyTorch float32 vs float64 (for scale)', torchVs64, false);
  if (torch) process.stdout.write(`losses, reslens vs PyTorch float32: max difference ${maxLoss.toExponential(2)}\n`);
  else process.stdout.write(`torch: skipped (${torchSkipped})\n`);
  if (a.json) {
    const doc = {
      model: a.model,
      data: dataDescription,
      blocks: n,
      threads: a.threads,
      machine: { cpu: m.cpu, cores: m.cores, platform: m.platform, loadAverageAtStart: m.load },
      plan,
      torchSkipped,
      methods: results.map((r) => ({ ...r, samples, samplesPerSecond: samples / r.seconds, slowdownVsReslens: r.seconds / ref.seconds })),
      agreement: {
        tolerance: TOLERANCE,
        ok,
        groupedVsPerBlock: groupRel,
        ...(vsTorch ? { vsTorchFloat32: json(vsTorch), maxLossDifference: maxLoss } : {}),
        ...(vs64 ? { vsTorchFloat64: json(vs64) } : {}),
        ...(torchVs64 ? { torchFloat32VsFloat64: json(torchVs64) } : {}),
      },
    };
    writeFileSync(a.json, JSON.stringify(doc, null, 2) + '\n');
    process.stdout.write(`wrote ${a.json}\n`);
  }
  return ok ? 0 : 1;
}

// ---------------------------------------------------------------- --exact

interface ExactResult {
  method: 'reslens' | 'torch';
  seconds: number;
  setupSeconds?: number;
  images: number;
  identityError: number;
  perLength: ExactSummary['perLength'];
  peakRssMb: number;
  version: string;
}

async function exactChild(a: Args): Promise<ExactResult> {
  const t0 = performance.now();
  const rt = new Runtime({ threads: a.threads, device: a.device });
  try {
    const net = await openNetwork(rt, a.model);
    const data = await openDataFor(net, { data: a.data, limit: a.limit });
    try {
      const eg = await exactSession(rt, net, data, a.batch);
      const setupSeconds = (performance.now() - t0) / 1000;
      const t1 = performance.now();
      const { summary } = await runExact(eg, data, makeExactPlan(data.size, { batchSize: a.batch }), 0.9);
      const seconds = (performance.now() - t1) / 1000;
      return { method: 'reslens', seconds, setupSeconds, images: summary.images, identityError: summary.identityError, perLength: summary.perLength, peakRssMb: process.resourceUsage().maxRSS / 1024, version: `onnxruntime ${await onnxruntimeVersion()}` };
    } finally {
      await data.close();
    }
  } finally {
    await rt.close();
  }
}

async function exactParent(a: Args): Promise<number> {
  const m = machine();
  const arch = path.basename(a.model, '.onnx');
  const argv = ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', '--exact', '--model', a.model, '--data', a.data, '--limit', String(a.limit), '--batch', String(a.batch), '--threads', String(a.threads), '--device', a.device];
  const ours = (await runJson(process.execPath, argv)) as ExactResult;
  const weights = a.weights ?? path.join(ROOT, 'fixtures', 'weights', `${arch}.pt`);
  const missing = torchMissing(a.python, weights);
  let theirs: ExactResult | null = null;
  if (!missing && a.torch) {
    const t = (await runJson(a.python, [path.join(ROOT, 'fixtures', 'torch_exact.py'), '--model', arch, '--float32', '--time', '--limit', String(a.limit), '--batch', String(a.batch), '--threads', String(a.threads)])) as Omit<ExactResult, 'method' | 'version'> & { torch: string };
    theirs = { ...t, method: 'torch', version: `torch ${t.torch}` };
  }
  process.stdout.write(`model        ${path.relative(process.cwd(), a.model)}, exact decomposition by path length\n`);
  process.stdout.write(`data         first ${ours.images} images of ${path.relative(process.cwd(), a.data)}, consecutive batches of ${a.batch}\n`);
  process.stdout.write(`threads      ${a.threads}\ndevice       ${a.device}\nmachine      ${m.line}\n`);
  const t = new Table({ head: ['method', 'images', 'seconds', 'images/s', 'vs reslens', 'setup s', 'peak RSS MB', 'identity'], style: process.stdout.isTTY ? {} : { head: [], border: [] } });
  const rows = theirs ? [ours, theirs] : [ours];
  const label = { reslens: 'reslens (stacked backward, one call per chain of blocks)', torch: 'PyTorch float32 autograd (a backward per length per block)' };
  for (const r of rows) t.push([label[r.method], r.images, r.seconds.toFixed(2), (r.images / r.seconds).toFixed(1), `${(r.seconds / ours.seconds).toFixed(2)}×`, r.setupSeconds?.toFixed(2) ?? '-', r.peakRssMb.toFixed(0), r.identityError.toExponential(1)]);
  process.stdout.write(t.toString() + '\n');
  let ok = true;
  if (theirs) {
    let norm = 0;
    let share = 0;
    for (const p of theirs.perLength) {
      const q = ours.perLength[p.k]!;
      norm = Math.max(norm, Math.abs(q.norm - p.norm) / p.norm);
      if (Math.abs(p.share) > 1e-3) share = Math.max(share, Math.abs(q.share - p.share) / Math.abs(p.share));
    }
    ok = norm <= TOLERANCE && share <= TOLERANCE;
    process.stdout.write(`reslens vs PyTorch float32: norms within ${norm.toExponential(2)}, shares (above 1e-3) within ${share.toExponential(2)}${ok ? '' : ' FAIL'}\n`);
    process.stdout.write(`reslens is ${(theirs.seconds / ours.seconds).toFixed(2)}× PyTorch's speed\n`);
  } else process.stdout.write(`torch: skipped (${missing ?? '--no-torch'})\n`);
  if (a.json) writeFileSync(a.json, JSON.stringify({ model: a.model, limit: a.limit, batch: a.batch, threads: a.threads, device: a.device, machine: m, methods: rows }, null, 2) + '\n');
  return ok ? 0 : 1;
}

await benchMain('bench/gradients.ts', parse, (a) => (a.child ? `--child --group ${a.group}` : undefined), child, (a) => (a.exact ? exactParent(a) : parent(a)));
