// Compares the device-check outputs (bench/lesion, bench/gradients and bench/gradients --exact
// JSON per device) with the CPU's and prints one table; see device-check.sh.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
const dir = process.argv[2];
const read = (f) => (existsSync(path.join(dir, f)) ? JSON.parse(readFileSync(path.join(dir, f), 'utf8')) : null);
const failed = (f) => (existsSync(path.join(dir, f)) ? readFileSync(path.join(dir, f), 'utf8').trim() : null);
const engine = (doc) => doc?.methods.find((m) => m.method === 'engine') ?? null;
const cpuLesion = engine(read('lesion-cpu.json'));
const cpuGrads = read('gradients-cpu.json');
const exactOf = (doc) => doc?.methods.find((m) => m.method === 'reslens') ?? null;
const cpuExact = exactOf(read('exact-cpu.json'));
if (!cpuLesion || !cpuGrads || !cpuExact) {
  console.error('no complete CPU result; nothing to compare against');
  process.exit(1);
}
let ok = true;
const rows = [['device', 'lesion s', 'configs', 'images', 'max Δ wrong', 'gradients s', 'samples/s', 'per-block s', 'max rel Δ norm', 'exact s', 'exact images', 'max rel Δ k-norm', 'max Δ share', 'verdict']];
const fail = (verdict, what) => (verdict === 'same as cpu' ? what : `${verdict}, ${what}`);
for (const d of ['cpu', 'webgpu', 'cuda']) {
  const l = engine(read(`lesion-${d}.json`));
  const g = read(`gradients-${d}.json`);
  if (!l && !g) {
    const why = failed(`lesion-${d}.failed`);
    if (why) rows.push([d, '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', `not run: ${why.replace(/^\w+: (lesion failed|not available here): ?/, '').slice(0, 120)}`]);
    continue;
  }
  let verdict = 'same as cpu';
  let dWrong = '-';
  if (l) {
    const wrong = (m, i) => m.total - m.correct[i];
    const diffs = l.configs.map((c, i) => (c === cpuLesion.configs[i] ? Math.abs(wrong(l, i) - wrong(cpuLesion, i)) : Infinity));
    const worst = Math.max(...diffs);
    dWrong = String(worst);
    if (worst > Math.max(0, Math.floor((2 * l.total) / 10000))) verdict = 'WRONG IMAGES DIFFER';
  } else verdict = 'lesion failed';
  let rel = '-';
  const [gr, gb] = g ? ['reslens', 'reslens-block'].map((m) => g.methods.find((x) => x.method === m)) : [];
  if (gr) {
    const ref = cpuGrads.methods.find((x) => x.method === 'reslens').norms;
    let worst = 0;
    gr.norms.forEach((n, i) => (worst = Math.max(worst, ref[i] === 0 ? Math.abs(n) : Math.abs(n - ref[i]) / Math.abs(ref[i]))));
    if (gr.norms.length !== ref.length) worst = Infinity;
    rel = worst.toExponential(1);
    if (!(worst <= 1e-5)) verdict = verdict === 'same as cpu' ? 'NORMS DIFFER' : `${verdict}, NORMS DIFFER`;
  } else verdict = verdict === 'same as cpu' ? 'gradients failed' : `${verdict}, gradients failed`;
  // The exact decomposition: each length's norm to 1e-5 relative, each share to 1e-5 of the largest.
  const ex = exactOf(read(`exact-${d}.json`));
  let kRel = '-';
  let dShare = '-';
  if (ex) {
    const ref = cpuExact.perLength;
    const big = Math.max(...ref.map((p) => Math.abs(p.share)));
    let wn = ex.perLength.length === ref.length ? 0 : Infinity;
    let ws = wn;
    ex.perLength.forEach((p, k) => {
      const c = ref[k];
      if (!c) return;
      wn = Math.max(wn, c.norm === 0 ? Math.abs(p.norm) : Math.abs(p.norm - c.norm) / c.norm);
      ws = Math.max(ws, Math.abs(p.share - c.share) / big);
    });
    kRel = wn.toExponential(1);
    dShare = ws.toExponential(1);
    if (!(wn <= 1e-5 && ws <= 1e-5)) verdict = fail(verdict, 'EXACT DIFFERS');
  } else verdict = fail(verdict, 'exact failed');
  if (verdict !== 'same as cpu') ok = false;
  rows.push([d, l ? l.seconds.toFixed(1) : '-', l ? String(l.configs.length) : '-', l ? String(l.total) : '-', dWrong, gr ? gr.seconds.toFixed(1) : '-', gr ? gr.samplesPerSecond.toFixed(1) : '-', gb ? gb.seconds.toFixed(1) : '-', rel, ex ? ex.seconds.toFixed(1) : '-', ex ? String(ex.images) : '-', kRel, dShare, verdict]);
}
const w = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
for (const r of rows) console.log(r.map((v, c) => v.padEnd(w[c])).join('  ').trimEnd());
console.log(ok ? 'every device that ran agrees with the CPU' : 'DEVICE RESULTS DIFFER FROM THE CPU');
process.exit(ok ? 0 : 1);
