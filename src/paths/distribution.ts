/**
 * The unraveled view of a residual network (Veit et al. 2016): with n blocks there are 2^n
 * paths, C(n, k) of them of length k (the number of residual branches a path passes).
 * Pure functions, no I/O. Counts are exact (BigInt); probabilities are doubles computed from
 * the exact counts, so they stay accurate for n in the thousands (1001-layer ResNets).
 * Bad arguments throw RangeError: callers validate user input before calling.
 */

/** Path-length distribution of the unraveled view: lengths follow Binomial(n, 1/2). */
export interface PathLengthDistribution {
  /** Number of residual blocks. */
  n: number;
  /** counts[k] = C(n, k), the number of paths of length k (exact). */
  counts: bigint[];
  /** 2^n, the number of paths. */
  total: bigint;
  /** probability[k] = C(n, k) / 2^n. */
  probability: number[];
}

export interface Summary {
  mean: number;
  /** Standard deviation (of the distribution itself, not an estimate from a sample). */
  sd: number;
  /** Most likely index; the lowest one on ties. */
  mode: number;
}

/** A contiguous range of path lengths [lo, hi] and the (normalised) mass it holds. */
export interface LengthRange {
  lo: number;
  hi: number;
  mass: number;
}

/** Least-squares line through ln(gradient magnitude) against path length k. */
export interface ExponentialFit {
  /** exp(slope): how much the gradient magnitude shrinks per extra residual branch. */
  factorPerBlock: number;
  /** Slope of ln(magnitude) per unit of k. */
  slope: number;
  /** ln(magnitude) at k = 0. */
  intercept: number;
  /** Coefficient of determination of the fit in log space (1 = exactly exponential). */
  r2: number;
  /** Number of lengths used (measured and with a positive magnitude). */
  points: number;
}

/** The gradient experiment of the paper's section 6, weighted by how many paths there are. */
export interface EffectivePaths {
  n: number;
  /** The measured mean gradient magnitude per path of length k (null: not measured). */
  gradientMagnitude: (number | null)[];
  /** Lengths k that were not measured; they contribute nothing and the result is partial. */
  unmeasured: number[];
  /**
   * log10(C(n, k) · magnitude[k]): the total gradient magnitude from all paths of length k,
   * in log space because C(n, k) overflows a double past n ≈ 1020. null when not measured,
   * -Infinity when the magnitude is 0.
   */
  log10Contribution: (number | null)[];
  /** log10 of the total gradient magnitude summed over all measured lengths (-Infinity when 0). */
  log10Total: number;
  /** Fraction of the total gradient magnitude carried by paths of length k (sums to 1). */
  share: number[];
  /** Shortest range of lengths carrying at least `mass` of the total: the effective paths. */
  effective: LengthRange | null;
  /** Fraction of all 2^n paths whose length lies in the effective range (0.45% in the paper). */
  pathShare: number | null;
  /** Exponential fit of magnitude against k; null with fewer than two usable lengths. */
  fit: ExponentialFit | null;
}

