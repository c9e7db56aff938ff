/** Loading ONNX files: a faithful round trip, and one clear refusal for each kind of bad file. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { Runtime } from '../src/engine/session.js';
import { UserError } from '../src/errors.js';
import { loadModel } from '../src/loader/model.js';
import { decodeModel, encodeModel, floatTensor, type ModelProto } from '../src/loader/proto.js';
import { buildNet, randomInput } from './helpers/build.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'reslens-loader-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const net = buildNet({ blocks: [{ cout: 4 }, { cout: 8, stride: 2 }], size: 8 });
const bytes = encodeModel(net);
const good = path.join(dir, 'good.onnx');
writeFileSync(good, bytes);

function refuses(file: string, pattern: RegExp) {
  assert.throws(() => loadModel(file), (e: unknown) => {
    assert.ok(e instanceof UserError, `expected a UserError, got ${e}`);
    assert.match(e.message, pattern);
    assert.ok(e.message.includes(path.basename(file)), 'the message names the file');
    assert.ok(!e.message.includes('\n'), 'one line');
    return true;
  });
}

function variant(name: string, change: (m: ModelProto) => void): string {
  const m = decodeModel(bytes);
  change(m);
  const f = path.join(dir, name);
  writeFileSync(f, encodeModel(m));
  return f;
}

test('decode → encode → onnxruntime gives identical outputs', async () => {
  const m = loadModel(good);
  const again = encodeModel(m.proto);
  const rt = new Runtime({ threads: 1 });
  try {
    const x = { data: randomInput(3, 1, 8), dims: [3, 1, 8, 8] };
    const a = (await (await rt.create(bytes, 'a')).run({ input: x })).logits!.data as Float32Array;
    const b = (await (await rt.create(again, 'b')).run({ input: x })).logits!.data as Float32Array;
    assert.deepEqual(Array.from(a), Array.from(b));
    assert.equal(m.sha256.length, 64);
  } finally {
    await rt.close();
  }
});

test('missing file, folder, empty file', () => {
  refuses(path.join(dir, 'nope.onnx'), /no such file/);
  mkdirSync(path.join(dir, 'folder.onnx'));
  refuses(path.join(dir, 'folder.onnx'), /is a folder/);
  writeFileSync(path.join(dir, 'empty.onnx'), '');
  refuses(path.join(dir, 'empty.onnx'), /empty file/);
});

test('truncated model and a text file', () => {
  const t = path.join(dir, 'truncated.onnx');
  writeFileSync(t, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
  refuses(t, /truncated|not a readable ONNX|not an ONNX/);
  const txt = path.join(dir, 'notes.txt');
  writeFileSync(txt, 'this is a text file, not a model\n'.repeat(20));
  refuses(txt, /not a readable ONNX|not an ONNX/);
});

test('IR version and opset out of range, custom domains', () => {
  refuses(variant('ir.onnx', (m) => { m.irVersion = 99; }), /IR version 99/);
  refuses(variant('opset.onnx', (m) => { m.opsetImport = [{ domain: '', version: 99 }]; }), /opset 99/);
  refuses(variant('domain.onnx', (m) => { m.opsetImport = [...(m.opsetImport ?? []), { domain: 'com.example', version: 1 }]; }), /custom operator domain/);
});

test('absurd tensor sizes are refused before anything is allocated', () => {
  refuses(variant('bomb.onnx', (m) => { m.graph!.initializer!.push({ name: 'huge', dims: [1 << 20, 1 << 20], dataType: 1, rawData: new Uint8Array(4) }); }), /2\^31/);
  refuses(variant('short.onnx', (m) => { m.graph!.initializer!.push(Object.assign(floatTensor('short', [2], [1, 2]), { dims: [3] })); }), /needs 12/);
});

test('external data: loaded from beside the model; locations leaving its folder are refused', async () => {
  const ext = (name: string, location: string) => variant(name, (m) => {
    const w = m.graph!.initializer![0]!;
    w.dataLocation = 1;
    w.externalData = [{ key: 'location', value: location }];
    writeFileSync(path.join(dir, 'weights.bin'), Buffer.from(w.rawData!));
    w.rawData = new Uint8Array(0);
  });
  const ok = loadModel(ext('ext.onnx', 'weights.bin'));
  assert.ok(ok.proto.graph!.initializer![0]!.rawData!.byteLength > 0);
  refuses(ext('escape.onnx', '../weights.bin'), /outside the model's folder/);
  refuses(ext('abs.onnx', '/etc/passwd'), /outside the model's folder/);
  refuses(ext('missing-ext.onnx', 'nothere.bin'), /not found beside the model/);
});
