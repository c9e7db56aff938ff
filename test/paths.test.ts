/**
 * Path-length distribution of the unraveled view (Veit et al. 2016). Expected values are
 * computed independently here (factorials in BigInt, brute-force enumeration) or are the
 * paper's numbers, never outputs copied from the code under test.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  binomialCounts,
  effectivePaths,
  linearDecaySurvival,
  pathLengthDistribution,
  poissonBinomial,
  rangeMass,
  shortestRange,
  summarize,
} from '../src/paths/distribution.js';
import { renderPathHistogram } from '../src/paths/render.js';
import { Random } from '../src/random.js';

function factorial(n: number): bigint {
  let f = 1n;
  for (let i = 2n; i <= BigInt(n); i++) f *= i;
  return f;
}

/** C(n, k) by the factorial formula, independent of the recurrence under test. */
function choose(n: number, k: number): bigint {
  return factorial(n) / (factorial(k) * factorial(n - k));
}

/** num / den as a double, via BigInt scaling to 20 significant digits (num, den > 0). */
function ratio(num: bigint, den: bigint): number {
  const digits = (x: bigint) => x.toString().length;
  const shift = 20 - (digits(num) - digits(den)); // makes the scaled quotient about 1e20
  const q = shift >= 0 ? (num * 10n ** BigInt(shift)) / den : num / (den * 10n ** BigInt(-shift));
  return Number(`${q}e${-shift}`); // parsing rounds correctly, even near the subnormal range
}

function relClose(actual: number, expected: number, rel: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= rel * Math.abs(expected), `${what}: ${actual} vs ${expected}`);
}

/** Deterministic pseudo-random numbers in [0, 1) (mulberry32). */
function rng(seed: number): () => number {
  const r = new Random(seed);
  return () => r.next();
}

test('ResNet-110 (n = 54): the paper\'s 98.0% for lengths 19..35 and 0.45% for 5..17', () => {
  const d = pathLengthDistribution(54);
  assert.ok(Math.abs(rangeMass(d.probability, 19, 35) - 0.980) <= 0.0005);
  assert.ok(Math.abs(rangeMass(d.probability, 5, 17) - 0.0045) <= 0.0001);
  // The same masses from exact factorials.
  let mid = 0n;
  for (let k = 19; k <= 35; k++) mid += choose(54, k);
  relClose(rangeMass(d.probability, 19, 35), ratio(mid, 2n ** 54n), 1e-12, 'mass 19..35');
  const r = shortestRange(d.probability, 0.95);
  assert.ok(r.lo >= 19 && r.hi <= 35, `95% range ${r.lo}..${r.hi} lies inside 19..35`);
  assert.ok(r.mass >= 0.95);
  // Symmetric about n/2, as Binomial(n, 1/2) must be.
  assert.equal(r.lo + r.hi, 54);
});

test('counts are exact: C(n, k) by factorials, sum 2^n for n = 1000', () => {
  const counts = binomialCounts(1000);
  assert.equal(counts.length, 1001);
  assert.equal(counts.reduce((a, b) => a + b, 0n), 2n ** 1000n);
  assert.equal(counts[500], choose(1000, 500));
  // Product formula: C(1000, 500) = prod_{i=1..500} (500 + i) / i.
  let num = 1n;
  let den = 1n;
  for (let i = 1n; i <= 500n; i++) { num *= 500n + i; den *= i; }
  assert.equal(counts[500], num / den);
  for (const k of [0, 1, 2, 333, 999, 1000]) assert.equal(counts[k], choose(1000, k), `C(1000, ${k})`);
  const d = pathLengthDistribution(1000);
  assert.equal(d.total, 2n ** 1000n);
  assert.equal(binomialCounts(0).length, 1);
  assert.deepEqual(binomialCounts(4), [1n, 4n, 6n, 4n, 1n]);
});

test('probabilities C(n, k)/2^n are accurate to 1e-12 relative for n = 1000 and 5000', () => {
  const d1000 = pathLengthDistribution(1000);
  for (const k of [0, 10, 250, 400, 500, 777]) {
    relClose(d1000.probability[k]!, ratio(choose(1000, k), 2n ** 1000n), 1e-12, `n=1000 k=${k}`);
  }
  assert.equal(d1000.probability[0], 2 ** -1000);
  const d5000 = pathLengthDistribution(5000);
  for (const k of [2000, 2500, 3100]) {
    relClose(d5000.probability[k]!, ratio(choose(5000, k), 2n ** 5000n), 1e-12, `n=5000 k=${k}`);
  }
  assert.ok(Math.abs(d5000.probability.reduce((a, b) => a + b, 0) - 1) < 1e-12);
  const s = summarize(d5000.probability);
  assert.ok(Math.abs(s.mean - 2500) < 1e-9);
  assert.ok(Math.abs(s.sd - Math.sqrt(5000) / 2) < 1e-9);
  assert.equal(s.mode, 2500);
});