function checkCount(n: number, what = 'n'): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${what} must be a non-negative integer, got ${n}`);
}

/** Exact C(n, k) for k = 0..n, by C(n, k+1) = C(n, k)(n-k)/(k+1) (the division is exact). */
export function binomialCounts(n: number): bigint[] {
  checkCount(n);
  const counts = new Array<bigint>(n + 1);
  const N = BigInt(n);
  let c = 1n;
  counts[0] = 1n;
  // Only the first half needs computing: the row is symmetric.
  for (let k = 0; k < Math.floor(n / 2); k++) {
    const K = BigInt(k);
    c = (c * (N - K)) / (K + 1n);
    counts[k + 1] = c;
  }
  for (let k = Math.floor(n / 2) + 1; k <= n; k++) counts[k] = counts[n - k]!;
  return counts;
}

function bitLength(x: bigint): number {
  const hex = x.toString(16);
  return (hex.length - 1) * 4 + (32 - Math.clz32(parseInt(hex[0]!, 16)));
}

/** x · 2^e without the intermediate overflow/underflow of Math.pow(2, e) for large |e|. */
function ldexp(x: number, e: number): number {
  while (e > 1000) { x *= 2 ** 1000; e -= 1000; }
  while (e < -1000) { x *= 2 ** -1000; e += 1000; }
  return x * 2 ** e;
}

/**
 * c / 2^n as a double. The top 64 bits of c carry all the precision a double can hold, so
 * the error is about one ulp however large c and n are (subnormal results aside).
 */
function divPow2(c: bigint, n: number): number {
  if (c === 0n) return 0;
  const shift = Math.max(0, bitLength(c) - 64);
  return ldexp(Number(c >> BigInt(shift)), shift - n);
}

/** ln(c) for c > 0, from the top 64 bits (c may be far beyond a double's range). */
function lnBig(c: bigint): number {
  const shift = Math.max(0, bitLength(c) - 64);
  return Math.log(Number(c >> BigInt(shift))) + shift * Math.LN2;
}

/** Path lengths of the unraveled view of n blocks: exact counts and their probabilities. */
export function pathLengthDistribution(n: number): PathLengthDistribution {
  const counts = binomialCounts(n);
  const total = 1n << BigInt(n);
  const probability = counts.map((c) => divPow2(c, n));
  return { n, counts, total, probability };
}

/**
 * Distribution of the number of surviving blocks when block l survives independently with
 * probability p[l] (stochastic depth): the length of a path sampled during training.
 * Exact O(n²) dynamic programme; result has p.length + 1 entries.
 */
export function poissonBinomial(p: number[]): number[] {
  for (const q of p) if (!(q >= 0 && q <= 1)) throw new RangeError(`survival probabilities must lie in [0, 1], got ${q}`);
  const dist = new Array<number>(p.length + 1).fill(0);
  dist[0] = 1;
  p.forEach((q, i) => {
    // Backwards so dist[k-1] still holds the value before block i was added.
    for (let k = i + 1; k >= 1; k--) dist[k] = dist[k]! * (1 - q) + dist[k - 1]! * q;
    dist[0] = dist[0]! * (1 - q);
  });
  return dist;
}

/**
 * Stochastic depth's linear decay rule (Huang et al. 2016): block l (1..n) survives with
 * p_l = 1 - (l / n)(1 - p_L); the input is layer 0, so the first block is already below 1.
 */
export function linearDecaySurvival(n: number, pL: number): number[] {
  checkCount(n);
  if (!(pL >= 0 && pL <= 1)) throw new RangeError(`p_L must lie in [0, 1], got ${pL}`);
  return Array.from({ length: n }, (_, i) => 1 - ((i + 1) / n) * (1 - pL));
}

function normalised(weights: number[]): { w: number[]; sum: number } {
  if (weights.length === 0) throw new RangeError('no weights given');
  let sum = 0;
  for (const x of weights) {
    if (!(x >= 0 && Number.isFinite(x))) throw new RangeError(`weights must be finite and non-negative, got ${x}`);
    sum += x;
  }
  if (!(sum > 0)) throw new RangeError('weights sum to 0');
  return { w: weights.map((x) => x / sum), sum };
}

/** Mean, standard deviation and mode of a distribution over k = 0..length-1 (normalised first). */
export function summarize(probability: number[]): Summary {
  const { w } = normalised(probability);
  let mean = 0;
  let mode = 0;
  w.forEach((p, k) => {
    mean += k * p;
    if (p > w[mode]!) mode = k;
  });
  let variance = 0;
  w.forEach((p, k) => { variance += p * (k - mean) ** 2; });
  return { mean, sd: Math.sqrt(variance), mode };
}

/**
 * Float sums of masses that are equal on paper (a symmetric binomial, mass = 1) differ in the
 * last bits; compare within this tolerance so ties and thresholds behave as on paper.
 */
const MASS_EPS = 1e-12;

/**
 * Shortest contiguous range [lo, hi] of indices whose weights (normalised to sum 1) hold at
 * least `mass`. Ties: the range holding more mass, then the lower lo.
 */
export function shortestRange(weights: number[], mass: number): LengthRange {
  if (!(mass > 0 && mass <= 1)) throw new RangeError(`mass must lie in (0, 1], got ${mass}`);
  const { w } = normalised(weights);
  const prefix = [0];
  for (const x of w) prefix.push(prefix[prefix.length - 1]! + x);
  let best: LengthRange | null = null;
  // Two pointers: the smallest hi that suffices never decreases as lo grows.
  let hi = 0;
  for (let lo = 0; lo < w.length; lo++) {
    if (hi < lo) hi = lo;
    while (hi < w.length - 1 && prefix[hi + 1]! - prefix[lo]! < mass - MASS_EPS) hi++;
    const held = prefix[hi + 1]! - prefix[lo]!;
    if (held < mass - MASS_EPS) break; // no later lo can reach it either
    const better = best === null
      || hi - lo < best.hi - best.lo
      || (hi - lo === best.hi - best.lo && held > best.mass + MASS_EPS);
    if (better) best = { lo, hi, mass: held };
  }
  // The whole array always holds everything, so best is set.
  const r = best!;
  return { lo: r.lo, hi: r.hi, mass: Math.min(1, r.mass) };
}

/** Normalised mass of weights[lo..hi] (inclusive; clipped to the array). */
export function rangeMass(weights: number[], lo: number, hi: number): number {
  const { w } = normalised(weights);
  let m = 0;
  for (let k = Math.max(0, lo); k <= Math.min(hi, w.length - 1); k++) m += w[k]!;
  return Math.min(1, m);
}

/** Ordinary least squares of y on x; r² = 1 when y is constant (a constant is fitted exactly). */
function fitLine(xs: number[], ys: number[]): { slope: number; intercept: number; r2: number } {
  const m = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / m;
  const my = ys.reduce((a, b) => a + b, 0) / m;
  let sxx = 0;
  let sxy = 0;
  let syy = 0;
  for (let i = 0; i < m; i++) {
    const dx = xs[i]! - mx;
    const dy = ys[i]! - my;
    sxx += dx * dx;
    sxy += dx * dy;
    syy += dy * dy;
  }
  const slope = sxy / sxx;
  const intercept = my - slope * mx;
  let ssRes = 0;
  for (let i = 0; i < m; i++) ssRes += (ys[i]! - (intercept + slope * xs[i]!)) ** 2;
  const r2 = syy === 0 ? 1 : Math.max(0, 1 - ssRes / syy);
  return { slope, intercept, r2 };
}

/**
 * The paper's section 6: weight the mean gradient magnitude of a path of length k by the
 * C(n, k) paths of that length, and find the shortest range of lengths carrying `mass` of
 * the total gradient: the effective paths. meanNorm[k] is the measured mean norm for
 * length k (null = not measured: contributes 0 and is listed in `unmeasured`); entries past
 * the end of meanNorm count as not measured.
 */
export function effectivePaths(meanNorm: (number | null)[], n: number, mass = 0.95): EffectivePaths {
  checkCount(n);
  if (meanNorm.length > n + 1) throw new RangeError(`gradient magnitudes given for ${meanNorm.length} lengths, but ${n} blocks have only ${n + 1} (0..${n})`);
  if (!(mass > 0 && mass <= 1)) throw new RangeError(`mass must lie in (0, 1], got ${mass}`);
  const { counts, probability } = pathLengthDistribution(n);
  const gradientMagnitude: (number | null)[] = [];
  const unmeasured: number[] = [];
  // Natural-log contributions; -Infinity for lengths that contribute nothing.
  const lnContribution: number[] = [];
  const fitK: number[] = [];
  const fitLn: number[] = [];
  for (let k = 0; k <= n; k++) {
    const g = meanNorm[k] ?? null;
    gradientMagnitude.push(g);
    if (g === null) {
      unmeasured.push(k);
      lnContribution.push(-Infinity);
      continue;
    }
    if (!(g >= 0 && Number.isFinite(g))) throw new RangeError(`gradient magnitude for length ${k} must be finite and non-negative, got ${g}`);
    lnContribution.push(g === 0 ? -Infinity : lnBig(counts[k]!) + Math.log(g));
    if (g > 0) {
      fitK.push(k);
      fitLn.push(Math.log(g));
    }
  }
  // Shares relative to the largest contribution, so neither overflow nor underflow of the
  // peak can happen whatever n and however fast the magnitude decays.
  const peak = Math.max(...lnContribution);
  const relative = lnContribution.map((l) => (peak === -Infinity ? 0 : Math.exp(l - peak)));
  const relTotal = relative.reduce((a, b) => a + b, 0);
  const share = relative.map((r) => (relTotal > 0 ? r / relTotal : 0));
  const effective = relTotal > 0 ? shortestRange(relative, mass) : null;
  const pathShare = effective ? rangeMass(probability, effective.lo, effective.hi) : null;
  let fit: ExponentialFit | null = null;
  if (fitK.length >= 2) {
    const { slope, intercept, r2 } = fitLine(fitK, fitLn);
    fit = { factorPerBlock: Math.exp(slope), slope, intercept, r2, points: fitK.length };
  }
  const log10Contribution = lnContribution.map((l, k) => (gradientMagnitude[k] === null ? null : l / Math.LN10));
  return {
    n,
    gradientMagnitude,
    unmeasured,
    log10Contribution,
    log10Total: relTotal > 0 ? (peak + Math.log(relTotal)) / Math.LN10 : -Infinity,
    share,
    effective,
    pathShare,
    fit,
  };
}
