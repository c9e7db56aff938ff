/**
 * Explore without a terminal: holds the state, turns actions into reducer events, and runs
 * the long work (the current configuration's evaluation and exact shares, the single-block
 * sweep, the ensemble curves, gradient runs) in the background, each cancellable through its own
 * AbortController. The Ink app only renders getState() and calls act().
 */
import { Interrupted } from '../../errors.js';
import { effectivePaths } from '../../paths/distribution.js';
import type { ExploreBackend, GradientRun } from './backend.js';
import { displayPath } from './files.js';
import { actionFor, appliesIn, bindingFor, jumpKey, splitKeys, type Action, type KeyPress } from './keymap.js';
import { PRIORITY } from './scheduler.js';
import { shown } from '../../text.js';
import {
  baseline, configKey, currentKey, currentMeasurement, initialState, keptBlocks, reduce, singleBlock,
  type ExploreEvent, type ExploreState, type GradientSummary, type JobName,
} from './state.js';

/** Share of the total gradient that the effective range of path lengths must carry (as reslens gradients). */
export const EFFECTIVE_MASS = 0.9;

export interface StartOptions {
  /** Exact shares of the current network, on start and after every change (default true). */
  exact?: boolean;
  sweep?: boolean;
  ensemble?: boolean;
}

function aborted(e: unknown, signal: AbortSignal): boolean {
  return e instanceof Interrupted || signal.aborted;
}

function message(e: unknown): string {
  return shown(e instanceof Error ? e.message.split('\n')[0]! : String(e));
}

export class ExploreController {
  private state: ExploreState;
  private listeners = new Set<() => void>();
  private evaluation: { key: string; abort: AbortController; promise: Promise<void> } | null = null;
  private exactRun: { key: string; abort: AbortController; promise: Promise<void> } | null = null;
  private running = new Map<JobName, { abort: AbortController; promise: Promise<void> }>();
  private gradientRuns: GradientRun[] = [];
  private closed = false;

  constructor(readonly backend: ExploreBackend) {
    this.state = initialState(backend.info);
  }

  // ------------------------------------------------------------ store

  getState = (): ExploreState => this.state;

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  dispatch(e: ExploreEvent): void {
    const next = reduce(this.state, e);
    if (next === this.state) return;
    this.state = next;
    for (const l of this.listeners) l();
  }

  private status(text: string, tone: 'info' | 'error' = 'info'): void {
    this.dispatch({ type: 'status', status: { text, tone } });
  }

  // ------------------------------------------------------------ actions

  /** Starts the background work: the current configuration, the single-block sweep, the ensemble curves. */
  start(o: StartOptions = {}): void {
    this.ensureCurrent();
    if (o.exact ?? true) this.ensureExact();
    if (o.sweep ?? true) this.startSweep();
    if (o.ensemble ?? true) {
      this.startEnsemble('ensemble');
      if (this.state.info.compare) this.startEnsemble('compare');
    }
  }

  /**
   * One input event from the terminal: each key in it goes to the jump prompt while that is
   * open (a key it does not take closes it and then counts as usual), else to its action.
   */
  keys(input: string, key: KeyPress, ctx: { page?: number } = {}): void {
    for (const k of splitKeys(input, key)) {
      if (this.state.jump !== null && this.jumpInput(k.input, k.key)) continue;
      const action = actionFor(k.input, k.key);
      if (action) this.act(action, ctx);
    }
  }

  /** A key at the jump prompt; false when the prompt does not take it (the prompt is then closed). */
  private jumpInput(input: string, key: KeyPress): boolean {
    const typed = this.state.jump ?? '';
    const k = jumpKey(input, key);
    if (k === null || k === 'cancel') this.dispatch({ type: 'jump', text: null });
    else if (k === 'back') this.dispatch({ type: 'jump', text: typed.slice(0, -1) });
    else if (k === 'enter') this.jumpTo(typed);
    else if (typed.length < 6) this.dispatch({ type: 'jump', text: typed + k.digit });
    return k !== null;
  }

  private jumpTo(typed: string): void {
    this.dispatch({ type: 'jump', text: null });
    if (!typed) return;
    const n = this.state.info.blocks.length;
    const i = Number(typed);
    if (i >= n) return this.status(`no block ${i}: this network's blocks are 0–${n - 1}`, 'error');
    this.dispatch({ type: 'moveTo', index: i });
    this.dispatch({ type: 'status', status: null });
  }