test('poissonBinomial: p = 1/2 everywhere gives Binomial(n, 1/2)', () => {
  const n = 30;
  const pb = poissonBinomial(new Array<number>(n).fill(0.5));
  assert.equal(pb.length, n + 1);
  for (let k = 0; k <= n; k++) relClose(pb[k]!, Number(choose(n, k)) / 2 ** n, 1e-12, `k=${k}`);
});

test('poissonBinomial: sums to 1, mean sum(p), matches brute-force enumeration', () => {
  const rand = rng(7);
  const p = Array.from({ length: 12 }, () => rand());
  const pb = poissonBinomial(p);
  assert.ok(Math.abs(pb.reduce((a, b) => a + b, 0) - 1) < 1e-12);
  const mean = pb.reduce((a, q, k) => a + k * q, 0);
  assert.ok(Math.abs(mean - p.reduce((a, b) => a + b, 0)) < 1e-10);
  const variance = pb.reduce((a, q, k) => a + q * (k - mean) ** 2, 0);
  assert.ok(Math.abs(variance - p.reduce((a, q) => a + q * (1 - q), 0)) < 1e-10);
  // Every subset of surviving blocks.
  const brute = new Array<number>(p.length + 1).fill(0);
  for (let mask = 0; mask < 1 << p.length; mask++) {
    let prob = 1;
    let k = 0;
    p.forEach((q, l) => {
      if (mask & (1 << l)) { prob *= q; k++; } else prob *= 1 - q;
    });
    brute[k]! += prob;
  }
  pb.forEach((q, k) => assert.ok(Math.abs(q - brute[k]!) < 1e-14, `k=${k}`));
  assert.deepEqual(poissonBinomial([]), [1]);
  assert.deepEqual(poissonBinomial([1, 1, 0]), [0, 0, 1, 0]);
});

test('linearDecaySurvival(54, 0.5): the stochastic-depth rule with the input as layer 0', () => {
  const p = linearDecaySurvival(54, 0.5);
  assert.equal(p.length, 54);
  assert.ok(Math.abs(p[0]! - (1 - 0.5 / 54)) < 1e-15);
  assert.ok(Math.abs(p[53]! - 0.5) < 1e-15);
  for (let i = 1; i < p.length; i++) assert.ok(p[i]! < p[i - 1]!);
  // Expected surviving depth: sum of p_l = n - (1 - p_L)(n + 1)/2.
  const pb = poissonBinomial(p);
  const mean = pb.reduce((a, q, k) => a + k * q, 0);
  assert.ok(Math.abs(mean - (54 - 0.5 * 55 / 2)) < 1e-9);
});

test('shortestRange and rangeMass on hand-made weights', () => {
  const w = [0, 1, 5, 1, 0, 0, 3, 0]; // sum 10
  assert.deepEqual(shortestRange(w, 0.5), { lo: 2, hi: 2, mass: 0.5 });
  // [1,2] and [2,3] both hold 0.6: the lower lo wins.
  const r06 = shortestRange(w, 0.6);
  assert.equal(r06.lo, 1);
  assert.equal(r06.hi, 2);
  const r075 = shortestRange(w, 0.75);
  assert.equal(r075.lo, 2);
  assert.equal(r075.hi, 6);
  assert.ok(Math.abs(r075.mass - 0.9) < 1e-15);
  // Equal length, different mass: the heavier range wins over the lower lo.
  const heavier = shortestRange([4, 0, 0, 5, 0], 0.4);
  assert.equal(heavier.lo, 3);
  assert.equal(heavier.hi, 3);
  // Float noise must not break ties that are exact on paper.
  const sym = shortestRange([0.1, 0.2, 0.1], 0.75);
  assert.equal(sym.lo, 0);
  assert.equal(sym.hi, 1);
  // All the mass: the zero tails are left out.
  const all = shortestRange([0, 0, 0.1, 0.7, 0.2, 0], 1);
  assert.equal(all.lo, 2);
  assert.equal(all.hi, 4);
  assert.ok(Math.abs(rangeMass(w, 1, 3) - 0.7) < 1e-15);
  assert.equal(rangeMass(w, -5, 100), 1);
  assert.throws(() => shortestRange(w, 0));
  assert.throws(() => shortestRange([0, 0], 0.5));
});

