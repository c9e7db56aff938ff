/** Ctrl-C (SIGINT) or SIGTERM during a long lesion run keeps the finished results and exits 130. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { encodeModel } from '../src/loader/proto.js';
import { Random } from '../src/random.js';
import { buildNet } from './helpers/build.js';
import { writeNpy } from './helpers/npy.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'reslens-int-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('SIGINT and SIGTERM: partial results written, exit 130', async () => {
  const model = path.join(dir, 'm.onnx');
  const m = buildNet({ blocks: [{ cout: 4 }, { cout: 4 }, { cout: 4 }], size: 8 });
  m.metadataProps = [{ key: 'reslens.input_size', value: '8,8' }];
  writeFileSync(model, encodeModel(m));
  const N = 20000;
  const r = new Random(3);
  writeNpy(path.join(dir, 'x.npy'), '|u1', [N, 8, 8], Uint8Array.from({ length: N * 64 }, () => r.int(256)));
  writeNpy(path.join(dir, 'y.npy'), '|u1', [N], Uint8Array.from({ length: N }, () => r.int(10)));
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    const out = path.join(dir, `${sig}.json`);
    const child = spawn(process.execPath, ['dist/cli.js', 'lesion', model, '--data', path.join(dir, 'x.npy'), '--batch', '2', '--threads', '1', '--device', 'cpu', '--progress', 'json', '--json', out], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    // Wait until a batch is done (a progress line with done > 0), so there are results to keep
    // however loaded the machine is; a fixed delay failed when the first batch came late.
    const t0 = Date.now();
    while (!/"done":[1-9]/.test(err) && Date.now() - t0 < 120000) await new Promise((res) => setTimeout(res, 50));
    child.kill(sig);
    const code = await new Promise<number | null>((res) => child.on('exit', res));
    assert.equal(code, 130, err);
    assert.ok(existsSync(out), 'the finished results were written');
    const doc = JSON.parse(readFileSync(out, 'utf8'));
    assert.ok(doc.interrupted.samplesDone > 0 && doc.interrupted.samplesDone < N, `samplesDone ${doc.interrupted.samplesDone}`);
    assert.equal(doc.baseline.total, doc.interrupted.samplesDone);
    assert.equal(doc.single.length, 3);
    assert.match(err, /interrupted/);
  }
});
