/**
 * Fuzzing with fast-check: damaged models and data files, and random flag values, must give a
 * valid result or a UserError (a one-line message, exit 2) — never another exception.
 * FUZZ_RUNS sets the number of cases (npm run fuzz: 10,000; the normal suite: 500).
 */
import assert from 'node:assert/strict';
import { readFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import fc from 'fast-check';
import { formatBlockList, parseBlockList } from '../src/blocklist.js';
import { UserError } from '../src/errors.js';
import { openDataset } from '../src/loader/data/index.js';
import { modelFromBytes, modelIO } from '../src/loader/model.js';
import { decodeModel, encodeModel } from '../src/loader/proto.js';
import { structureOf } from '../src/engine/network.js';
import { inferShapes } from '../src/surgery/shapes.js';
import { parseMode } from '../src/studies/lesion.js';
import { buildNet } from './helpers/build.js';
import { writeNpy } from './helpers/npy.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 500);
const dir = mkdtempSync(path.join(os.tmpdir(), 'reslens-fuzz-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const model = encodeModel(buildNet({ blocks: [{ cout: 4 }, { cout: 8, stride: 2 }, { cout: 8, act: 'pre' }], size: 8 }));
const idxImages = readFileSync('fixtures/data/t10k-images-idx3-ubyte').subarray(0, 16 + 784 * 20);
const idxLabels = readFileSync('fixtures/data/t10k-labels-idx1-ubyte').subarray(0, 8 + 20);

/**
 * A damaged copy: truncated, bits flipped, bytes overwritten, or a run duplicated (length fields).
 * `src` is copied first: a Buffer's slice() is a view, and flipping bits in it damaged the
 * original for every later case.
 */
const damage = (buf: Uint8Array) => {
  const src = Uint8Array.from(buf);
  return fc.oneof(
    fc.nat({ max: src.length - 1 }).map((n) => src.slice(0, n)),
    fc.array(fc.tuple(fc.nat({ max: src.length - 1 }), fc.nat({ max: 7 })), { minLength: 1, maxLength: 8 }).map((flips) => {
      const b = src.slice();
      for (const [i, bit] of flips) b[i]! ^= 1 << bit;
      return b;
    }),
    fc.array(fc.tuple(fc.nat({ max: src.length - 1 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }).map((sets) => {
      const b = src.slice();
      for (const [i, v] of sets) b[i] = v;
      return b;
    }),
    fc.tuple(fc.nat({ max: src.length - 1 }), fc.nat({ max: 64 })).map(([i, n]) => Uint8Array.from([...src.subarray(0, i), ...src.subarray(i, i + n), ...src.subarray(i)])),
  );
};

function userErrorOr<T>(f: () => T): T | UserError {
  try {
    return f();
  } catch (e) {
    if (e instanceof UserError) {
      assert.ok(!e.message.includes('\n'), `one line: ${e.message}`);
      return e;
    }
    throw e;
  }
}

test(`damaged models: loaded and analysed, or refused with a UserError (${RUNS} cases)`, () => {
  fc.assert(
    fc.property(damage(model), (bytes) => {
      const m = userErrorOr(() => modelFromBytes(bytes, 'fuzz.onnx'));
      if (m instanceof UserError) return;
      userErrorOr(() => {
        const io = modelIO(m);
        const { graph } = structureOf(m);
        inferShapes(graph, [1, 1, 8, 8]);
        return io;
      });
    }),
    { numRuns: RUNS, seed: 42 },
  );
});

test('a damaged opset domain ("\\b\\n", found by npm run fuzz at case 6,551 of seed 42) is refused in one printable line', () => {
  const m = decodeModel(model);
  m.opsetImport = [...(m.opsetImport ?? []), { domain: '\b\n', version: 1 }];
  const e = userErrorOr(() => modelFromBytes(encodeModel(m), 'fuzz.onnx'));
  assert.ok(e instanceof UserError);
  assert.match(e.message, /custom operator domain '\\x08\\n'/);
});

test(`damaged IDX files: read, or refused with a UserError (${Math.ceil(RUNS / 5)} cases)`, async () => {
  let i = 0;
  await fc.assert(
    fc.asyncProperty(damage(idxImages), damage(idxLabels), async (img, lab) => {
      const base = path.join(dir, `case${i++}`);
      writeFileSync(`${base}-images-idx3-ubyte`, img);
      writeFileSync(`${base}-labels-idx1-ubyte`, lab);
      try {
        const data = await openDataset(`${base}-images-idx3-ubyte`, { preprocess: { mean: [0.5], std: [0.5], size: [28, 28], channels: 1 } });
        try {
          for await (const b of data.batches(7)) assert.equal(b.images.length, b.n * 784);
        } finally {
          await data.close();
        }
      } catch (e) {
        if (!(e instanceof UserError)) throw e;
      } finally {
        rmSync(`${base}-images-idx3-ubyte`, { force: true });
        rmSync(`${base}-labels-idx1-ubyte`, { force: true });
      }
    }),
    { numRuns: Math.ceil(RUNS / 5), seed: 7 },
  );
});

test(`random flag values: parsed, or refused with a UserError (${RUNS} cases)`, () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 20 }), fc.integer({ min: 0, max: 2000 }), (s, max) => {
      const list = userErrorOr(() => parseBlockList(s, '--delete', max));
      if (!(list instanceof UserError)) {
        assert.ok(list.every((v) => Number.isInteger(v) && v >= 0 && v <= max));
        // What formatBlockList writes reads back as the same list.
        assert.deepEqual(parseBlockList(formatBlockList(list), '--delete', max), list);
      }
      userErrorOr(() => parseMode(s));
    }),
    { numRuns: RUNS, seed: 3 },
  );
});

