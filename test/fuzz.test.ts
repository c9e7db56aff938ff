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
import { parseBlockList } from '../src/blocklist.js';
import { UserError } from '../src/errors.js';
import { openDataset } from '../src/loader/data/index.js';
import { modelFromBytes, modelIO } from '../src/loader/model.js';
import { encodeModel } from '../src/loader/proto.js';
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
      if (!(list instanceof UserError)) assert.ok(list.every((v) => Number.isInteger(v) && v >= 0 && v <= max));
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

test(`hostile metadata, input names and op types: the CLI exits 0 or 2 and never prints a raw control character (${Math.ceil(RUNS / 250)} cases)`, async () => {
  const { spawnSync } = await import('node:child_process');
  const { decodeModel } = await import('../src/loader/proto.js');
  const evil = fc.oneof(
    fc.constantFrom('\u001b[2J', '\u001b]0;owned\u0007', '\u009b31m', '\u202eabc', '1,2\r\n3', '\u0000', '0.5'),
    fc.string({ unit: 'binary', maxLength: 16 }),
  );
  const key = fc.constantFrom('reslens.mean', 'reslens.std', 'reslens.input_size', 'reslens.classes', 'reslens.survival', 'reslens.test_accuracy', 'other');
  const where = fc.constantFrom('metadata', 'input', 'op', 'node');
  await fc.assert(
    fc.asyncProperty(fc.array(fc.tuple(where, key, evil), { minLength: 1, maxLength: 3 }), async (edits) => {
      const m = decodeModel(model);
      m.metadataProps = [{ key: 'reslens.input_size', value: '8,8' }];
      for (const [w, k, v] of edits) {
        if (w === 'metadata') m.metadataProps.push({ key: k, value: v });
        else if (w === 'input') m.graph!.input!.push({ ...m.graph!.input![0]!, name: v });
        else if (w === 'op') m.graph!.node![1]!.opType = v;
        else m.graph!.node![2]!.name = v;
      }
      const file = path.join(dir, 'evil.onnx');
      writeFileSync(file, encodeModel(m));
      const r = spawnSync(process.execPath, ['dist/cli.js', 'inspect', file, '--device', 'cpu'], { encoding: 'utf8', timeout: 60000 });
      assert.notEqual(r.signal, 'SIGTERM', 'hang');
      assert.ok(r.status === 0 || r.status === 2, `exit ${r.status}: ${r.stderr}`);
      // eslint-disable-next-line no-control-regex
      const raw = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;
      assert.ok(!raw.test(r.stdout) && !raw.test(r.stderr), `raw control character printed: ${JSON.stringify(r.stderr)}`);
      if (r.status === 2) assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    }),
    { numRuns: Math.ceil(RUNS / 250), seed: 23 },
  );
});
