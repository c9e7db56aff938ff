/**
 * The one seeded random source of reslens (mulberry32): every sampled subset, permutation
 * and batch comes from here, so a seed reproduces a run exactly.
 */
export class Random {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }

  /**
   * The stream of one named part of a study (e.g. "reorder", "k=4"), from the run's seed and the
   * name alone, so adding or removing a part never changes what another part draws.
   */
  static stream(seed: number, part: string): Random {
    let h = 0x811c9dc5; // FNV-1a over the name's UTF-16 units
    for (let i = 0; i < part.length; i++) h = Math.imul(h ^ part.charCodeAt(i), 0x01000193);
    // murmur3's finaliser mixes seed and name, so nearby seeds or names give unrelated streams
    let x = (h ^ Math.imul(Math.floor(seed) >>> 0, 0x9e3779b9) ^ Math.floor(seed / 4294967296)) >>> 0;
    x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
    x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
    return new Random((x ^ (x >>> 16)) >>> 0);
  }

  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Standard normal (Box-Muller). */
  normal(): number {
    const u = 1 - this.next();
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  shuffle<T>(xs: T[]): T[] {
    const a = xs.slice();
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [a[i], a[j]] = [a[j]!, a[i]!];
    }
    return a;
  }

  /** k distinct items of `xs`, in ascending position order. */
  sample<T>(xs: T[], k: number): T[] {
    const idx = this.shuffle([...xs.keys()]).slice(0, k).sort((a, b) => a - b);
    return idx.map((i) => xs[i]!);
  }
}
