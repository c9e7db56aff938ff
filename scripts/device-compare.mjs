// Compares the device-check outputs against the CPU run and prints one table (see device-check.sh).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
const dir = process.argv[2];
const read = (f) => (existsSync(path.join(dir, f)) ? JSON.parse(readFileSync(path.join(dir, f), 'utf8')) : null);
const cpu = read('lesion-cpu.json');
if (!cpu) {
  console.error('no CPU result; nothing to compare');
  process.exit(1);
}
const wrong = (r) => r.total - r.correct;
const configs = (doc) => [doc.baseline, ...doc.single, ...doc.k.flatMap((k) => k.samples)];
let ok = true;
const rows = [['device', 'lesion s', 'configs', 'max Δ wrong images', 'gradient samples/s', 'max rel Δ norm']];
for (const d of ['cpu', 'webgpu', 'cuda']) {
  const doc = read(`lesion-${d}.json`);
  if (!doc) continue;
  const a = configs(doc);
  const b = configs(cpu);
  const dWrong = Math.max(...a.map((x, i) => Math.abs(wrong(x) - wrong(b[i]))));
  const limit = Math.max(1, Math.ceil((2 * doc.baseline.total) / 10000));
  const g = read(`gradients-${d}.json`);
  const gc = d === 'cpu' ? g : read(`gradients-cpu-${d}.json`);
  let rel = 0;
  if (g && gc) g.samples.forEach((s, i) => (rel = Math.max(rel, Math.abs(s.norm - gc.samples[i].norm) / Math.abs(gc.samples[i].norm))));
  if (dWrong > limit || rel > 1e-3) ok = false;
  rows.push([d, doc.seconds.toFixed(1), String(a.length), String(dWrong), g ? g.samplesPerSecond.toFixed(1) : '-', g ? rel.toExponential(1) : '-']);
}
const w = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
for (const r of rows) console.log(r.map((v, c) => v.padEnd(w[c])).join('  '));
console.log(ok ? 'device results agree with the CPU' : 'DEVICE RESULTS DIFFER FROM THE CPU');
process.exit(ok ? 0 : 1);
