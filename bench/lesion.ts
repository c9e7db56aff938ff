/**
 * Benchmark: the single-block deletion sweep (the intact network plus every block deleted
 * one at a time, error on the data) measured three ways, each in its own child process:
 *
 *   engine  reslens: Engine.evaluate with all programs at once (shared prefixes computed once)
 *   naive   for each configuration: exportProgram -> one ORT session on the whole changed
 *           model (through Runtime) -> a full forward over the data, same batches
 *   torch   PyTorch eager doing the same deletions (bench/torch_lesion.py)
 *
 *   node --import tsx bench/lesion.ts [--model fixtures/models/resnet56.onnx]
 *     [--data /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz] [--limit N]
 *     [--batch N] [--threads N] [--methods engine,naive,torch] [--device cpu] [--json FILE]
 *     [--torchvision resnet50] [--torch-batch N]
 *
 * --batch: by default what the CLI would choose (the memory budget, engine/memory.ts), so that
 * peak memory is the one a user sees at the default settings; the naive loop and PyTorch use
 * the same batch. --torchvision NAME: the model is torchvision's NAME with seed-0 weights (as
 * fixtures/export_resnet50.py --model NAME exports it) and --data a folder of model-sized
 * images, which PyTorch decodes with PIL. --torch-batch: PyTorch's own batch, for a PyTorch
 * whose speed an image depends on the batch (Debian's 1.13 on a Zen 5 EPYC, 2026-12-02, one
 * thread, resnet50 at 224x224: 0.22 s CPU an image at batch 8, 0.41 at 16, 0.58 at 32, 0.75 at
 * 92; onnxruntime 0.074-0.079 at all of them), so that it is compared at its best.
 *
 * --device runs the onnxruntime methods on webgpu or cuda (scripts/device-check.sh compares
 * their counts with the CPU's).
 *
 * Seconds run from after module loading to the last batch: opening the network (structure
 * detection, shape probe), the data, every ORT session created, every forward. Peak RSS is
 * the child's process.resourceUsage().maxRSS (ru_maxrss for Python). Exit status 1 when the
 * error counts disagree beyond tolerance, 2 on a usage or run failure.
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import Table from 'cli-table3';
import { benchMain, CountingRuntime, DEFAULT_MODEL, machine, positive, PYTHON, runJson, torchMissing, UsageError } from './common.js';
import { openDataFor } from '../src/commands/common.js';
import { Engine, predictedClass } from '../src/engine/engine.js';
import { unitInfo } from '../src/studies/network.js';
import { chooseBatch } from '../src/engine/memory.js';
import { openNetwork } from '../src/engine/network.js';
import { onnxruntimeVersion, type Device } from '../src/engine/session.js';
import { DELETE, exportProgram, intactProgram, unitCount, type Program } from '../src/surgery/split.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const DEFAULT_DATA = '/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz';
const METHODS = ['engine', 'naive', 'torch'] as const;
type Method = (typeof METHODS)[number];

/** What each child reports (one JSON line on stdout). */
interface MethodResult {
  method: Method;
  seconds: number;
  /** Opening the network and the data (node methods); reading model, weights and data (torch). */
  setupSeconds: number;
  /** Images per batch (the engine's choice when --batch is not given). */
  batch?: number;
  /** ORT sessions created and the seconds spent creating them (node methods). */
  sessions?: number;
  sessionSeconds?: number;
  configs: string[];
  correct: number[];
  total: number;
  peakRssMb: number;
  threads: number;
  // engine only: what the parent needs to know about the network and data.
  units?: number[];
  blocks?: number;
  arch?: string;
  data?: string;
  onnxruntime?: string;
  torch?: string;
}

interface Args {
  method?: Method;
  model: string;
  data: string;
  limit?: number;
  /** null: the engine's default (the memory budget's). */
  batch: number | null;
  /** PyTorch's batch (default: the engine's). */
  torchBatch: number | null;
  threads: number;
  device: Device;
  methods: Method[];
  json?: string;
  weights?: string;
  torchvision: string | null;
  python: string;
}