  /** Does what a key bound to `action` does. `page`: rows in one screen of the block list. */
  act(action: Action, ctx: { page?: number } = {}): void {
    const s = this.state;
    if (this.closed || s.quitting) return;
    if (s.help) {
      // Over the key list only closing it and quitting do anything.
      if (action === 'help' || action === 'closeHelp') this.dispatch({ type: 'help', show: false });
      if (action === 'quit') this.quit();
      return;
    }
    if (!appliesIn(bindingFor(action), s.view)) {
      if (action === 'toggle') this.status('Space deletes a block in the blocks view; press 1 to go there');
      if (action === 'gradients') this.status('g runs gradients in the paths view; press 2 to go there');
      if (action === 'jump') this.status(': jumps to a block in the blocks view; press 1 to go there');
      return;
    }
    const page = Math.max(1, ctx.page ?? 10);
    switch (action) {
      case 'up': return this.dispatch({ type: 'move', delta: -1 });
      case 'down': return this.dispatch({ type: 'move', delta: 1 });
      case 'pageUp': return this.dispatch({ type: 'move', delta: -page });
      case 'pageDown': return this.dispatch({ type: 'move', delta: page });
      case 'first': return this.dispatch({ type: 'moveTo', index: 0 });
      case 'last': return this.dispatch({ type: 'moveTo', index: s.info.blocks.length - 1 });
      case 'jump': return this.dispatch({ type: 'jump', text: '' });
      case 'nextView': return this.viewed({ type: 'cycleView', delta: 1 });
      case 'prevView': return this.viewed({ type: 'cycleView', delta: -1 });
      case 'viewBlocks': return this.viewed({ type: 'view', view: 'blocks' });
      case 'viewPaths': return this.viewed({ type: 'view', view: 'paths' });
      case 'viewEnsemble': return this.viewed({ type: 'view', view: 'ensemble' });
      case 'toggle': return this.toggle();
      case 'reset': return this.reset();
      case 'export': return void this.exportModel();
      case 'save': return void this.save();
      case 'gradients': return this.toggleGradients();
      case 'help': return this.dispatch({ type: 'help', show: true });
      case 'closeHelp': return;
      case 'quit': return this.quit();
    }
  }

  /** A view change; the paths view needs the exact shares of the current network. */
  private viewed(e: ExploreEvent): void {
    this.dispatch(e);
    this.ensureExact();
  }

  /**
   * Whether the paths panel is on screen: the paths view, or the blocks view of a terminal wide
   * enough to show it beside the list (the app says; without an app, the paths view).
   */
  private panelShown: boolean | null = null;
  private get pathsShown(): boolean {
    return this.panelShown ?? this.state.view === 'paths';
  }
  setPathsShown(shown: boolean): void {
    if (this.panelShown === shown) return;
    this.panelShown = shown;
    this.ensureExact();
  }

  toggle(index?: number): void {
    this.dispatch({ type: 'toggle', index });
    this.ensureCurrent();
    this.ensureExact();
  }

  reset(): void {
    this.dispatch({ type: 'reset' });
    this.ensureCurrent();
    this.ensureExact();
  }

  /** Cancels everything and marks the session as ending (the app exits on `quitting`). */
  quit(): void {
    this.cancelAll();
    this.dispatch({ type: 'quit' });
  }

  /** Cancels all work and waits until none is running (before the runtime is closed). */
  async close(): Promise<void> {
    this.closed = true;
    this.cancelAll();
    const pending = [this.evaluation?.promise, this.exactRun?.promise, ...[...this.running.values()].map((j) => j.promise)];
    await Promise.allSettled(pending.filter((p): p is Promise<void> => !!p));
  }

  private cancelAll(): void {
    this.evaluation?.abort.abort();
    this.exactRun?.abort.abort();
    for (const j of this.running.values()) j.abort.abort();
  }

  // ------------------------------------------------------------ the current configuration