test(`the CLI on damaged models with random flags: exit 0 or 2, one line, no hang (${Math.ceil(RUNS / 25)} cases)`, async () => {
  const { spawnSync } = await import('node:child_process');
  const good = buildNet({ blocks: [{ cout: 4 }, { cout: 4 }], size: 8 });
  good.metadataProps = [{ key: 'reslens.input_size', value: '8,8' }];
  const src = encodeModel(good);
  writeNpy(path.join(dir, 'x.npy'), '|u1', [16, 8, 8], new Uint8Array(16 * 64).fill(100));
  writeNpy(path.join(dir, 'y.npy'), '|u1', [16], Uint8Array.from({ length: 16 }, (_, i) => i % 10));
  const flag = fc.oneof(
    fc.constantFrom(['--k', '1'], ['--k', '0'], ['--k', '1,2'], ['--samples', '2'], ['--delete', '0'], ['--delete', '5-1'], ['--mode', 'mean'], ['--mode', 'scale:0.5'], ['--mode', 'scale:x'], ['--limit', '5'], ['--batch', '0'], ['--batch', '3'], ['--seed', '-1'], ['--reorder'], ['--swaps', '2'], ['--size', '8,8'], ['--size', 'a'], ['--mean', '0.5'], ['--std', '0'], ['--threads', '1']),
    fc.tuple(fc.constantFrom('--k', '--delete', '--limit', '--batch', '--mode', '--size', '--std'), fc.string({ maxLength: 8 })).map(([f, v]) => [f, v]),
  );
  await fc.assert(
    fc.asyncProperty(fc.oneof(fc.constant(src), damage(src)), fc.array(flag, { maxLength: 4 }), async (bytes, flags) => {
      const file = path.join(dir, 'cli-case.onnx');
      writeFileSync(file, bytes);
      const r = spawnSync(process.execPath, ['dist/cli.js', 'lesion', file, '--data', path.join(dir, 'x.npy'), '--device', 'cpu', '--no-single', ...flags.flat()], { encoding: 'utf8', timeout: 60000 });
      assert.notEqual(r.signal, 'SIGTERM', `hang: ${flags.flat().join(' ')}`);
      assert.ok(r.status === 0 || r.status === 2, `exit ${r.status} for ${flags.flat().join(' ')}: ${r.stderr}`);
      if (r.status === 2) assert.equal(r.stderr.trim().split('\n').filter((l) => l.startsWith('reslens:') || l.startsWith('error:')).length >= 1, true, r.stderr);
    }),
    { numRuns: Math.ceil(RUNS / 25), seed: 11, includeErrorInReport: true },
  );
});

