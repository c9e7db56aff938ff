/**
 * What every command shares, as a user meets it: the default model, what goes to stderr
 * (device line, --quiet, --verbose, --progress json), the top-level help, hints that name a
 * fix that works, and answers that print only what was asked.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { Command } from 'commander';
import { registerCommands } from '../src/commands/index.js';
import { DEFAULT_MODEL } from '../src/commands/common.js';
import { kChart } from '../src/commands/lesion.js';
import { openDataset } from '../src/loader/data/index.js';
import { openNetwork } from '../src/engine/network.js';
import { Runtime } from '../src/engine/session.js';
import { EngineBackend } from '../src/ui/explore/backend.js';
import { ExploreController } from '../src/ui/explore/controller.js';
import { writeNpy } from './helpers/npy.js';

const CLI = path.resolve('dist/cli.js');
const R20 = 'fixtures/models/resnet20.onnx';
const dir = mkdtempSync(path.join(os.tmpdir(), 'reslens-commands-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function run(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1', ...env } });
  return { code: r.status, out: r.stdout, err: r.stderr, lines: r.stderr.split('\n').filter((l) => l.length) };
}

// A small lesion run: 64 images, one k, no sweep.
const SMALL = ['lesion', R20, '--limit', '64', '--no-single', '--k', '1', '--samples', '1'];

test('one default model: every optional MODEL is resnet56, the npm start model', () => {
  const program = new Command();
  registerCommands(program);
  const defaults = new Map<string, unknown>();
  for (const cmd of program.commands) {
    for (const a of cmd.registeredArguments) if (a.name() === 'model' && !a.required) defaults.set(cmd.name(), a.defaultValue);
  }
  assert.deepEqual([...defaults.keys()].sort(), ['explore', 'gradients', 'lesion', 'paths', 'report']);
  for (const [name, d] of defaults) assert.equal(d, DEFAULT_MODEL, `${name}'s default`);
  assert.equal(path.basename(DEFAULT_MODEL), 'resnet56.onnx');
  assert.ok(existsSync(DEFAULT_MODEL));
  const start = (JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: { start: string } }).scripts.start;
  assert.equal(path.resolve(/\s(\S+\.onnx)/.exec(start)![1]!), DEFAULT_MODEL, 'npm start runs the same model');
  // And a command run without one uses it.
  const p = run(['paths']);
  assert.equal(p.code, 0, p.err);
  assert.match(p.out, /resnet56\.onnx: 27 residual blocks/);
  assert.match(run(['lesion', '--help']).out, /\(default: "?fixtures\/models\/resnet56\.onnx"?\)/);
});

test('stderr: one short device line, the reasons only under --verbose', () => {
  const plain = run([...SMALL, '--device', 'auto']);
  assert.equal(plain.code, 0, plain.err);
  // The data line (which names the data file, so its length is the user's) may come first.
  const device = plain.lines.filter((l) => l.startsWith('device'));
  assert.equal(device.length, 1, plain.err);
  assert.match(device[0]!, /^device: (cpu|webgpu|cuda)$/);
  const verbose = run([...SMALL, '--device', 'auto', '--verbose']);
  assert.equal(verbose.code, 0, verbose.err);
  assert.ok(verbose.lines.includes(device[0]!), verbose.err);
  if (device[0] === 'device: cpu') {
    // auto passed over cuda and webgpu here: --verbose says why, the plain run does not.
    assert.match(verbose.err, /passed over cuda: .+/);
    assert.match(verbose.err, /passed over webgpu: .+/);
    assert.doesNotMatch(plain.err, /passed over/);
  }
});

test('--quiet: nothing on stderr but errors; the result still goes where it was asked', () => {
  const file = path.join(dir, 'quiet.json');
  const q = run([...SMALL, '--quiet', '--json', file]);
  assert.equal(q.code, 0, q.err);
  assert.equal(q.err, '');
  assert.equal(JSON.parse(readFileSync(file, 'utf8')).command, 'lesion');
  const table = run([...SMALL, '--quiet']);
  assert.equal(table.err, '');
  assert.match(table.out, /baseline error/);
  const bad = run([...SMALL, '--quiet', '--json', file]);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /^reslens: .*already exists/);
  for (const c of ['inspect', 'lesion', 'export', 'paths', 'gradients', 'report', 'merge', 'explore']) {
    assert.match(run([c, '--help']).out, /-q, --quiet[\s\S]*--progress <mode>/, `${c} takes the stderr flags`);
  }
});

test('--progress json: every stderr line is one JSON object; progress has phase, done, total, elapsed', () => {
  const r = run([...SMALL, '--progress', 'json', '--batch', '16']);
  assert.equal(r.code, 0, r.err);
  const objs = r.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  const prog = objs.filter((o) => 'phase' in o);
  assert.deepEqual(Object.keys(prog[0]!).sort(), ['done', 'elapsed', 'phase', 'total']);
  assert.ok(prog.every((o) => o.phase === 'lesion' && o.total === 64 && typeof o.elapsed === 'number'));
  const done = prog.map((o) => o.done as number);
  assert.equal(done[0], 0);
  assert.equal(done[done.length - 1], 64);
  assert.ok(done.every((d, i) => i === 0 || d >= done[i - 1]!), `done only grows: ${done}`);
  // The other lines are notes, as JSON too: the data line and the device among them.
  const notes = objs.filter((o) => !('phase' in o));
  assert.ok(notes.every((o) => Object.keys(o).join() === 'note' && typeof o.note === 'string'), r.err);
  assert.ok(notes.some((o) => /^device: \w+$/.test(String(o.note))), r.err);
  assert.ok(notes.some((o) => /^data: IDX /.test(String(o.note))), r.err);
});

test('pointers to a README section name one that exists', () => {
  const readme = readFileSync('README.md', 'utf8');
  const headings = new Set([...readme.matchAll(/^#+\s+(.+)$/gm)].map((m) => m[1]!.trim()));
  const src = spawnSync('grep', ['-rhoE', 'README, "[^"]+"', 'src'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
  assert.ok(src.length > 0, 'the device probe points to the README');
  for (const p of src) {
    const name = /"([^"]+)"/.exec(p)![1]!;
    assert.ok([...headings].some((h) => h === name || h.startsWith(`${name} `)), `README has no section "${name}"`);
  }
});

test('top-level --help: the description is one line at 60, 80 and 200 columns', () => {
  for (const columns of ['60', '80', '200']) {
    const h = run(['--help'], { COLUMNS: columns });
    assert.equal(h.code, 0);
    const lines = h.out.split('\n');
    assert.match(lines[0]!, /^Usage: reslens/);
    assert.equal(lines[1], '');
    assert.match(lines[2]!, /^\S.*\(Veit et al\. 2016\)$/, `COLUMNS=${columns}: ${lines[2]}`);
    assert.equal(lines[3], '', `COLUMNS=${columns}: the description goes on: ${lines[3]}`);
    assert.ok(lines[2]!.length <= 60);
  }
});

test('hints: colour images for a 1-channel model say so, not "pass --size", with or without --size', () => {
  const N = 8;
  writeNpy(path.join(dir, 'x.npy'), '|u1', [N, 28, 28, 3], new Uint8Array(N * 28 * 28 * 3).fill(100));
  writeNpy(path.join(dir, 'y.npy'), '|u1', [N], new Uint8Array(N));
  for (const extra of [[], ['--size', '28,28']]) {
    const r = run(['lesion', R20, '--data', path.join(dir, 'x.npy'), '--no-single', ...extra]);
    assert.equal(r.code, 2, r.err);
    assert.deepEqual(r.lines.filter((l) => !/^device: /.test(l)).length, 1, r.err);
    assert.match(r.lines[r.lines.length - 1]!, /x\.npy: images are 3x28x28 but the model takes 1x28x28 \(3 channels, colour against 1 channel, grayscale\); use the data set the model was trained on/);
    assert.doesNotMatch(r.err, /--size/);
  }
  // A size mismatch names the size that would fit.
  mkdirSync(path.join(dir, 'small'));
  writeNpy(path.join(dir, 'small', 'x.npy'), '|u1', [N, 1, 20, 20], new Uint8Array(N * 400));
  writeNpy(path.join(dir, 'small', 'y.npy'), '|u1', [N], new Uint8Array(N));
  const s = run(['lesion', R20, '--data', path.join(dir, 'small', 'x.npy'), '--no-single']);
  assert.equal(s.code, 2);
  assert.match(s.err, /images are 1x20x20 but the model takes 1x28x28; use 28x28 images, .*--size 20,20 if the model takes any input size/);
});

test('--k names the eligible count, and that bound works', () => {
  const r = run(['lesion', R20, '--k', '99']);
  assert.equal(r.code, 2);
  assert.match(r.err, /--k: '99' is outside 1-7 \(7 of 9 blocks are eligible for k-subsets; downsampling blocks stay, --include-downsampling adds them\)/);
  assert.equal(run(['lesion', R20, '--k', '8', '--limit', '8']).code, 2);
  const ok = run(['lesion', R20, '--k', '7', '--samples', '1', '--limit', '16', '--no-single', '--json']);
  assert.equal(ok.code, 0, ok.err);
  assert.equal(JSON.parse(ok.out).k[0].k, 7);
  assert.match(run(['lesion', R20, '--k', '99', '--include-downsampling']).err, /outside 1-9 \(9 of 9 blocks are eligible/);
});

test('--delete 3,7 prints its one answer, not the single-block sweep (--single adds it)', () => {
  const r = run(['lesion', R20, '--delete', '3,7', '--limit', '64']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /blocks 3,7 deleted: error \d+\.\d\d% \([+-]\d+\.\d\d pts\)/);
  assert.doesNotMatch(r.out, /error with one block/);
  assert.equal(r.out.trim().split('\n').length, 4, r.out); // title, baseline, blank, the answer
  const both = run(['lesion', R20, '--delete', '3,7', '--limit', '64', '--single', '--json']);
  assert.equal(JSON.parse(both.out).single.length, 9);
});

test("lesion's chart spaces k by its value", () => {
  const chart = kChart([0, 1, 2, 4, 8, 12].map((k) => ({ k, error: k / 20 })));
  const axis = chart.split('\n').pop()!;
  const at = (k: number) => axis.search(new RegExp(`(?<=\\s)${k}(?!\\d)`));
  const [c0, c1, c2, c4, c8, c12] = [0, 1, 2, 4, 8, 12].map(at);
  assert.ok(c0! > 0 && c1! > c0!, axis);
  const unit = c1! - c0!;
  assert.equal(c2! - c0!, 2 * unit, axis);
  assert.equal(c4! - c0!, 4 * unit, axis);
  assert.equal(c8! - c0!, 8 * unit, axis);
  assert.equal(c12! - c0!, 12 * unit, axis);
  // The line rises steadily: its top row is reached only at the last column.
  const top = chart.split('\n')[0]!;
  assert.ok(top.trimEnd().length >= c12!, chart);
  // A mean one row above the baseline is drawn above it (resnet56, npm start: k = 2 at 13.64%
  // against a 5.40% baseline was drawn on the baseline's row).
  const bump = kChart([{ k: 0, error: 0.054 }, { k: 1, error: 0.066 }, { k: 2, error: 0.1364 }, { k: 4, error: 0.0768 }, { k: 8, error: 0.4672 }, { k: 12, error: 0.8014 }]);
  const rows = bump.split('\n');
  const base = rows[rows.length - 2]!;
  const k2 = at(2) - c0! + base.indexOf('┼') + 1;
  assert.equal(base[k2], ' ', `k = 2 is above the baseline row:\n${bump}`);
});

test("export drops the source's measured accuracy and keeps reslens.survival in step with the blocks", () => {
  const out = path.join(dir, 'sd-no0-no5.onnx');
  const e = run(['export', 'fixtures/models/sd56.onnx', '--delete', '0,5', '-o', out]);
  assert.equal(e.code, 0, e.err);
  const meta = (f: string) => JSON.parse(run(['inspect', f, '--json']).out).model.metadata as Record<string, string>;
  const [src, got] = [meta('fixtures/models/sd56.onnx'), meta(out)];
  assert.ok(src['reslens.test_accuracy'], 'the source states its accuracy');
  assert.equal(got['reslens.test_accuracy'], undefined);
  assert.equal(got['reslens.dataset'], src['reslens.dataset']);
  const q = src['reslens.survival']!.split(',');
  assert.deepEqual(got['reslens.survival']!.split(','), q.filter((_, i) => i !== 0 && i !== 5));
  const p = run(['paths', out, '--json']);
  assert.equal(p.code, 0, p.err);
  assert.equal(JSON.parse(p.out).n, 25);
  const r20 = path.join(dir, 'r20.onnx');
  assert.equal(run(['export', R20, '--delete', '1', '-o', r20]).code, 0);
  assert.equal(meta(r20)['reslens.test_accuracy'], undefined);
});

test("explore's saved JSON: errors from the counts, no float noise", async () => {
  const rt = new Runtime({ threads: 1 });
  const net = await openNetwork(rt, R20);
  const data = await openDataset('fixtures/data/t10k-images-idx3-ubyte', {
    preprocess: { mean: net.preprocessing.mean, std: net.preprocessing.std, size: [28, 28], channels: 1 },
    limit: 100,
  });
  const controller = new ExploreController(new EngineBackend({ rt, net, data, outDir: dir, batch: 50 }));
  try {
    controller.start({ sweep: true, ensemble: false });
    const t0 = Date.now();
    while (controller.getState().jobs.sweep.status !== 'done') {
      assert.ok(Date.now() - t0 < 60000, 'the sweep finishes');
      await new Promise((r) => setTimeout(r, 50));
    }
    const doc = controller.stateDocument() as { baselineError: number; singleBlockError: number[] };
    const errors = [doc.baselineError, ...doc.singleBlockError];
    assert.equal(errors.length, 10);
    // 100 images: every error is a whole number of hundredths, and prints as one.
    for (const e of errors) assert.ok(String(e).length <= 4, `${e} as saved`);
    assert.ok(errors.some((e) => e > 0.05));
  } finally {
    await controller.close();
    await data.close();
    await rt.close();
  }
});