  /**
   * Makes sure the current configuration gets measured: known → nothing to run (and a run
   * for an older configuration is cancelled); unknown → one evaluation, replacing any other.
   */
  private ensureCurrent(): void {
    if (this.closed || this.state.quitting) return;
    const key = currentKey(this.state);
    if (this.state.measured[key]) {
      if (this.evaluation) {
        this.evaluation.abort.abort();
        this.evaluation = null;
      }
      if (this.state.evaluation) this.dispatch({ type: 'evaluation', evaluation: null });
      return;
    }
    if (this.evaluation?.key === key) return;
    this.evaluation?.abort.abort();
    const abort = new AbortController();
    const deleted = [...this.state.deleted];
    this.dispatch({ type: 'evaluation', evaluation: { key, progress: 0 } });
    const mine = () => this.evaluation?.key === key && this.evaluation.abort === abort;
    const promise = this.backend
      .evaluate(deleted, {
        priority: PRIORITY.current,
        signal: abort.signal,
        onProgress: (done, total) => {
          if (mine()) this.dispatch({ type: 'evaluation', evaluation: { key, progress: total ? done / total : 0 } });
        },
      })
      .then((m) => {
        this.dispatch({ type: 'measured', key, measurement: m });
        if (mine()) {
          this.evaluation = null;
          this.dispatch({ type: 'evaluation', evaluation: null });
        }
      })
      .catch((e) => {
        if (aborted(e, abort.signal)) return;
        if (mine()) {
          this.evaluation = null;
          this.dispatch({ type: 'evaluation', evaluation: null });
        }
        this.status(`evaluation failed: ${message(e)}`, 'error');
      });
    this.evaluation = { key, abort, promise };
  }

  /**
   * The exact shares of the current network, off the render path: known → nothing to run;
   * unknown → one computation, and a newer change cancels an older one still running.
   */
  private ensureExact(): void {
    if (this.closed || this.state.quitting) return;
    // Only the paths panel shows them: hidden, they would take a core from the sweeps for
    // nothing (3-4 s of CPU a change on resnet56); a computation already running is finished.
    if (!this.pathsShown) return;
    const key = currentKey(this.state);
    if (this.exactRun?.key === key) return;
    this.exactRun?.abort.abort();
    this.exactRun = null;
    if (this.state.exact[key]) return this.dispatch({ type: 'exactRunning', key: null });
    const abort = new AbortController();
    this.dispatch({ type: 'exactRunning', key });
    const mine = () => this.exactRun?.abort === abort;
    const done = () => {
      if (!mine()) return;
      this.exactRun = null;
      this.dispatch({ type: 'exactRunning', key: null });
    };
    const promise = this.backend
      .exact([...this.state.deleted], { signal: abort.signal })
      .then((shares) => {
        this.dispatch({ type: 'exact', key, shares });
        done();
      })
      .catch((e) => {
        if (aborted(e, abort.signal)) return;
        done();
        this.dispatch({ type: 'exactFailed', key, message: message(e) });
        this.status(`exact shares failed: ${message(e)}`, 'error');
      });
    this.exactRun = { key, abort, promise };
  }

  // ------------------------------------------------------------ background jobs

  private runJob(name: JobName, work: (signal: AbortSignal, progress: (done: number, total: number) => void) => Promise<string | void>): void {
    if (this.running.has(name) || this.closed || this.state.quitting) return;
    const abort = new AbortController();
    this.dispatch({ type: 'job', job: name, patch: { status: 'running', done: 0, total: 0, message: undefined } });
    const promise = work(abort.signal, (done, total) => this.dispatch({ type: 'job', job: name, patch: { done, total } }))
      .then((note) => this.dispatch({ type: 'job', job: name, patch: { status: 'done', ...(note ? { message: note } : {}) } }))
      .catch((e) => {
        if (aborted(e, abort.signal)) {
          this.dispatch({ type: 'job', job: name, patch: { status: 'cancelled' } });
          return;
        }
        this.dispatch({ type: 'job', job: name, patch: { status: 'failed', message: message(e) } });
        this.status(`${name} failed: ${message(e)}`, 'error');
      })
      .finally(() => this.running.delete(name));
    this.running.set(name, { abort, promise });
  }

  /** Baseline, then each block deleted alone; configurations already measured are skipped. */
  startSweep(): void {
    const blocks = this.state.info.blocks.map((b) => b.index);
    const configs: number[][] = [[], ...blocks.map((b) => [b])];
    this.runJob('sweep', async (signal, progress) => {
      for (let i = 0; i < configs.length; i++) {
        const key = configKey(configs[i]!);
        progress(i, configs.length);
        // The user's evaluation of the same configuration is already on its way: wait for it.
        if (this.evaluation?.key === key) await this.evaluation.promise;
        if (signal.aborted) throw new Interrupted();
        if (this.state.measured[key]) continue;
        const m = await this.backend.evaluate(configs[i]!, {
          priority: PRIORITY.sweep,
          signal,
          onProgress: (done, total) => progress(i + (total ? done / total : 0), configs.length),
        });
        this.dispatch({ type: 'measured', key, measurement: m });
        this.ensureCurrent();
      }
      progress(configs.length, configs.length);
    });
  }

