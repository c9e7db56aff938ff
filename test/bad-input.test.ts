/**
 * Hostile input through the built CLI, each case making its own files: external data that
 * leaves the model's folder or never ends, control characters in a model's strings, outputs that
 * cannot be written, two runs on one report, gzip bombs, symlinked data. Every refusal is one
 * line on stderr with exit 2, names the path, carries no raw control character and returns
 * promptly (a hang fails by the spawn timeout).
 */
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { writeNpy } from './helpers/npy.js';
import { decodeModel, encodeModel, type ModelProto } from '../src/loader/proto.js';
import { buildNet } from './helpers/build.js';

const CLI = path.resolve('dist/cli.js');
const root = mkdtempSync(path.join(os.tmpdir(), 'reslens-bad-'));
after(() => rmSync(root, { recursive: true, force: true }));

const base = buildNet({ blocks: [{ cout: 4 }, { cout: 4 }], size: 8 });
base.metadataProps = [{ key: 'reslens.input_size', value: '8,8' }];
const baseBytes = encodeModel(base);
const ESC = '\u001b';

/** A fresh folder under the test's temp root. */
function folder(name: string): string {
  const d = path.join(root, name);
  mkdirSync(d, { recursive: true });
  return d;
}

function model(file: string, change: (m: ModelProto) => void = () => {}): string {
  const m = decodeModel(baseBytes);
  change(m);
  writeFileSync(file, encodeModel(m));
  return file;
}

/** The largest initializer moved to external data at `location`; returns its bytes. */
function externalize(m: ModelProto, location: string, extra: { offset?: number; length?: number } = {}): Buffer {
  const w = [...m.graph!.initializer!].sort((a, b) => (b.rawData?.byteLength ?? 0) - (a.rawData?.byteLength ?? 0))[0]!;
  const bytes = Buffer.from(w.rawData!);
  w.dataLocation = 1;
  w.externalData = [{ key: 'location', value: location }];
  if (extra.offset !== undefined) w.externalData.push({ key: 'offset', value: String(extra.offset) });
  if (extra.length !== undefined) w.externalData.push({ key: 'length', value: String(extra.length) });
  w.rawData = new Uint8Array(0);
  return bytes;
}

function run(args: string[], o: { timeout?: number; env?: NodeJS.ProcessEnv; input?: string } = {}): { code: number | null; out: string; err: string; r: SpawnSyncReturns<string> } {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    encoding: 'utf8', timeout: o.timeout ?? 60_000, env: { ...process.env, NO_COLOR: '1', ...o.env }, input: o.input ?? '',
  });
  return { code: r.status, out: r.stdout, err: r.stderr, r };
}

/** Exit 2, exactly one `reslens:` line on stderr matching `pattern`, no raw ESC anywhere, not killed by the timeout. */
function refused(res: ReturnType<typeof run>, pattern: RegExp, what: string): string {
  assert.notEqual(res.r.signal, 'SIGTERM', `${what}: hung (killed after the timeout)`);
  assert.equal(res.code, 2, `${what}: exit ${res.code}: ${res.err}`);
  const lines = res.err.split('\n').filter((l) => l.startsWith('reslens:'));
  assert.equal(lines.length, 1, `${what}: one reslens line on stderr: ${res.err}`);
  assert.match(lines[0]!, pattern, what);
  assert.ok(!res.err.includes(ESC) && !res.out.includes(ESC), `${what}: a raw ESC reached the terminal`);
  return lines[0]!;
}