test(`external data through links, devices, FIFOs and odd offsets: inlined from inside the folder, or refused (${RUNS} cases)`, async () => {
  const { mkdirSync, realpathSync, symlinkSync } = await import('node:fs');
  const { spawnSync } = await import('node:child_process');
  const { decodeModel } = await import('../src/loader/proto.js');
  const home = path.join(dir, 'ext-model');
  const outside = path.join(dir, 'ext-outside');
  mkdirSync(path.join(home, 'sub'), { recursive: true });
  mkdirSync(outside, { recursive: true });
  const m = decodeModel(model);
  const w = [...m.graph!.initializer!].sort((a, b) => (b.rawData?.byteLength ?? 0) - (a.rawData?.byteLength ?? 0))[0]!;
  const bytes = Buffer.from(w.rawData!);
  writeFileSync(path.join(home, 'w.bin'), Buffer.concat([bytes, bytes]));
  writeFileSync(path.join(outside, 'w.bin'), Buffer.concat([bytes, bytes]));
  symlinkSync(path.join(outside, 'w.bin'), path.join(home, 'out.bin'));
  symlinkSync(outside, path.join(home, 'linkdir'));
  symlinkSync('/dev/zero', path.join(home, 'zero.bin'));
  symlinkSync('/dev/null', path.join(home, 'null.bin'));
  symlinkSync('w.bin', path.join(home, 'inside.bin'));
  symlinkSync('loop.bin', path.join(home, 'loop.bin'));
  symlinkSync('../w.bin', path.join(home, 'sub', 'up.bin'));
  assert.equal(spawnSync('mkfifo', [path.join(home, 'fifo.bin')]).status, 0);
  const realHome = realpathSync(home);
  const location = fc.oneof(
    fc.constantFrom('w.bin', 'out.bin', 'linkdir/w.bin', 'zero.bin', 'null.bin', 'inside.bin', 'loop.bin', 'fifo.bin', 'sub', 'sub/up.bin', 'sub/../w.bin',
      '../ext-outside/w.bin', '/etc/passwd', '', '.', 'missing.bin', 'w.bin\u0000x', `w.bin${'\u001b'}[2J`),
    fc.string({ maxLength: 12 }),
  );
  const count = fc.option(fc.oneof(fc.nat({ max: 2 * bytes.length + 8 }).map(String), fc.constantFrom('-1', 'abc', '1e309', '0x10', '9007199254740993', ''), fc.string({ maxLength: 6 })), { nil: undefined });
  fc.assert(
    fc.property(location, count, count, (loc, offset, length) => {
      const t = decodeModel(model);
      const x = t.graph!.initializer!.find((i) => i.name === w.name)!;
      x.dataLocation = 1;
      x.rawData = new Uint8Array(0);
      x.externalData = [{ key: 'location', value: loc }];
      if (offset !== undefined) x.externalData.push({ key: 'offset', value: offset });
      if (length !== undefined) x.externalData.push({ key: 'length', value: length });
      const got = userErrorOr(() => modelFromBytes(encodeModel(t), path.join(home, 'm.onnx')));
      if (got instanceof UserError) return;
      // Accepted: read from a regular file inside the folder, exactly the tensor's bytes.
      const inlined = got.proto.graph!.initializer!.find((i) => i.name === w.name)!;
      assert.equal(inlined.rawData!.byteLength, bytes.length);
      assert.ok(realpathSync(path.join(home, loc)).startsWith(realHome + path.sep), `read ${loc} from outside the folder`);
    }),
    { numRuns: RUNS, seed: 19 },
  );
});

/** Strings a hostile model can carry: escapes, bidi overrides, NULs, CR/LF, random bytes. */
const evil = fc.oneof(
  fc.constantFrom('\u001b[2J', '\u001b]0;owned\u0007', '\u009b31m', '\u202eabc', '1,2\r\n3', '\u0000', '0.5', '8,8', '1e400', '-0', 'NaN'),
  fc.string({ unit: 'binary', maxLength: 16 }),
);
const evilKey = fc.constantFrom('reslens.mean', 'reslens.std', 'reslens.input_size', 'reslens.classes', 'reslens.survival', 'reslens.test_accuracy', 'reslens.layout', 'reslens.model', 'reslens.dataset', 'reslens.recipe', 'reslens.architecture', 'reslens.unit', 'other');
const evilEdits = fc.array(fc.tuple(fc.constantFrom('metadata', 'input', 'op', 'node', 'output'), evilKey, evil), { minLength: 1, maxLength: 3 });
// eslint-disable-next-line no-control-regex
const RAW = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

/** The tiny model with hostile strings written into its metadata, an input or output name, an op type or a node name. */
function hostileModel(edits: [string, string, string][]): Uint8Array {
  const m = decodeModel(model);
  m.metadataProps = [{ key: 'reslens.input_size', value: '8,8' }];
  for (const [w, k, v] of edits) {
    if (w === 'metadata') m.metadataProps.push({ key: k, value: v });
    else if (w === 'input') m.graph!.input!.push({ ...m.graph!.input![0]!, name: v });
    else if (w === 'output') m.graph!.output![0]!.name = v;
    else if (w === 'op') m.graph!.node![1]!.opType = v;
    else m.graph!.node![2]!.name = v;
  }
  return encodeModel(m);
}

