/**
 * Explore's state and the pure reducer over it: which blocks are deleted, the selection, the
 * view, and every measurement made so far. No Ink, no engine: the controller feeds it events.
 */

export type ViewName = 'blocks' | 'paths' | 'ensemble';
export const VIEWS: readonly ViewName[] = ['blocks', 'paths', 'ensemble'];

export interface BlockRow {
  index: number;
  stage: number;
  shortcut: 'identity' | 'projection';
  downsampling: boolean;
  /** Op after the Add (Relu, Clip) or null. */
  post: string | null;
  /** Transformers: what the block is, "layer 3 · attention". */
  sublayer?: string;
}

/** What the explore session is about; fixed for its lifetime. */
export interface ExploreInfo {
  model: { path: string; name: string; sha256: string };
  data: { description: string; size: number };
  blocks: BlockRow[];
  /** Stochastic-depth survival probability per block, when the model says. */
  survival: number[] | null;
  /** The --compare network's file name, when given. */
  compare: string | null;
}

export interface Measurement {
  error: number;
  correct: number;
  total: number;
  nonFinite: number;
  /** Models of more than 10 classes: the share whose label is not among the 5 largest logits. */
  top5Error?: number;
}

export type JobName = 'sweep' | 'ensemble' | 'compare' | 'gradients';
export type JobStatus = 'idle' | 'running' | 'done' | 'cancelled' | 'failed';

export interface Job {
  status: JobStatus;
  done: number;
  total: number;
  /** Why it failed, or what it is doing. */
  message?: string;
}

/** Error against the number k of deleted blocks (k = 0 is the intact network). */
export interface EnsemblePoint {
  k: number;
  mean: number;
  min: number;
  max: number;
  /** Standard deviation of the error over the random sets (0 for a single set). */
  sd: number;
  samples: number;
}

export interface GradientSummary {
  n: number;
  samplesPerK: number;
  /** Mean gradient norm per path length k = 0..n (null: not measured). */
  meanNorm: (number | null)[];
  /** Share of the total gradient magnitude per length (C(n,k)·|g_k|, normalised). */
  share: number[];
  effective: { lo: number; hi: number; mass: number } | null;
  /** Fraction of all 2^n paths in the effective range. */
  pathShare: number | null;
  /** Gradient magnitude factor per extra residual branch (exponential fit). */
  factorPerBlock: number | null;
}

/** The exact decomposition of the gradient by path length on a few images, for one configuration. */
export interface ExactShares {
  /** Blocks the network had (the lengths run 0..n). */
  n: number;
  images: number;
  /** ⟨G_k, G⟩ / ⟨G, G⟩ per length k = 0..n (sums to 1). */
  share: number[];
  /** Shortest range of lengths holding EFFECTIVE_MASS of the gradient. */
  effectiveRange: [number, number];
  /** |Σ_k G_k − G| / |G|. */
  identityError: number;
  /** Wall seconds of the computation (sessions included). */
  seconds: number;
}

export interface Status {
  text: string;
  tone: 'info' | 'error';
}

export interface ExploreState {
  info: ExploreInfo;
  view: ViewName;
  cursor: number;
  help: boolean;
  /** Digits typed after the jump key (':'), or null when its prompt is closed. */
  jump: string | null;
  /** Deleted blocks, ascending. */
  deleted: number[];
  /** Every configuration measured so far, by configKey(deleted). */
  measured: Record<string, Measurement>;
  /** The current configuration's evaluation while it runs. */
  evaluation: { key: string; progress: number } | null;
  jobs: Record<JobName, Job>;
  ensemble: EnsemblePoint[] | null;
  compareEnsemble: EnsemblePoint[] | null;
  gradients: GradientSummary | null;
  /** Exact shares by configKey (computed for each configuration the user visits). */
  exact: Record<string, ExactShares>;
  /** The configuration whose exact shares came last (shown while the current one is computed). */
  exactLast: string | null;
  /** The configuration whose exact shares are being computed, or null. */
  exactRunning: string | null;
  /** The last configuration whose exact shares failed, and why. */
  exactFailed: { key: string; message: string } | null;
  status: Status | null;
  quitting: boolean;
}

export type ExploreEvent =
  | { type: 'move'; delta: number }
  | { type: 'moveTo'; index: number }
  | { type: 'view'; view: ViewName }
  | { type: 'cycleView'; delta: number }
  | { type: 'toggle'; index?: number }
  | { type: 'reset' }
  | { type: 'help'; show?: boolean }
  | { type: 'jump'; text: string | null }
  | { type: 'measured'; key: string; measurement: Measurement }
  | { type: 'evaluation'; evaluation: ExploreState['evaluation'] }
  | { type: 'job'; job: JobName; patch: Partial<Job> }
  | { type: 'ensemble'; which: 'ensemble' | 'compare'; points: EnsemblePoint[] }
  | { type: 'gradients'; summary: GradientSummary }
  | { type: 'exact'; key: string; shares: ExactShares }
  | { type: 'exactRunning'; key: string | null }
  | { type: 'exactFailed'; key: string; message: string }
  | { type: 'status'; status: Status | null }
  | { type: 'quit' };