test('effectivePaths: magnitude 0.5^k recovers factor 0.5 and the range of C(n,k)·0.5^k', () => {
  const n = 54;
  const g = Array.from({ length: n + 1 }, (_, k) => 0.5 ** k);
  const e = effectivePaths(g, n, 0.95);
  assert.ok(e.fit);
  assert.ok(Math.abs(e.fit.factorPerBlock - 0.5) < 1e-12);
  assert.ok(e.fit.r2 > 1 - 1e-12);
  assert.equal(e.fit.points, n + 1);
  const weights = Array.from({ length: n + 1 }, (_, k) => Number(choose(n, k)) * 0.5 ** k);
  const expected = shortestRange(weights, 0.95);
  assert.ok(e.effective);
  assert.equal(e.effective.lo, expected.lo);
  assert.equal(e.effective.hi, expected.hi);
  assert.ok(Math.abs(e.effective.mass - expected.mass) < 1e-12);
  const total = weights.reduce((a, b) => a + b, 0);
  e.share.forEach((s, k) => assert.ok(Math.abs(s - weights[k]! / total) < 1e-12, `share k=${k}`));
  let inRange = 0n;
  for (let k = expected.lo; k <= expected.hi; k++) inRange += choose(n, k);
  relClose(e.pathShare!, ratio(inRange, 2n ** 54n), 1e-12, 'path share');
  relClose(e.log10Total, Math.log10(total), 1e-12, 'log10 total');
  assert.deepEqual(e.unmeasured, []);
});

test('effectivePaths: n = 1000 stays finite and matches Binomial(1000, 1/3)', () => {
  // C(n,k)·0.5^k is proportional to C(n,k)·2^(n-k)/3^n, the Binomial(n, 1/3) pmf.
  const n = 1000;
  const g = Array.from({ length: n + 1 }, (_, k) => 0.5 ** k);
  const e = effectivePaths(g, n, 0.95);
  const three = 3n ** BigInt(n);
  const pmf = Array.from({ length: n + 1 }, (_, k) => {
    const num = choose(n, k) * 2n ** BigInt(n - k);
    return num === 0n ? 0 : ratio(num, three);
  });
  const expected = shortestRange(pmf.map((x) => (x < 1e-300 ? 0 : x)), 0.95);
  assert.equal(e.effective!.lo, expected.lo);
  assert.equal(e.effective!.hi, expected.hi);
  assert.ok(e.share.every((s) => Number.isFinite(s)));
  assert.ok(Math.abs(e.share.reduce((a, b) => a + b, 0) - 1) < 1e-12);
  relClose(e.share[333]!, pmf[333]!, 1e-10, 'share at k=333');
  assert.ok(Math.abs(e.fit!.factorPerBlock - 0.5) < 1e-12);
});

test('effectivePaths: unmeasured lengths contribute nothing and are flagged', () => {
  const n = 20;
  const g: (number | null)[] = Array.from({ length: n + 1 }, (_, k) => (k % 3 === 0 ? null : 0.3 ** k));
  const e = effectivePaths(g, n, 0.9);
  assert.deepEqual(e.unmeasured, [0, 3, 6, 9, 12, 15, 18]);
  for (const k of e.unmeasured) {
    assert.equal(e.share[k], 0);
    assert.equal(e.log10Contribution[k], null);
  }
  assert.ok(Math.abs(e.fit!.factorPerBlock - 0.3) < 1e-12);
  // Shorter input: the missing tail counts as not measured.
  assert.deepEqual(effectivePaths([1, 0.5], 3, 0.5).unmeasured, [2, 3]);
  assert.equal(effectivePaths([null, null], 1, 0.5).effective, null);
  assert.throws(() => effectivePaths([1, 1, 1], 1, 0.5));
});

test('renderPathHistogram fits the width, shows exact counts, and has no ANSI without color', () => {
  const ansi = /\x1b\[/;
  for (const n of [3, 54, 1000]) {
    const d = pathLengthDistribution(n);
    for (const width of [80, 60, 40]) {
      const out = renderPathHistogram(d, { width, color: false });
      assert.ok(!ansi.test(out), `n=${n} width=${width}: no ANSI`);
      for (const line of out.split('\n')) assert.ok([...line].length <= width, `n=${n} width=${width}: "${line}"`);
      assert.ok(!/\d{21,}/.test(out), 'long counts are abbreviated');
      const rows = out.split('\n').filter((l) => /^│\s+\d/.test(l));
      assert.ok(rows.length <= 41, `n=${n}: ${rows.length} table rows`);
    }
  }
  const out54 = renderPathHistogram(pathLengthDistribution(54), { width: 80, color: false });
  assert.ok(out54.includes(choose(54, 27).toString()), 'C(54, 27) printed exactly');
  assert.ok(/[▁▂▃▄▅▆▇█]/.test(out54));
  const colored = renderPathHistogram(pathLengthDistribution(54), { width: 70, color: true });
  assert.ok(ansi.test(colored));
  for (const line of colored.split('\n')) assert.ok([...line.replace(/\x1b\[[0-9;]*m/g, '')].length <= 70);
  // Stochastic depth: probabilities only, no counts column.
  const sd = poissonBinomial(linearDecaySurvival(54, 0.5));
  const outSd = renderPathHistogram({ n: 54, probability: sd }, { width: 50, color: false });
  assert.ok(!outSd.includes('paths │'));
  for (const line of outSd.split('\n')) assert.ok([...line].length <= 50);
});