  startEnsemble(which: 'ensemble' | 'compare'): void {
    this.runJob(which, async (signal, progress) => {
      const points = await this.backend.ensemble(which, { signal, onProgress: progress });
      this.dispatch({ type: 'ensemble', which, points });
    });
  }

  /** g: starts a gradient run (adding its samples to earlier runs), or cancels the one running. */
  toggleGradients(): void {
    const job = this.running.get('gradients');
    if (job) {
      job.abort.abort();
      this.status('gradient run cancelled');
      return;
    }
    const seed = this.gradientRuns.length + 1;
    this.runJob('gradients', async (signal, progress) => {
      const run = await this.backend.gradients({ seed, signal, onProgress: progress });
      this.gradientRuns.push(run);
      this.dispatch({ type: 'gradients', summary: summarizeGradients(this.gradientRuns) });
      return `${this.gradientRuns.length * run.samplesPerK} samples per length`;
    });
  }

  // ------------------------------------------------------------ files

  async exportModel(): Promise<void> {
    const deleted = [...this.state.deleted];
    try {
      const file = await this.backend.exportModel(deleted);
      this.status(`wrote ${displayPath(file)} (${deleted.length ? `blocks ${deleted.join(',')} deleted` : 'intact'})`);
    } catch (e) {
      this.status(`export failed: ${message(e)}`, 'error');
    }
  }

  /** The JSON that s writes. */
  stateDocument(): Record<string, unknown> {
    const s = this.state;
    const cur = currentMeasurement(s);
    const base = baseline(s);
    return {
      command: 'explore',
      model: { path: s.info.model.path, sha256: s.info.model.sha256 },
      data: s.info.data,
      blocks: s.info.blocks.length,
      deleted: s.deleted,
      paths: { n: keptBlocks(s).length, count: (1n << BigInt(keptBlocks(s).length)).toString() },
      error: cur ? countedError(cur) : null,
      correct: cur?.correct ?? null,
      total: cur?.total ?? null,
      baselineError: base ? countedError(base) : null,
      singleBlockError: s.info.blocks.map((b) => {
        const m = singleBlock(s, b.index);
        return m ? countedError(m) : null;
      }),
      ensemble: s.ensemble && s.ensemble.map(measuredPoint),
      compareEnsemble: s.compareEnsemble && s.compareEnsemble.map(measuredPoint),
      gradients: s.gradients,
      exact: s.exact[currentKey(s)] ?? null,
      savedAt: new Date().toISOString(),
    };
  }

  async save(): Promise<void> {
    const deleted = [...this.state.deleted];
    try {
      const file = await this.backend.saveState(this.stateDocument(), deleted);
      const cur = currentMeasurement(this.state);
      this.status(`saved ${displayPath(file)}${cur ? '' : ' (error still being measured: saved as null)'}`);
    } catch (e) {
      this.status(`save failed: ${message(e)}`, 'error');
    }
  }
}

/** Pools gradient runs (weighted by samples) and weighs each length by its C(n, k) paths. */
export function summarizeGradients(runs: GradientRun[]): GradientSummary {
  const n = runs[0]!.n;
  const sum: number[] = Array(n + 1).fill(0);
  const count: number[] = Array(n + 1).fill(0);
  for (const r of runs) {
    r.meanNorm.forEach((m, k) => {
      if (m === null) return;
      sum[k]! += m * r.samplesPerK;
      count[k]! += r.samplesPerK;
    });
  }
  const meanNorm = sum.map((x, k) => (count[k] ? x / count[k]! : null));
  const eff = effectivePaths(meanNorm, n, EFFECTIVE_MASS);
  return {
    n,
    samplesPerK: runs.reduce((a, r) => a + r.samplesPerK, 0),
    meanNorm,
    share: eff.share,
    effective: eff.effective,
    pathShare: eff.pathShare,
    factorPerBlock: eff.fit ? eff.fit.factorPerBlock : null,
  };
}

/**
 * Errors as saved: wrong/total from the counts (1 - correct/total gives 0.10999999999999999 for
 * 89/100), and means over random sets at 12 significant digits, finer than any count resolves.
 */
function countedError(m: { correct: number; total: number }): number {
  return m.total ? (m.total - m.correct) / m.total : 0;
}

function measuredPoint<T extends { mean: number; min: number; max: number }>(p: T): T {
  const r = (x: number) => Number(x.toPrecision(12));
  return { ...p, mean: r(p.mean), min: r(p.min), max: r(p.max) };
}