/** Key of a set of deleted blocks in `measured`: "" for the intact network, else "3,7". */
export function configKey(deleted: readonly number[]): string {
  return [...deleted].sort((a, b) => a - b).join(',');
}

const idle = (): Job => ({ status: 'idle', done: 0, total: 0 });

export function initialState(info: ExploreInfo): ExploreState {
  return {
    info,
    view: 'blocks',
    cursor: 0,
    help: false,
    jump: null,
    deleted: [],
    measured: {},
    evaluation: null,
    jobs: { sweep: idle(), ensemble: idle(), compare: idle(), gradients: idle() },
    ensemble: null,
    compareEnsemble: null,
    gradients: null,
    exact: {},
    exactLast: null,
    exactRunning: null,
    exactFailed: null,
    status: null,
    quitting: false,
  };
}

const clamp = (v: number, lo: number, hi: number) => Math.max(lo, Math.min(hi, v));

export function reduce(s: ExploreState, e: ExploreEvent): ExploreState {
  const n = s.info.blocks.length;
  switch (e.type) {
    case 'move':
      return { ...s, cursor: clamp(s.cursor + e.delta, 0, Math.max(0, n - 1)) };
    case 'moveTo':
      return { ...s, cursor: clamp(e.index, 0, Math.max(0, n - 1)) };
    case 'view':
      return { ...s, view: e.view };
    case 'cycleView': {
      const i = VIEWS.indexOf(s.view);
      return { ...s, view: VIEWS[(((i + e.delta) % VIEWS.length) + VIEWS.length) % VIEWS.length]! };
    }
    case 'toggle': {
      const i = e.index ?? s.cursor;
      if (i < 0 || i >= n) return s;
      const deleted = s.deleted.includes(i) ? s.deleted.filter((d) => d !== i) : [...s.deleted, i].sort((a, b) => a - b);
      return { ...s, deleted };
    }
    case 'reset':
      return s.deleted.length ? { ...s, deleted: [] } : s;
    case 'help':
      return { ...s, help: e.show ?? !s.help };
    case 'jump':
      return { ...s, jump: e.text };
    case 'measured':
      return { ...s, measured: { ...s.measured, [e.key]: e.measurement } };
    case 'evaluation':
      return { ...s, evaluation: e.evaluation };
    case 'job':
      return { ...s, jobs: { ...s.jobs, [e.job]: { ...s.jobs[e.job], ...e.patch } } };
    case 'ensemble':
      return e.which === 'ensemble' ? { ...s, ensemble: e.points } : { ...s, compareEnsemble: e.points };
    case 'gradients':
      return { ...s, gradients: e.summary };
    case 'exact':
      return { ...s, exact: { ...s.exact, [e.key]: e.shares }, exactLast: e.key, exactFailed: s.exactFailed?.key === e.key ? null : s.exactFailed };
    case 'exactRunning':
      return s.exactRunning === e.key ? s : { ...s, exactRunning: e.key };
    case 'exactFailed':
      return { ...s, exactFailed: { key: e.key, message: e.message } };
    case 'status':
      return { ...s, status: e.status };
    case 'quit':
      return { ...s, quitting: true };
  }
}

// ---------------------------------------------------------------- selectors

export function currentKey(s: ExploreState): string {
  return configKey(s.deleted);
}

/** The current configuration's measurement, or null while unknown. */
export function currentMeasurement(s: ExploreState): Measurement | null {
  return s.measured[currentKey(s)] ?? null;
}

export function baseline(s: ExploreState): Measurement | null {
  return s.measured[''] ?? null;
}

/** Error with block i alone deleted, or null until the sweep reaches it. */
export function singleBlock(s: ExploreState, i: number): Measurement | null {
  return s.measured[String(i)] ?? null;
}

/** Blocks left in the current network: n minus the deleted ones. */
export function keptBlocks(s: ExploreState): number[] {
  return s.info.blocks.map((b) => b.index).filter((i) => !s.deleted.includes(i));
}

/** Survival probabilities of the blocks still present, when known. */
export function keptSurvival(s: ExploreState): number[] | null {
  const p = s.info.survival;
  return p ? keptBlocks(s).map((i) => p[i]!) : null;
}

/** A file-name part for the current configuration: "deleted-3-7" or "intact". */
export function configSlug(deleted: readonly number[]): string {
  return deleted.length ? `deleted-${[...deleted].sort((a, b) => a - b).join('-')}` : 'intact';
}