/** What every run must show: exit 0 or 2, no raw control character, a refusal in one line. */
function assertClean(r: { code: number | null; out: string; err: string }, what: string): void {
  assert.ok(r.code === 0 || r.code === 2, `exit ${r.code} for ${what}: ${r.err}`);
  assert.ok(!RAW.test(r.out) && !RAW.test(r.err), `raw control character printed for ${what}: ${JSON.stringify(r.err)}`);
  if (r.code === 2) assert.equal(r.err.trim().split('\n').length, 1, `${what}: ${r.err}`);
}

test(`hostile metadata, input names and op types: the CLI exits 0 or 2 and never prints a raw control character (${Math.ceil(RUNS / 250)} spawned cases)`, async () => {
  const { spawnSync } = await import('node:child_process');
  await fc.assert(
    fc.asyncProperty(evilEdits, async (edits) => {
      const file = path.join(dir, 'evil.onnx');
      writeFileSync(file, hostileModel(edits));
      const r = spawnSync(process.execPath, ['dist/cli.js', 'inspect', file, '--device', 'cpu'], { encoding: 'utf8', timeout: 60000 });
      assert.notEqual(r.signal, 'SIGTERM', 'hang');
      assertClean({ code: r.status, out: r.stdout, err: r.stderr }, JSON.stringify(edits));
    }),
    { numRuns: Math.ceil(RUNS / 250), seed: 23 },
  );
});

test(`hostile metadata through inspect, paths, lesion and export in one process (${Math.ceil(RUNS / 5)} cases)`, async () => {
  const { spawnSync } = await import('node:child_process');
  const n = Math.ceil(RUNS / 5);
  const cmds = fc.constantFrom('inspect', 'inspect-json', 'paths', 'lesion', 'export');
  const cases = fc.sample(fc.tuple(evilEdits, cmds), { numRuns: n, seed: 29 });
  writeNpy(path.join(dir, 'h.npy'), '|u1', [4, 8, 8], new Uint8Array(4 * 64).fill(90));
  const argv = cases.map(([edits, cmd], i) => {
    const file = path.join(dir, `hostile-${i}.onnx`);
    writeFileSync(file, hostileModel(edits));
    const out = path.join(dir, `hostile-out-${i}`);
    return {
      inspect: ['inspect', file, '--device', 'cpu'],
      'inspect-json': ['inspect', file, '--json', `${out}.json`, '--device', 'cpu'],
      paths: ['paths', file],
      lesion: ['lesion', file, '--data', path.join(dir, 'h.npy'), '--k', '1', '--samples', '1', '--device', 'cpu', '-q'],
      export: ['export', file, '--delete', '0', '-o', `${out}.onnx`, '--device', 'cpu'],
    }[cmd];
  });
  const casesFile = path.join(dir, 'hostile-cases.json');
  const resultsFile = path.join(dir, 'hostile-results.json');
  writeFileSync(casesFile, JSON.stringify(argv));
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'test/helpers/cli-batch.ts', casesFile, resultsFile], { encoding: 'utf8', timeout: 60000 + 2000 * n });
  const stuck = () => readFileSync(`${resultsFile}.progress`, 'utf8').trim();
  assert.notEqual(r.signal, 'SIGTERM', `hang at case ${stuck()}`);
  assert.equal(r.status, 0, `the batch runner died at case ${stuck()}: ${r.stderr}`);
  const results = JSON.parse(readFileSync(resultsFile, 'utf8')) as { code: number | null; out: string; err: string; crash?: string }[];
  assert.equal(results.length, n);
  const codes = { 0: 0, 2: 0 };
  for (const [i, res] of results.entries()) {
    assert.equal(res.crash, undefined, `case ${i} threw past runCli: ${res.crash}`);
    assertClean(res, `${argv[i]!.join(' ')} with ${JSON.stringify(cases[i]![0])}`);
    codes[res.code as 0 | 2]++;
  }
  // Both outcomes occur: a generator that only ever produced refusals would test little.
  assert.ok(codes[0] > 0 && codes[2] > 0, `exit codes ${JSON.stringify(codes)}`);
});
