/**
 * How long `reslens inspect` takes and how much memory it holds, per model file, each run in
 * its own process (wall time and peak RSS from /usr/bin/time, best of 3). Models: the
 * torchvision exports of fixtures/export_torchvision.py (default /tmp/reslens-zoo) and the fixtures.
 *   npm run build && node --import tsx bench/inspect.ts [FOLDER]
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Table from 'cli-table3';

const dirs = [process.argv[2] ?? '/tmp/reslens-zoo', 'fixtures/models'].filter((d) => existsSync(d));
const files = dirs.flatMap((d) => readdirSync(d).filter((f) => f.endsWith('.onnx')).sort().map((f) => path.join(d, f)));
if (!files.length) {
  console.error('no models found; run /usr/bin/python3 fixtures/export_torchvision.py first');
  process.exit(2);
}
const tmp = mkdtempSync(path.join(os.tmpdir(), 'reslens-bench-'));
const timeFile = path.join(tmp, 'time');

function run(f: string): { seconds: number; rssMb: number; found: string } {
  const size = f.startsWith('fixtures') ? [] : ['--size', '224'];
  const stdout = execFileSync('/usr/bin/time', ['-f', '%e %M', '-o', timeFile, process.execPath, 'dist/cli.js', 'inspect', f, '--json', ...size], {
    encoding: 'utf8', maxBuffer: 1 << 28,
  });
  const [sec, kb] = readFileSync(timeFile, 'utf8').trim().split('\n').pop()!.split(/\s+/).map(Number);
  const doc = JSON.parse(stdout);
  const deletable = (doc.layers as { deletable: boolean }[]).filter((l) => l.deletable).length;
  const found = doc.kind === 'residual'
    ? `${doc.totals.blocks} blocks, stages ${doc.stages.map((s: { units: number[] }) => s.units.length).join('/')}`
    : `${doc.kind}, ${doc.totals.layers} layers, ${deletable} deletable`;
  return { seconds: sec!, rssMb: kb! / 1024, found };
}

const t = new Table({ head: ['model', 'file MB', 'seconds', 'peak RSS MB', 'RSS / file', 'found'] });
for (const f of files) {
  const mb = statSync(f).size / 1e6;
  const runs = [run(f), run(f), run(f)];
  const best = runs.reduce((a, b) => (b.seconds < a.seconds ? b : a));
  t.push([path.basename(f), mb.toFixed(1), best.seconds.toFixed(2), best.rssMb.toFixed(0), (best.rssMb / mb).toFixed(2), best.found]);
}
rmSync(tmp, { recursive: true, force: true });
console.log(`reslens inspect, ${os.cpus().length} × ${os.cpus()[0]?.model}, node ${process.version}`);
console.log(t.toString());