function parse(): Args {
  const { values } = parseArgs({
    options: {
      method: { type: 'string' },
      model: { type: 'string', default: DEFAULT_MODEL },
      data: { type: 'string', default: DEFAULT_DATA },
      limit: { type: 'string' },
      batch: { type: 'string' },
      'torch-batch': { type: 'string' },
      torchvision: { type: 'string' },
      threads: { type: 'string', default: String(os.cpus().length) },
      methods: { type: 'string', default: METHODS.join(',') },
      device: { type: 'string', default: 'cpu' },
      json: { type: 'string' },
      weights: { type: 'string' },
      python: { type: 'string', default: PYTHON },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(
      'node --import tsx bench/lesion.ts [--model M.onnx] [--data IDX] [--limit N] [--batch N] [--threads N]\n' +
        '  [--methods engine,naive,torch] [--device cpu|webgpu|cuda] [--weights M.pt] [--torchvision NAME] [--torch-batch N] [--python /usr/bin/python3] [--json FILE]\n',
    );
    process.exit(0);
  }
  const methods = values.methods!.split(',').map((m) => m.trim()).filter(Boolean);
  for (const m of methods) if (!(METHODS as readonly string[]).includes(m)) throw new UsageError(`--methods: '${m}' is not one of ${METHODS.join(', ')}`);
  if (!methods.includes('engine')) throw new UsageError('--methods: engine (reslens) is the reference and must be included');
  if (values.method !== undefined && values.method !== 'engine' && values.method !== 'naive') throw new UsageError(`--method: '${values.method}' is not engine or naive`);
  if (!['cpu', 'webgpu', 'cuda'].includes(values.device!)) throw new UsageError(`--device: '${values.device}' is not cpu, webgpu or cuda`);
  return {
    method: values.method as Method | undefined,
    device: values.device as Device,
    model: path.resolve(values.model!),
    data: path.resolve(values.data!),
    limit: positive('limit', values.limit),
    batch: values.batch === undefined ? null : positive('batch', values.batch)!,
    torchBatch: positive('torch-batch', values['torch-batch']) ?? null,
    torchvision: values.torchvision ?? null,
    threads: positive('threads', values.threads!),
    methods: methods as Method[],
    json: values.json,
    weights: values.weights,
    python: values.python!,
  };
}

// ---------------------------------------------------------------- children (engine, naive)

/** Correct predictions in one batch, scored as the engine scores them. */
function countCorrect(logits: Float32Array, labels: Int32Array, n: number): number {
  const k = logits.length / n;
  let correct = 0;
  for (let i = 0; i < n; i++) if (predictedClass(logits, i, k) === labels[i]) correct++;
  return correct;
}

function progress(line: string): void {
  if (process.stderr.isTTY) process.stderr.write(`\r${line}\x1b[K`);
}

async function child(args: Args): Promise<MethodResult> {
  const method = args.method!;
  const t0 = performance.now();
  const rt = new CountingRuntime({ threads: args.threads, device: args.device });
  try {
    const net = await openNetwork(rt, args.model);
    const data = await openDataFor(net, { data: args.data, limit: args.limit });
    const batch = args.batch ?? chooseBatch(net, args.device).batch;
    const setupSeconds = (performance.now() - t0) / 1000;
    const n = unitCount(net.structure);
    const units = unitInfo(net).filter((u) => u.deletable).map((u) => u.unit);
    const programs: Program[] = [intactProgram(n)];
    for (const u of units) {
      const p = intactProgram(n);
      p.modes[u] = DELETE;
      programs.push(p);
    }
    const configs = ['intact', ...units.map((u) => `delete ${u}`)];
    let correct: number[];
    if (method === 'engine') {
      const engine = new Engine(rt, net);
      const res = await engine.evaluate(programs, data, {
        batch,
        cache: true,
        onProgress: (done, total) => progress(`engine: ${done}/${total} images`),
      });
      correct = res.map((r) => r.correct);
    } else {
      correct = [];
      for (const [i, p] of programs.entries()) {
        progress(`naive: configuration ${i + 1}/${programs.length}`);
        const session = await rt.create(exportProgram(net.model.proto, net.graph, net.structure, p), configs[i]!);
        let c = 0;
        try {
          for await (const b of data.batches(batch)) {
            const out = await session.run({ [net.input]: { data: b.images, dims: [b.n, ...data.shape] } }, [net.output]);
            c += countCorrect(out[net.output]!.data as Float32Array, b.labels, b.n);
          }
        } finally {
          await session.release();
        }
        correct.push(c);
      }
    }
    progress('');
    const seconds = (performance.now() - t0) / 1000;
    const result: MethodResult = {
      method,
      seconds,
      setupSeconds,
      batch,
      sessions: rt.count,
      sessionSeconds: rt.seconds,
      configs,
      correct,
      total: data.size,
      peakRssMb: process.resourceUsage().maxRSS / 1024,
      threads: args.threads,
      units,
      blocks: n,
      arch: net.model.metadata['reslens.model'] ?? path.basename(args.model, '.onnx'),
      data: data.description,
      onnxruntime: await onnxruntimeVersion(),
    };
    await data.close();
    return result;
  } finally {
    await rt.close();
  }
}

// ---------------------------------------------------------------- parent

function nodeChild(method: 'engine' | 'naive', a: Args): Promise<MethodResult> {
  const argv = ['--import', 'tsx', fileURLToPath(import.meta.url), '--method', method, '--model', a.model, '--data', a.data, '--threads', String(a.threads), '--device', a.device];
  if (a.batch) argv.push('--batch', String(a.batch));
  if (a.limit) argv.push('--limit', String(a.limit));
  return runJson(process.execPath, argv) as Promise<MethodResult>;
}

interface TorchJson {
  seconds: number;
  data_seconds: number;
  errors: number[];
  correct: number[];
  total: number;
  configs: string[];
  peak_rss_mb: number;
  threads: number;
  torch: string;
}

async function torchChild(a: Args, ref: MethodResult, weights: string): Promise<MethodResult> {
  const model = a.torchvision ? ['--torchvision', a.torchvision] : ['--arch', ref.arch!, '--weights', weights];
  const argv = [path.join(HERE, 'torch_lesion.py'), ...model, '--data', a.data, '--batch', String(a.torchBatch ?? ref.batch), '--threads', String(a.threads), '--blocks', ref.units!.join(',')];
  if (a.limit) argv.push('--limit', String(a.limit));
  const r = (await runJson(a.python, argv)) as TorchJson;
  return { method: 'torch', seconds: r.seconds, setupSeconds: r.data_seconds, configs: r.configs, correct: r.correct, total: r.total, peakRssMb: r.peak_rss_mb, threads: r.threads, torch: r.torch };
}

const LABEL: Record<Method, string> = {
  engine: 'reslens (Engine.evaluate, shared prefixes)',
  naive: 'naive ORT (exportProgram + 1 session per config)',
  torch: 'PyTorch eager (full forward per config)',
};

async function parent(args: Args): Promise<number> {
  let a = args;
  const m = machine();
  process.stderr.write(`running engine (reslens)…\n`);
  const results: MethodResult[] = [];
  const ref = await nodeChild('engine', a);
  results.push(ref);
  // The naive loop and PyTorch run the batch the engine ran (its default: the memory budget's).
  a = { ...a, batch: ref.batch! };
  if (a.methods.includes('naive')) {
    process.stderr.write('running naive ORT loop…\n');
    results.push(await nodeChild('naive', a));
  }
  let torchSkipped: string | null = null;
  const weights = a.weights ? path.resolve(a.weights) : path.join(path.dirname(a.model), '..', 'weights', `${ref.arch}.pt`);
  if (a.methods.includes('torch')) {
    torchSkipped = torchMissing(a.python, a.torchvision ? null : weights);
    if (torchSkipped) {
      process.stderr.write(`torch: skipped (${torchSkipped})\n`);
    } else {
      process.stderr.write('running PyTorch eager…\n');
      results.push(await torchChild(a, ref, weights));
    }
  }

  const n = ref.total;
  const wrong = (r: MethodResult) => r.correct.map((c) => r.total - c);
  // Tolerances in images: PyTorch 2 per 10,000 (other kernels, other rounding); the naive
  // loop runs the same ORT kernels on the same graph, so only a float-rounding flip (at most
  // 1 per 10,000) is tolerated.
  const tolerance: Record<Method, number> = { engine: 0, naive: Math.ceil(n / 10000), torch: Math.ceil((2 * n) / 10000) };
  const agreement: { method: Method; maxDiff: number; worst: string; tolerance: number; ok: boolean }[] = [];
  for (const r of results.slice(1)) {
    if (r.configs.length !== ref.configs.length || r.total !== n) throw new Error(`${r.method}: ${r.configs.length} configurations on ${r.total} images, reslens ${ref.configs.length} on ${n}`);
    const w = wrong(r);
    const wr = wrong(ref);
    let maxDiff = 0;
    let worst = ref.configs[0]!;
    w.forEach((v, i) => {
      const d = Math.abs(v - wr[i]!);
      if (d > maxDiff) [maxDiff, worst] = [d, ref.configs[i]!];
    });
    agreement.push({ method: r.method, maxDiff, worst, tolerance: tolerance[r.method], ok: maxDiff <= tolerance[r.method] });
  }

  const torchVersion = results.find((r) => r.method === 'torch')?.torch;
  const lines = [
    `model        ${path.relative(process.cwd(), a.model)} (${ref.blocks} blocks)`,
    `data         ${ref.data} (batch ${a.batch}${a.torchBatch && a.methods.includes('torch') ? `; PyTorch batch ${a.torchBatch}` : ''})`,
    `configs      ${ref.configs.length} (intact + ${ref.configs.length - 1} single-block deletions)`,
    `threads      ${a.threads} (ORT intra-op${torchVersion ? ', torch.set_num_threads' : ''}; inter-op 1)`,
    `machine      ${m.line}`,
    `onnxruntime  ${ref.onnxruntime}${torchVersion ? `; torch ${torchVersion}` : ''}; node ${process.version}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
  const t = new Table({
    head: ['method', 'seconds', 'reslens speedup', 'peak RSS MB', 'ORT sessions', 'max Δ wrong vs reslens'],
    colAligns: ['left', 'right', 'right', 'right', 'right', 'right'],
    style: process.stdout.isTTY ? {} : { head: [], border: [] },
  });
  for (const r of results) {
    const ag = agreement.find((x) => x.method === r.method);
    t.push([
      LABEL[r.method],
      r.seconds.toFixed(2),
      r === ref ? '1.00×' : `${(r.seconds / ref.seconds).toFixed(2)}×`,
      r.peakRssMb.toFixed(0),
      r.sessions === undefined ? '—' : `${r.sessions} (${r.sessionSeconds!.toFixed(2)} s)`,
      ag ? `${ag.maxDiff}${ag.maxDiff ? ` (${ag.worst})` : ''} ≤ ${ag.tolerance} ${ag.ok ? 'ok' : 'FAIL'}` : '—',
    ]);
  }
  process.stdout.write(t.toString() + '\n');
  const base = ref.configs.length ? ref.total - ref.correct[0]! : 0;
  process.stdout.write(`intact error ${((100 * base) / n).toFixed(2)}% (${base}/${n} wrong); setup (network + data) ${results.filter((r) => r.method !== 'torch').map((r) => `${r.method} ${r.setupSeconds.toFixed(2)} s`).join(', ')}\n`);
  if (torchSkipped) process.stdout.write(`torch: skipped (${torchSkipped})\n`);
  const ok = agreement.every((x) => x.ok);
  if (!ok) {
    const why = agreement.filter((x) => !x.ok).map((x) => `${x.method} differs by ${x.maxDiff} images at ${x.worst} (tolerance ${x.tolerance})`);
    const torch = results.find((r) => r.method === 'torch');
    const intactOff = torch && Math.abs(torch.correct[0]! - ref.correct[0]!) > tolerance.torch;
    process.stdout.write(`error counts disagree: ${why.join('; ')}\n`);
    if (intactOff) process.stdout.write(`  PyTorch disagrees on the intact network too: are ${path.relative(process.cwd(), weights)} the weights ${path.relative(process.cwd(), a.model)} was exported from?\n`);
  }

  if (a.json) {
    const out = {
      model: a.model,
      data: a.data,
      dataDescription: ref.data,
      size: n,
      batch: a.batch,
      torchBatch: a.torchBatch ?? a.batch,
      threads: a.threads,
      configurations: ref.configs.length,
      machine: { cpu: m.cpu, cores: m.cores, platform: m.platform, loadAverageAtStart: m.load },
      versions: { onnxruntime: ref.onnxruntime, node: process.version, torch: torchVersion ?? null },
      torchSkipped,
      methods: results.map((r) => ({ ...r, wrong: wrong(r), speedupOfReslens: r.seconds / ref.seconds })),
      agreement,
      ok,
    };
    writeFileSync(a.json, JSON.stringify(out, null, 2) + '\n');
    process.stdout.write(`wrote ${a.json}\n`);
  }
  return ok ? 0 : 1;
}

await benchMain('bench/lesion.ts', parse, (a) => (a.method ? `--method ${a.method}` : undefined), child, parent);