test('external data: links out of the model folder, devices and FIFOs are refused; a link inside it is followed', () => {
  const d = folder('ext');
  const outside = folder('ext-outside');
  // A link to a file outside, and a linked folder, each look local by their text.
  const a = model(path.join(d, 'link-file.onnx'), (m) => writeFileSync(path.join(outside, 'w.bin'), externalize(m, 'w.bin')));
  symlinkSync(path.join(outside, 'w.bin'), path.join(d, 'w.bin'));
  refused(run(['inspect', a]), /link-file\.onnx: external data 'w\.bin' .*link to .*ext-outside\/w\.bin, outside the model's folder/, 'file link');
  symlinkSync(outside, path.join(d, 'sub'));
  const b = model(path.join(d, 'link-dir.onnx'), (m) => externalize(m, 'sub/w.bin'));
  refused(run(['inspect', b]), /link-dir\.onnx: external data 'sub\/w\.bin' .*outside the model's folder/, 'folder link');
  // export must not copy the outside bytes into a new model.
  const exported = path.join(root, 'exported.onnx');
  refused(run(['export', b, '--delete', '0', '-o', exported]), /outside the model's folder/, 'export');
  assert.ok(!existsSync(exported), 'nothing exported');

  // /dev/zero would never end: refused at once, not read.
  symlinkSync('/dev/zero', path.join(d, 'zero.bin'));
  const z = model(path.join(d, 'zero.onnx'), (m) => externalize(m, 'zero.bin'));
  refused(run(['inspect', z], { timeout: 20_000 }), /zero\.onnx: external data 'zero\.bin' .*\/dev\/zero, outside the model's folder/, '/dev/zero');
  // A FIFO inside the folder: opening it must not wait for a writer.
  const fifo = path.join(d, 'pipe.bin');
  const mk = spawnSync('mkfifo', [fifo]);
  assert.equal(mk.status, 0, 'mkfifo works here');
  const f = model(path.join(d, 'fifo.onnx'), (m) => externalize(m, 'pipe.bin'));
  refused(run(['inspect', f], { timeout: 20_000 }), /fifo\.onnx: external data 'pipe\.bin' .*is a FIFO \(named pipe\), not a regular file/, 'FIFO');
  // The model file itself as a FIFO.
  const fifoModel = path.join(d, 'model-pipe.onnx');
  spawnSync('mkfifo', [fifoModel]);
  refused(run(['inspect', fifoModel], { timeout: 20_000 }), /model-pipe\.onnx: is a FIFO/, 'FIFO model');

  // A length other than the tensor's size, and an offset past the end.
  const ok = folder('ext-ok');
  let size = 0;
  const good = model(path.join(ok, 'good.onnx'), (m) => {
    const w = externalize(m, 'data/w.bin', { offset: 16 });
    size = w.length;
    mkdirSync(path.join(ok, 'real'));
    // 16 bytes before and 1 MiB after the tensor: only the tensor's bytes may be read.
    writeFileSync(path.join(ok, 'real', 'w.bin'), Buffer.concat([Buffer.alloc(16, 7), w, Buffer.alloc(1 << 20, 9)]));
  });
  symlinkSync('real', path.join(ok, 'data'));
  const r = run(['inspect', good, '--json']);
  assert.equal(r.code, 0, `a link inside the folder is followed: ${r.err}`);
  assert.equal(JSON.parse(r.out).totals.blocks, 2);
  const long = model(path.join(ok, 'long.onnx'), (m) => externalize(m, 'data/w.bin', { offset: 16, length: size + 4 }));
  refused(run(['inspect', long]), new RegExp(`long\\.onnx: external data for '.*' is ${size + 4} bytes but its shape .* needs ${size}`), 'length');
  const past = model(path.join(ok, 'past.onnx'), (m) => externalize(m, 'data/w.bin', { offset: (1 << 20) + 17 + size }));
  refused(run(['inspect', past]), /past\.onnx: external data for '.*' \(offset \d+, length \d+\) runs past the end of 'data\/w\.bin'/, 'offset');
});

test('control characters from a model are escaped in errors, tables and JSON; the metadata error names the file', () => {
  const d = folder('esc');
  const clear = `${ESC}[2J${ESC}]0;owned\u0007`;
  const mean = model(path.join(d, 'mean.onnx'), (m) => m.metadataProps!.push({ key: 'reslens.mean', value: clear }));
  const line = refused(run(['inspect', mean]), /mean\.onnx: metadata reslens\.mean: '\\x1b\[2J\\x1b\]0;owned\\x07' is not a comma-separated list/, 'reslens.mean');
  assert.ok(line.includes(mean), 'names the model file');
  const size = model(path.join(d, 'size.onnx'), (m) => { m.metadataProps = [{ key: 'reslens.input_size', value: `8${ESC}[31m` }]; });
  refused(run(['inspect', size]), /size\.onnx: metadata reslens\.input_size: '8\\x1b\[31m'/, 'reslens.input_size');
  // An input name and an op type holding escapes reach messages from reslens and from onnxruntime.
  const input = model(path.join(d, 'input.onnx'), (m) => {
    const first = m.graph!.input![0]!;
    m.graph!.input!.push({ ...first, name: `y${clear}` });
  });
  refused(run(['inspect', input]), /input\.onnx: reslens needs a model with exactly one image input, found 2 \(.*, y\\x1b\[2J\\x1b\]0;owned\\x07\)/, 'input name');
  const op = model(path.join(d, 'op.onnx'), (m) => {
    const relu = m.graph!.node!.find((n) => n.opType === 'Relu')!;
    relu.opType = `Relu${clear}`;
  });
  const ortLine = refused(run(['inspect', op]), /onnxruntime cannot load the model \(.*op\.onnx\).*Relu\\x1b\[2J/, 'op type via onnxruntime');
  assert.ok(ortLine.length > 300 || !ortLine.includes('…'), 'onnxruntime message not cut');
  // Tables and JSON: a data-set description and class names with escapes print escaped.
  const classes = model(path.join(d, 'classes.onnx'), (m) => m.metadataProps!.push({ key: `reslens.classes${ESC}[2J`, value: `a${ESC}[2J,b` }));
  const j = run(['inspect', classes, '--json']);
  assert.equal(j.code, 0, j.err);
  assert.ok(!j.out.includes(ESC), 'JSON escapes control characters');
  const t = run(['inspect', path.join(d, `${'classes.onnx'}`)]);
  assert.equal(t.code, 0, t.err);
  assert.ok(!t.out.includes(ESC));
  // A model path holding an escape (a file name found on disk) is escaped in the table header.
  const odd = path.join(d, `odd${ESC}[2J.onnx`);
  writeFileSync(odd, baseBytes);
  const o = run(['inspect', odd]);
  assert.equal(o.code, 0, o.err);
  assert.ok(!o.out.includes(ESC) && o.out.includes('odd\\x1b[2J.onnx'), o.out.split('\n')[0]);
});

/** No temporary file (`.NAME.PID.tmp`, probe) left in `dir`. */
function noTemps(dir: string, what: string): void {
  const left = readdirSync(dir).filter((f) => f.endsWith('.tmp'));
  assert.deepEqual(left, [], `${what}: temporary files left behind`);
}

const npyData = (d: string, n = 16): string => {
  const x = path.join(d, 'x.npy');
  writeNpy(x, '|u1', [n, 8, 8], Uint8Array.from({ length: n * 64 }, (_, i) => (i * 37) % 256));
  writeNpy(path.join(d, 'y.npy'), '|u1', [n], Uint8Array.from({ length: n }, (_, i) => i % 10));
  return x;
};

test('outputs that cannot be written are refused before any work, in every command that writes', () => {
  const d = folder('out');
  const m = model(path.join(d, 'm.onnx'));
  const x = npyData(d);
  const shard = path.join(d, 'shard.json');
  writeFileSync(shard, '{}');
  const target = (t: string): string[][] => [
    ['inspect', m, '--json', t], ['lesion', m, '--data', x, '--json', t], ['gradients', m, '--data', x, '--json', t],
    ['paths', '--blocks', '4', '--json', t], ['export', m, '--delete', '0', '-o', t], ['report', m, '--data', x, '-o', t],
    ['merge', shard, '-o', t], ['report', m, '--data', x, '-o', path.join(d, 'r.json'), '--html', t],
  ];
  // Half the commands get a folder as the target, even with --force (it used to be renamed over:
  // EISDIR, exit 1); the other half /proc, which takes no new files. Both are found before the
  // model is read: a missing model is not what the message names.
  const asDir = folder('out/a-folder');
  target(asDir).forEach((args, i) => {
    const a = args.map((v) => (v === m ? path.join(d, 'missing.onnx') : v));
    if (i % 2 === 0) refused(run([...a, '--force']), /a-folder: is a folder; give a file path for (--json|-o|--html)/, `${args[0]} folder target`);
  });
  target('/proc/reslens-out.json').forEach((args, i) => {
    const a = args.map((v) => (v === m ? path.join(d, 'missing.onnx') : v));
    if (i % 2 === 1) refused(run(a), /\/proc\/reslens-out\.json: cannot write in \/proc \(the file system there takes no new files\)/, `${args[0]} /proc`);
  });
  // A read-only folder: chmod 555 binds only non-root users; root is refused by sysfs instead.
  const ro = folder('out/read-only');
  chmodSync(ro, 0o555);
  const roTarget = process.getuid?.() === 0 ? '/sys/reslens-out.json' : path.join(ro, 'o.json');
  refused(run(['inspect', m, '--json', roTarget]), /cannot write in .* \((permission denied|read-only file system)\)/, 'read-only folder');
  chmodSync(ro, 0o755);
  // An existing --json file: refused at once, before the data is opened (here it does not exist).
  const existing = path.join(d, 'lesion.json');
  writeFileSync(existing, 'keep me');
  refused(run(['lesion', m, '--data', path.join(d, 'no-such-data.npy'), '--json', existing]), /lesion\.json: already exists; pass --force/, 'lesion --json twice');
  assert.equal(readFileSync(existing, 'utf8'), 'keep me');
  noTemps(d, 'checks');
});

test('a write that fails during the run (file-size limit) is one line, exit 2, and leaves no temporary file', () => {
  const d = folder('efbig');
  const m = model(path.join(d, 'm.onnx'));
  assert.ok(readFileSync(m).length > 2048, 'the model is larger than the limit');
  // ulimit -f counts 1024-byte blocks in bash; node ignores SIGXFSZ, so the write fails with EFBIG.
  const out = path.join(d, 'big.onnx');
  const r = spawnSync('bash', ['-c', 'ulimit -f 1 && exec "$0" "$@"', process.execPath, CLI, 'export', m, '--delete', '0', '-o', out], { encoding: 'utf8', timeout: 60_000 });
  refused({ code: r.status, out: r.stdout, err: r.stderr, r }, /big\.onnx: cannot write it \(file too large \(over the file-size limit\)\); choose another path/, 'EFBIG');
  assert.ok(!existsSync(out));
  noTemps(d, 'EFBIG');
});

test('two runs on one report output: the second is told at once who holds it; a retried --resume on the finished report exits 0', async () => {
  const d = folder('lock');
  const m = model(path.join(d, 'm.onnx'));
  const x = npyData(d, 400);
  const out = path.join(d, 'r.json');
  const args = [CLI, 'report', m, '--data', x, '--device', 'cpu', '--threads', '1', '--batch', '4', '--k', '1,2', '--samples', '20', '--gradient-samples', '40', '-o', out];
  const { spawn } = await import('node:child_process');
  const first = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let firstErr = '';
  first.stderr.on('data', (b: Buffer) => { firstErr += b.toString(); });
  const firstDone = new Promise<number | null>((resolve) => first.on('exit', (code) => resolve(code)));
  for (let i = 0; i < 600 && !existsSync(`${out}.lock`); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(existsSync(`${out}.lock`), 'the first run holds a lock');
  // Paused while the others try, so that it cannot finish first however loaded the machine is.
  first.kill('SIGSTOP');
  try {
    const second = run(args.slice(1));
    refused(second, new RegExp(`r\\.json: another reslens run is writing it \\(pid ${first.pid} on ${os.hostname()}`), 'second run');
    const resumed = run([...args.slice(1), '--resume']);
    refused(resumed, /another reslens run is writing it/, 'a --resume while the first runs');
  } finally {
    first.kill('SIGCONT');
  }
  assert.equal(await firstDone, 0, firstErr);
  assert.ok(!existsSync(`${out}.lock`) && !existsSync(`${out}.partial`), 'lock and progress file gone');
  const retried = run([...args.slice(1), '--resume']);
  assert.equal(retried.code, 0, retried.err);
  assert.match(retried.err, /already finished with these options/);

  // A lock left by a killed run (its pid gone on this host) is taken over.
  const dead = spawnSync('true');
  assert.equal(dead.status, 0);
  writeFileSync(`${out}.lock`, JSON.stringify({ pid: dead.pid, host: os.hostname(), token: 'x', startedAt: new Date().toISOString() }));
  const again = run([...args.slice(1), '--resume']);
  assert.equal(again.code, 0, again.err);
  assert.match(again.err, /took over a stale lock \(its process \d+ is gone\)/);
  assert.ok(!existsSync(`${out}.lock`));
  noTemps(d, 'report');
});

function idx(magic: number, dims: number[], body: Buffer): Buffer {
  const head = Buffer.alloc(4 + 4 * dims.length);
  head.writeUInt32BE(magic, 0);
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([head, body]);
}

test('data: IDX files linked to /dev/zero or FIFOs do not hang; a gzip bomb stops at its header\'s size; the cache says where it is', () => {
  const d = folder('data');
  const m = model(path.join(d, 'm.onnx'));
  const lesion = (data: string, env: NodeJS.ProcessEnv = {}) => run(['lesion', m, '--data', data, '--device', 'cpu', '--no-single', '--k', '1', '--samples', '1'], { timeout: 30_000, env });
  // A data folder whose IDX files are links to /dev/zero, and a FIFO named as one.
  const zero = folder('data/zero');
  symlinkSync('/dev/zero', path.join(zero, 't10k-images-idx3-ubyte'));
  symlinkSync('/dev/zero', path.join(zero, 't10k-labels-idx1-ubyte'));
  refused(lesion(zero), /t10k-images-idx3-ubyte: is a character device, not a regular file/, '/dev/zero IDX');
  symlinkSync('/dev/zero', path.join(zero, 'z-images-idx3-ubyte.gz'));
  symlinkSync('/dev/zero', path.join(zero, 'z-labels-idx1-ubyte.gz'));
  refused(lesion(path.join(zero, 'z-images-idx3-ubyte.gz')), /z-images-idx3-ubyte\.gz: (is a character device|not a regular file)/, '/dev/zero .gz');
  const fifo = folder('data/fifo');
  assert.equal(spawnSync('mkfifo', [path.join(fifo, 't10k-images-idx3-ubyte')]).status, 0);
  writeFileSync(path.join(fifo, 't10k-labels-idx1-ubyte'), idx(0x801, [4], Buffer.alloc(4)));
  refused(lesion(fifo), /t10k-images-idx3-ubyte: is a FIFO \(named pipe\), not a regular file/, 'FIFO IDX');

  // A gzip bomb: a valid header for 10 images of 8x8 (656 bytes), then 64 MiB of zeros.
  const bomb = folder('data/bomb');
  const tmp = folder('data/tmpdir');
  const promised = 16 + 10 * 64;
  writeFileSync(path.join(bomb, 'b-images-idx3-ubyte.gz'), gzipSync(idx(0x803, [10, 8, 8], Buffer.alloc(64 << 20))));
  writeFileSync(path.join(bomb, 'b-labels-idx1-ubyte.gz'), gzipSync(idx(0x801, [10], Buffer.alloc(10))));
  const r = lesion(path.join(bomb, 'b-images-idx3-ubyte.gz'), { TMPDIR: tmp });
  refused(r, new RegExp(`b-images-idx3-ubyte\\.gz: decompresses to more than the ${promised} bytes its header promises`), 'gzip bomb');
  const cache = path.join(tmp, 'reslens-cache');
  assert.match(r.err, new RegExp(`decompressing .*b-images-idx3-ubyte\\.gz into ${cache.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`), 'says where the cache is');
  assert.deepEqual(readdirSync(cache), [], 'nothing cached, no temporary file left');
  // A header that promises more than the cache takes is refused after its first bytes.
  writeFileSync(path.join(bomb, 'h-images-idx3-ubyte.gz'), gzipSync(idx(0x803, [60000, 300, 300], Buffer.alloc(1024))));
  writeFileSync(path.join(bomb, 'h-labels-idx1-ubyte.gz'), gzipSync(idx(0x801, [60000], Buffer.alloc(60000))));
  refused(lesion(path.join(bomb, 'h-images-idx3-ubyte.gz'), { TMPDIR: tmp }), /h-images-idx3-ubyte\.gz: its header promises 5400000016 bytes decompressed, over the 2147483648-byte cache limit/, 'huge promise');
  // An honest .gz of the same shape is read.
  writeFileSync(path.join(bomb, 'ok-images-idx3-ubyte.gz'), gzipSync(idx(0x803, [10, 8, 8], Buffer.alloc(640, 100))));
  writeFileSync(path.join(bomb, 'ok-labels-idx1-ubyte.gz'), gzipSync(idx(0x801, [10], Buffer.alloc(10))));
  const ok = lesion(path.join(bomb, 'ok-images-idx3-ubyte.gz'), { TMPDIR: tmp });
  assert.equal(ok.code, 0, ok.err);
  assert.equal(readdirSync(cache).filter((f) => f.endsWith('.idx')).length, 2, 'images and labels cached');
});

test('data: linked class folders are followed inside the data folder and refused outside it; a linked image to a device is refused', () => {
  const d = folder('img');
  const m = model(path.join(d, 'm.onnx'));
  const sharp = (async () => (await import('sharp')).default)();
  return sharp.then(async (sh) => {
    const png = await sh({ create: { width: 8, height: 8, channels: 3, background: { r: 90, g: 120, b: 200 } } }).png().toBuffer();
    const data = folder('img/data');
    for (const c of ['a', 'b']) {
      mkdirSync(path.join(data, '.store', c), { recursive: true });
      for (let i = 0; i < 3; i++) writeFileSync(path.join(data, '.store', c, `${i}.png`), png);
      symlinkSync(path.join('.store', c), path.join(data, c));
    }
    const lesion = (dir: string) => run(['lesion', m, '--data', dir, '--device', 'cpu', '--no-single', '--k', '1', '--samples', '1', '--json'], { timeout: 30_000 });
    const r = lesion(data);
    assert.equal(r.code, 0, r.err);
    assert.match(JSON.parse(r.out).data.description, /6 .*in 2 classes/);
    const outside = folder('img/outside');
    writeFileSync(path.join(outside, '0.png'), png);
    symlinkSync(outside, path.join(data, 'c'));
    refused(lesion(data), /data\/c: a class folder that links to .*img\/outside, outside the data folder; refusing to follow it/, 'class folder outside');
    rmSync(path.join(data, 'c'));
    symlinkSync('/dev/zero', path.join(data, '.store', 'a', '9.png'));
    refused(lesion(data), /a\/9\.png: is a character device, not an image file/, 'image linked to /dev/zero');
  });
});

test('a --classes file that does not list one class per model output is refused by the data commands and annotate', () => {
  const d = folder('classes');
  const short = path.join(d, 'nine.txt');
  writeFileSync(short, Array.from({ length: 9 }, (_, i) => `c${i}`).join('\n') + '\n');
  const idx = 'fixtures/data/t10k-images-idx3-ubyte';
  const pattern = /^reslens: --classes: .*nine\.txt: lists 9 classes but .*resnet20\.onnx has 10 outputs; give the model's whole class list/;
  refused(run(['lesion', 'fixtures/models/resnet20.onnx', '--data', idx, '--limit', '8', '--no-single', '--device', 'cpu', '--classes', short]), pattern, 'lesion');
  const out = path.join(d, 'annotated.onnx');
  refused(run(['annotate', 'fixtures/models/resnet20.onnx', '--classes', short, '-o', out]), pattern, 'annotate');
  assert.ok(!existsSync(out), 'annotate wrote nothing');
  // The whole list is taken.
  const full = path.join(d, 'ten.txt');
  writeFileSync(full, Array.from({ length: 10 }, (_, i) => `c${i}`).join('\n') + '\n');
  const ok = run(['lesion', 'fixtures/models/resnet20.onnx', '--data', idx, '--limit', '8', '--no-single', '--device', 'cpu', '--classes', full]);
  assert.equal(ok.code, 0, ok.err);
});
