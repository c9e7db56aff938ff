/** @jsxRuntime classic */
/**
 * reslens explore without a terminal: the keymap table (and the README section made from it),
 * the reducer, the controller's cancelling, the priority gate, and the Ink app rendered with
 * ink-testing-library on a small network built here.
 */
import React from 'react'; // tsx compiles test files (outside tsconfig's include) with React.createElement: hence the classic pragma
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { render } from 'ink-testing-library';
import { Engine } from '../src/engine/engine.js';
import { analyseModel, type Network } from '../src/engine/network.js';
import { Runtime } from '../src/engine/session.js';
import { Interrupted } from '../src/errors.js';
import { loadModel, modelFromBytes } from '../src/loader/model.js';
import { encodeModel } from '../src/loader/proto.js';
import { intactProgram } from '../src/surgery/split.js';
import { App } from '../src/ui/explore/App.js';
import { blockRows, EngineBackend, type ExploreBackend, type GradientRun, type JobOptions } from '../src/ui/explore/backend.js';
import { BlocksView, scrollWindow } from '../src/ui/explore/BlocksView.js';
import { errorLineText } from '../src/ui/explore/ErrorLine.js';
import { ExploreController } from '../src/ui/explore/controller.js';
import { actionFor, actionsFor, helpBar, jumpKey, KEYMAP, keysMarkdown, splitKeys, type KeyPress } from '../src/ui/explore/keymap.js';
import { pointChart } from '../src/ui/explore/charts.js';
import { Gate } from '../src/ui/explore/scheduler.js';
import { configKey, initialState, reduce, VIEWS, type EnsemblePoint, type ExactShares, type ExploreInfo, type Measurement } from '../src/ui/explore/state.js';
import { buildNet, randomInput } from './helpers/build.js';
import { memoryDataset } from './helpers/memory-dataset.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, cond: () => boolean, ms = 10000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const DOWN = '\u001B[B';
const UP = '\u001B[A';
const ESC = '\u001B';

// ------------------------------------------------------------------ keymap

describe('keymap', () => {
  test('every action has keys, and no key stands for two actions', () => {
    const seen = new Map<string, string>();
    for (const b of KEYMAP) {
      assert.ok(b.keys.length > 0, b.action);
      assert.ok(b.description.length > 0, b.action);
      for (const k of b.keys) {
        const id = `${k.named ?? k.input}|${!!k.ctrl}|${!!k.shift}`;
        assert.ok(!seen.has(id), `${k.label} is bound to ${seen.get(id)} and ${b.action}`);
        seen.set(id, b.action);
      }
    }
    assert.equal(new Set(KEYMAP.map((b) => b.action)).size, KEYMAP.length);
  });

  test('each key of the table dispatches its action', () => {
    for (const b of KEYMAP) {
      for (const k of b.keys) {
        const key: KeyPress = { ctrl: !!k.ctrl, shift: !!k.shift, ...(k.named ? { [k.named]: true } : {}) };
        assert.equal(actionFor(k.named ? '' : k.input!, key), b.action, k.label);
      }
    }
    assert.equal(actionFor('z', {}), null);
    assert.equal(actionFor('c', {}), null, 'c without Ctrl is nothing');
    assert.equal(actionFor('', { tab: true, shift: true }), 'prevView');
  });

  test('keys typed ahead arrive as one run of text and each still counts', () => {
    assert.deepEqual(actionsFor('jj ', {}), ['down', 'down', 'toggle']);
    assert.deepEqual(actionsFor('k\t2?', {}), ['up', 'nextView', 'viewPaths', 'help']);
    assert.deepEqual(actionsFor('zq\u0003', {}), ['quit', 'quit']);
    assert.deepEqual(actionsFor('', { downArrow: true }), ['down']);
    assert.deepEqual(actionsFor('zz', {}), []);
    assert.deepEqual(splitKeys(':12\r', {}), [{ input: ':', key: {} }, { input: '1', key: {} }, { input: '2', key: {} }, { input: '', key: { return: true } }]);
  });

  test('the jump prompt takes digits, Backspace, Enter and Esc, and nothing else', () => {
    assert.deepEqual(jumpKey('7', {}), { digit: '7' });
    assert.equal(jumpKey('', { return: true }), 'enter');
    assert.equal(jumpKey('', { escape: true }), 'cancel');
    assert.equal(jumpKey('', { backspace: true }), 'back');
    assert.equal(jumpKey('j', {}), null);
    assert.equal(jumpKey('', { downArrow: true }), null);
    assert.equal(jumpKey('c', { ctrl: true }), null);
    assert.equal(actionFor(':', {}), 'jump');
    assert.match(helpBar('blocks', 80), /:N↵ jump/, 'the help line names the jump key');
  });

  test('the brief\'s keys: arrows or j/k, Tab or 1-3, Space, r, x, s, g, ?, q and Ctrl-C', () => {
    assert.equal(actionFor('', { upArrow: true }), 'up');
    assert.equal(actionFor('k', {}), 'up');
    assert.equal(actionFor('', { downArrow: true }), 'down');
    assert.equal(actionFor('j', {}), 'down');
    assert.equal(actionFor('', { tab: true }), 'nextView');
    assert.deepEqual(['1', '2', '3'].map((c) => actionFor(c, {})), ['viewBlocks', 'viewPaths', 'viewEnsemble']);
    assert.deepEqual([' ', 'r', 'x', 's', 'g', '?', 'q'].map((c) => actionFor(c, {})), ['toggle', 'reset', 'export', 'save', 'gradients', 'help', 'quit']);
    assert.equal(actionFor('c', { ctrl: true }), 'quit');
  });

  test('the help bar fits 80 and 40 columns and always names help and quit', () => {
    for (const view of VIEWS) {
      for (const w of [200, 80, 40]) {
        const bar = helpBar(view, w);
        assert.ok([...bar].length <= w, `${view} at ${w}: ${bar}`);
        assert.match(bar, /\? help/);
        assert.match(bar, /q\/\^C quit/);
      }
    }
    assert.match(helpBar('blocks', 80), /↑↓\/jk move.*Space delete/);
    assert.match(helpBar('paths', 80), /g gradients/);
    assert.doesNotMatch(helpBar('paths', 80), /Space/, 'Space does nothing in the paths view');
  });

  test('README\'s Keys section is the table (cannot drift)', () => {
    const readme = readFileSync('README.md', 'utf8');
    const start = readme.indexOf('<!-- keys:start -->');
    const end = readme.indexOf('<!-- keys:end -->');
    assert.ok(start >= 0 && end > start, 'README.md has <!-- keys:start --> ... <!-- keys:end -->');
    const section = readme.slice(readme.indexOf('\n', start) + 1, end);
    assert.equal(section, keysMarkdown(), 'README.md Keys section differs from keysMarkdown() in src/ui/explore/keymap.ts: paste the new table');
  });
});

// ------------------------------------------------------------------ reducer

const INFO: ExploreInfo = {
  model: { path: 'm.onnx', name: 'm', sha256: 'abc' },
  data: { description: 'memory', size: 10 },
  blocks: [0, 1, 2, 3].map((i) => ({ index: i, stage: i < 2 ? 0 : 1, shortcut: i === 2 ? 'projection' : 'identity', downsampling: i === 2, post: 'Relu' })),
  survival: null,
  compare: null,
};

describe('state', () => {
  test('toggle, reset, move and views', () => {
    let s = initialState(INFO);
    s = reduce(s, { type: 'toggle' });
    assert.deepEqual(s.deleted, [0]);
    s = reduce(reduce(s, { type: 'move', delta: 3 }), { type: 'toggle' });
    assert.deepEqual(s.deleted, [0, 3]);
    s = reduce(s, { type: 'toggle', index: 0 });
    assert.deepEqual(s.deleted, [3]);
    assert.equal(reduce(s, { type: 'move', delta: 99 }).cursor, 3);
    assert.equal(reduce(s, { type: 'move', delta: -99 }).cursor, 0);
    assert.deepEqual(reduce(s, { type: 'reset' }).deleted, []);
    assert.equal(reduce(s, { type: 'cycleView', delta: 1 }).view, 'paths');
    assert.equal(reduce(s, { type: 'cycleView', delta: -1 }).view, 'ensemble');
    assert.equal(configKey([7, 3]), '3,7');
    assert.equal(configKey([]), '');
  });

  test('the scroll window keeps the cursor visible', () => {
    assert.equal(scrollWindow(0, 5, 10), 0);
    assert.equal(scrollWindow(26, 27, 10), 17);
    for (let c = 0; c < 54; c++) {
      const top = scrollWindow(c, 54, 16);
      assert.ok(c >= top && c < top + 16 && top >= 0 && top + 16 <= 54);
    }
  });
});

// ------------------------------------------------------------------ controller with a scripted backend

class ScriptedBackend implements ExploreBackend {
  info = INFO;
  evals: { deleted: number[]; priority: number; signal: AbortSignal; resolve: (m: Measurement) => void }[] = [];
  evaluate(deleted: number[], o: JobOptions & { priority: number }): Promise<Measurement> {
    return new Promise((resolve, reject) => {
      this.evals.push({ deleted, priority: o.priority, signal: o.signal, resolve });
      o.signal.addEventListener('abort', () => reject(new Interrupted()));
    });
  }
  ensemble(): Promise<EnsemblePoint[]> {
    return new Promise(() => {});
  }
  gradients(o: JobOptions): Promise<GradientRun> {
    return new Promise((_, reject) => o.signal.addEventListener('abort', () => reject(new Interrupted())));
  }
  exacts: { deleted: number[]; signal: AbortSignal; resolve: (x: ExactShares) => void }[] = [];
  exact(deleted: number[], o: JobOptions): Promise<ExactShares> {
    return new Promise((resolve, reject) => {
      this.exacts.push({ deleted, signal: o.signal, resolve });
      o.signal.addEventListener('abort', () => reject(new Interrupted()));
    });
  }
  async exportModel(): Promise<string> {
    return 'x.onnx';
  }
  async saveState(): Promise<string> {
    return 's.json';
  }
}

const m = (error: number): Measurement => ({ error, correct: 0, total: 10, nonFinite: 0 });

describe('controller', () => {
  test('a toggle cancels the evaluation still running for the previous configuration', async () => {
    const b = new ScriptedBackend();
    const c = new ExploreController(b);
    c.start({ sweep: false, ensemble: false });
    assert.equal(b.evals.length, 1, 'the intact network is measured at once');
    b.evals[0]!.resolve(m(0.1));
    await sleep(0);
    c.toggle(1);
    c.toggle(2);
    assert.equal(b.evals.length, 3);
    assert.ok(b.evals[1]!.signal.aborted, 'the evaluation of {1} was cancelled');
    assert.ok(!b.evals[2]!.signal.aborted);
    assert.deepEqual(b.evals[2]!.deleted, [1, 2]);
    assert.equal(c.getState().evaluation?.key, '1,2');
    b.evals[2]!.resolve(m(0.3));
    await sleep(0);
    assert.equal(c.getState().evaluation, null);
    assert.equal(c.getState().measured['1,2']!.error, 0.3);
    // Back to a configuration already measured: no evaluation.
    c.reset();
    assert.equal(b.evals.length, 3);
    assert.equal(c.getState().evaluation, null);
    c.toggle(1);
    c.toggle(2);
    assert.equal(b.evals.length, 4, '{1} was cancelled before it was measured, so it runs again');
    await c.close();
  });

  test('exact shares: computed for each configuration, a newer change cancels the older, a known one shows at once, drawn with their lengths', async () => {
    const b = new ScriptedBackend();
    const c = new ExploreController(b);
    const app = render(<App controller={c} size={{ columns: 100, rows: 30 }} />);
    const shares = (n: number, peak: number): ExactShares => {
      const share = Array.from({ length: n + 1 }, (_, k) => (k === peak ? 0.7 : 0.3 / n));
      return { n, images: 16, share, effectiveRange: [peak, peak + 1], identityError: 1e-7, seconds: 1 };
    };
    try {
      c.start({ sweep: false, ensemble: false });
      c.act('toggle');
      await sleep(50);
      assert.equal(b.exacts.length, 0, 'nothing computed while the paths view is not shown');
      c.act('toggle');
      c.act('viewPaths');
      await sleep(50);
      assert.equal(b.exacts.length, 1);
      assert.deepEqual(b.exacts[0]!.deleted, []);
      assert.match(app.lastFrame()!, /exact gradient share by path length: computing…/);
      assert.match(app.lastFrame()!, /exact shares…/, 'the jobs line says it is running');
      b.exacts[0]!.resolve(shares(4, 2));
      await sleep(50);
      assert.match(app.lastFrame()!, /exact gradient share by path length k = 0–4 \(16 images\): 2–3 hold \d+%, peak k = 2 \(70\.0%\)/);
      c.toggle(1);
      c.toggle(2);
      assert.equal(b.exacts.length, 3);
      assert.ok(b.exacts[1]!.signal.aborted, 'the exact shares of {1} were cancelled by the newer change');
      assert.deepEqual(b.exacts[2]!.deleted, [1, 2]);
      await sleep(50);
      assert.match(app.lastFrame()!, /k = 0–4 \(16 images, shown for the intact network; computing…\)/, 'the last shares stay, labelled, while the new ones are computed');
      b.exacts[2]!.resolve(shares(2, 1));
      await sleep(50);
      assert.match(app.lastFrame()!, /exact gradient share by path length k = 0–2 \(16 images\): 1–2 hold \d+%, peak k = 1/);
      assert.equal(c.getState().exactRunning, null);
      c.reset();
      assert.equal(b.exacts.length, 3, 'the intact network is known: nothing to compute');
      await sleep(50);
      assert.match(app.lastFrame()!, /k = 0–4 \(16 images\)/);
    } finally {
      app.unmount();
      await c.close();
    }
  });

  test('the sweep fills single-block errors, behind the user\'s evaluation, and close() cancels it', async () => {
    const b = new ScriptedBackend();
    const c = new ExploreController(b);
    c.start({ ensemble: false });
    assert.equal(b.evals.length, 1, 'the sweep waits for the intact evaluation already running');
    b.evals[0]!.resolve(m(0.1));
    await waitFor('the sweep to ask for block 0', () => b.evals.length === 2);
    assert.deepEqual(b.evals[1]!.deleted, [0]);
    assert.ok(b.evals[1]!.priority > b.evals[0]!.priority, 'background work yields to the current configuration');
    b.evals[1]!.resolve(m(0.15));
    await waitFor('block 1', () => b.evals.length === 3);
    assert.equal(c.getState().measured['0']!.error, 0.15);
    assert.equal(c.getState().jobs.sweep.status, 'running');
    await c.close();
    assert.ok(b.evals[2]!.signal.aborted);
    assert.equal(c.getState().jobs.sweep.status, 'cancelled');
  });

  test('g starts a gradient run and g again cancels it', async () => {
    const b = new ScriptedBackend();
    const c = new ExploreController(b);
    c.act('viewPaths');
    c.act('gradients');
    assert.equal(c.getState().jobs.gradients.status, 'running');
    c.act('gradients');
    await waitFor('cancelled', () => c.getState().jobs.gradients.status === 'cancelled');
    assert.match(c.getState().status!.text, /cancelled/);
    c.act('viewBlocks');
    c.act('gradients');
    assert.equal(c.getState().jobs.gradients.status, 'cancelled', 'g does nothing in the blocks view');
    assert.match(c.getState().status!.text, /paths view/);
    await c.close();
  });
});

describe('app with a scripted backend', () => {
  test('a long block list scrolls with the selection and fits 80x24', async () => {
    const b = new ScriptedBackend();
    b.info = { ...INFO, blocks: Array.from({ length: 30 }, (_, i) => ({ index: i, stage: Math.floor(i / 10), shortcut: 'identity' as const, downsampling: false, post: 'Relu' })) };
    const c = new ExploreController(b);
    const app = render(<App controller={c} size={{ columns: 80, rows: 24 }} />);
    try {
      await sleep(100);
      assert.match(app.lastFrame()!, /rows 1–16 of 30/);
      app.stdin.write('\u001B[F'); // End
      await sleep(50);
      const frame = app.lastFrame()!;
      assert.match(frame, /› \[ \]\s+29\s/);
      assert.doesNotMatch(frame, /\[ \]\s+0\s+0 identity/);
      assert.match(frame, /rows 15–30 of 30/);
      const lines = frame.split('\n');
      assert.ok(lines.length <= 23);
      for (const l of lines) assert.ok([...l].length <= 80, l);
      app.stdin.write('\u001B[5~'); // PgUp
      await sleep(50);
      assert.match(app.lastFrame()!, /› \[ \]\s+13\s/);
      app.stdin.write('\u001B[H'); // Home
      await sleep(50);
      assert.match(app.lastFrame()!, /› \[ \]\s+0\s/);
      // A terminal too small for the layout says so instead of drawing garbage.
      // Jump by number: ':', digits, Enter (typed one by one, or arriving as one run of text).
      for (const k of [':', '2', '5']) app.stdin.write(k);
      await sleep(50);
      assert.match(app.lastFrame()!, /go to block: 25▏ \(0–29; Enter jumps, Esc cancels\)/);
      app.stdin.write('\r');
      await sleep(50);
      assert.match(app.lastFrame()!, /› \[ \]\s+25\s/);
      assert.doesNotMatch(app.lastFrame()!, /go to block/);
      app.stdin.write(':123\u007f\r');
      await sleep(50);
      assert.match(app.lastFrame()!, /› \[ \]\s+12\s/, 'Backspace took the 3 back');
      app.stdin.write(':99\r');
      await sleep(50);
      assert.match(app.lastFrame()!, /no block 99: this network's blocks are 0–29/);
      assert.match(app.lastFrame()!, /› \[ \]\s+12\s/, 'a block that does not exist moves nothing');
      app.stdin.write(':4');
      await sleep(50);
      app.stdin.write(ESC);
      await sleep(50);
      assert.match(app.lastFrame()!, /› \[ \]\s+12\s/, 'Esc cancels');
      assert.doesNotMatch(app.lastFrame()!, /go to block/);
      app.stdin.write(':1j');
      await sleep(50);
      assert.match(app.lastFrame()!, /› \[ \]\s+13\s/, 'a key the prompt does not take closes it and counts as usual');
      assert.equal(c.getState().jump, null);
      const tiny = render(<App controller={c} size={{ columns: 30, rows: 8 }} />);
      await sleep(50);
      assert.match(tiny.lastFrame()!, /needs at least 40x12/);
      tiny.unmount();
    } finally {
      app.unmount();
      await c.close();
    }
  });
});

describe('controller: the key list', () => {
  test('while the key list is shown only ?, Esc and quit do anything', async () => {
    const c = new ExploreController(new ScriptedBackend());
    c.act('help');
    assert.equal(c.getState().help, true);
    c.act('toggle');
    c.act('viewPaths');
    assert.deepEqual(c.getState().deleted, []);
    assert.equal(c.getState().view, 'blocks');
    c.act('closeHelp');
    assert.equal(c.getState().help, false);
    c.act('help');
    c.act('help');
    assert.equal(c.getState().help, false);
    c.act('help');
    c.act('quit');
    assert.equal(c.getState().quitting, true);
    await c.close();
  });
});

describe('gate', () => {
  test('grants one at a time, most urgent first, and drops aborted waiters', async () => {
    const gate = new Gate();
    const order: string[] = [];
    const first = await gate.acquire(3);
    const ab = new AbortController();
    const waits = [
      gate.acquire(2).then((l) => { order.push('p2'); l.release(); }),
      gate.acquire(0).then((l) => { order.push('p0'); l.release(); }),
      gate.acquire(1, ab.signal).then((l) => { order.push('aborted?'); l.release(); }, (e) => { order.push(e instanceof Interrupted ? 'p1 cancelled' : 'bad'); }),
    ];
    ab.abort();
    first.release();
    await Promise.all(waits);
    assert.deepEqual(order, ['p1 cancelled', 'p0', 'p2']);
  });
});

// ------------------------------------------------------------------ the app on a real (small) network

const SIZE = 8;

describe('app', () => {
  let rt: Runtime;
  let net: Network;
  let dir: string;
  let data: ReturnType<typeof memoryDataset>;

  before(async () => {
    const model = modelFromBytes(
      encodeModel(buildNet({ size: SIZE, seed: 3, blocks: [{ cout: 4 }, { cout: 4 }, { cout: 8, stride: 2 }, { cout: 8 }, { cout: 8 }] })),
      'tiny.onnx',
    );
    model.metadata['reslens.input_size'] = `${SIZE},${SIZE}`;
    model.metadata['reslens.survival'] = '0.9,0.8,0.7,0.6,0.5';
    rt = new Runtime({ threads: 1 });
    net = await analyseModel(rt, model);
    // Labels = the intact network's own predictions: 0% error, and deletions show up as errors.
    const N = 48;
    const images = randomInput(N, 1, SIZE, 5);
    const logits = await new Engine(rt, net).logits(intactProgram(5), { data: images, dims: [N, 1, SIZE, SIZE] });
    const d = logits.data as Float32Array;
    const labels = Int32Array.from({ length: N }, (_, i) => {
      const row = Array.from(d.subarray(i * 10, i * 10 + 10));
      return row.indexOf(Math.max(...row));
    });
    data = memoryDataset(images, labels, [1, SIZE, SIZE], 10);
    dir = mkdtempSync(path.join(os.tmpdir(), 'reslens-explore-'));
  });

  after(async () => {
    await rt.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function mount(size: { columns: number; rows: number }, compare: Network | null = null) {
    const backend = new EngineBackend({
      rt, net, data, outDir: dir, batch: 16, gradientBatch: 8, gradientSamples: 2,
      compare: compare ? { net: compare, data, name: 'plain' } : null,
    });
    const controller = new ExploreController(backend);
    const app = render(<App controller={controller} size={size} />);
    controller.start();
    return {
      controller,
      app,
      frame: () => app.lastFrame() ?? '',
      async press(...keys: string[]) {
        for (const k of keys) {
          app.stdin.write(k);
          await sleep(30);
        }
      },
      async done() {
        app.unmount();
        await controller.close();
      },
    };
  }

  /** A wide, tall terminal is used: the drawing reaches near its right edge and fills its rows. */
  function assertFills(frame: string, size: { columns: number; rows: number }) {
    const lines = frame.split('\n');
    const widest = Math.max(...lines.map((l) => [...l.replace(/\s+$/, '')].length));
    const filled = lines.filter((l) => l.trim()).length;
    assert.ok(widest >= size.columns - 12, `widest line ${widest} of ${size.columns} columns:\n${frame}`);
    assert.ok(filled >= size.rows - 6, `${filled} non-empty lines of ${size.rows} rows:\n${frame}`);
  }

  function assertFits(frame: string, size: { columns: number; rows: number }) {
    const lines = frame.split('\n');
    assert.ok(lines.length <= size.rows - 1, `${lines.length} lines in a ${size.rows}-row terminal`);
    for (const l of lines) assert.ok([...l].length <= size.columns, `line wider than ${size.columns}: ${l}`);
  }

  test('80x24: blocks view, Space deletes and the error is measured again, Tab, ?, q', async () => {
    const size = { columns: 80, rows: 24 };
    const ui = mount(size);
    try {
      await sleep(100); // useInput subscribes in an effect
      await waitFor('the baseline', () => /error 0\.00% · intact network/.test(ui.frame()));
      assert.match(ui.frame(), /reslens explore · tiny · 5 blocks · 48 samples/);
      assert.match(ui.frame(), /› \[ \]\s+0\s+0 identity/);
      assert.match(ui.frame(), /\[ \]\s+2\s+1 projection ↓/);
      assertFits(ui.frame(), size);
      await waitFor('the single-block sweep', () => ui.controller.getState().jobs.sweep.status === 'done', 60000);
      const singles = [0, 1, 2, 3, 4].map((i) => ui.controller.getState().measured[String(i)]!.error);
      assert.ok(singles.some((e) => e > 0), `some single deletion costs accuracy: ${singles}`);
      assert.match(ui.frame(), /\+\d+\.\d\d\s+\d+\.\d\d%/, 'rows show the error rise');

      await ui.press(DOWN);
      assert.match(ui.frame(), /› \[ \]\s+1\s+0 identity/);
      await ui.press(UP, DOWN, DOWN, DOWN);
      const worst = singles.indexOf(Math.max(...singles));
      await ui.press(...Array(4).fill(UP), ...Array(worst).fill(DOWN));
      await ui.press(' ');
      assert.match(ui.frame(), new RegExp(`› \\[x\\]\\s+${worst}\\s`), 'the marker shows the deletion');
      assert.match(ui.frame(), new RegExp(`deleted ${worst} · 2\\^4 paths`));
      // The single-block sweep already measured it: the error is known at once.
      assert.match(ui.frame(), new RegExp(`error ${(singles[worst]! * 100).toFixed(2)}%`));

      // A configuration nobody measured yet: measured in the background, then shown.
      const other = worst === 0 ? 1 : 0;
      await ui.press(...Array(worst).fill(UP), ...Array(other).fill(DOWN), ' ');
      const key = configKey([worst, other]);
      await waitFor('the two-block evaluation', () => ui.controller.getState().measured[key] !== undefined && !ui.controller.getState().evaluation);
      await sleep(60);
      const e2 = ui.controller.getState().measured[key]!.error;
      assert.match(ui.frame(), new RegExp(`error ${(e2 * 100).toFixed(2)}% · baseline 0\\.00%`));
      assertFits(ui.frame(), size);

      await ui.press('\t');
      assert.match(ui.frame(), /n = 3 \(5 − 2 deleted\), 2\^3 = 8 paths/);
      assert.match(ui.frame(), /stochastic depth/);
      assert.match(ui.frame(), /press g/);
      assertFits(ui.frame(), size);
      await ui.press('\t');
      await waitFor('the ensemble curve', () => /min–max/.test(ui.frame()));
      assert.match(ui.frame(), /◆ now \(k = 2/);
      assertFits(ui.frame(), size);

      await ui.press('?');
      assert.match(ui.frame(), /keys of reslens explore/);
      assert.match(ui.frame(), /Space\s+delete the selected block/);
      assertFits(ui.frame(), size);
      await ui.press(ESC);
      assert.doesNotMatch(ui.frame(), /keys of reslens explore/);

      await ui.press('r');
      assert.match(ui.frame(), /error 0\.00% · intact network · nothing deleted/);
      await ui.press('q');
      assert.equal(ui.controller.getState().quitting, true);
      const frames = ui.app.frames.length;
      await ui.press('1', DOWN, ' ');
      assert.equal(ui.app.frames.length, frames, 'nothing renders after q');
    } finally {
      await ui.done();
    }
  });

  test('100x30: the exact shares of the network as it stands; deleting a block changes them and the number of lengths', async () => {
    const size = { columns: 100, rows: 30 };
    const ui = mount(size);
    const exactLines = (frame: string) => {
      const lines = frame.split('\n');
      const i = lines.findIndex((l) => l.includes('exact gradient share'));
      return lines.slice(i, i + 6).join('\n');
    };
    try {
      await sleep(100);
      await ui.press('2');
      await waitFor('the exact shares of the intact network', () => /exact gradient share by path length k = 0–5 \(16 images\)/.test(ui.frame()), 60000);
      const intact = ui.controller.getState().exact['']!;
      assert.equal(intact.share.length, 6);
      assert.ok(Math.abs(intact.share.reduce((a, v) => a + v, 0) - 1) < 1e-5, 'the shares sum to 1');
      assert.ok(intact.identityError < 1e-5, `identity ${intact.identityError}`);
      assertFits(ui.frame(), size);
      const before = exactLines(ui.frame());
      await ui.press('1', ' ', '2');
      await waitFor('the exact shares with block 0 deleted', () => /exact gradient share by path length k = 0–4 \(16 images\)/.test(ui.frame()), 60000);
      const cut = ui.controller.getState().exact['0']!;
      assert.equal(cut.n, 4);
      assert.equal(cut.share.length, 5, 'one length fewer: the recursion runs over the remaining blocks only');
      assert.ok(Math.abs(cut.share.reduce((a, v) => a + v, 0) - 1) < 1e-5);
      assert.notDeepEqual(cut.share, intact.share.slice(0, 5));
      assert.notEqual(exactLines(ui.frame()), before, 'the drawn shares changed');
      assertFits(ui.frame(), size);
    } finally {
      await ui.done();
    }
  });

  test('200x50: paths view with gradients (g), the --compare curve, x and s write files, never over one', async () => {
    const size = { columns: 200, rows: 50 };
    const plainModel = modelFromBytes(encodeModel(buildNet({ size: SIZE, seed: 4, blocks: [{ cout: 4, plain: true }, { cout: 4, plain: true }, { cout: 4, plain: true }] })), 'plain.onnx');
    plainModel.metadata['reslens.input_size'] = `${SIZE},${SIZE}`;
    const plain = await analyseModel(rt, plainModel);
    assert.equal(plain.structure.kind, 'plain');
    const ui = mount(size, plain);
    try {
      await sleep(100);
      await ui.press(' ');
      await ui.press('2');
      assert.match(ui.frame(), /n = 4 \(5 − 1 deleted\)/);
      await ui.press('g');
      await waitFor('the gradient run', () => ui.controller.getState().jobs.gradients.status === 'done', 30000);
      await sleep(60);
      assert.match(ui.frame(), /gradient vs path length k \(intact, 2 per k\): \|g\| ×\d+\.\d\d per block; lengths \d+(–\d+)? carry \d+% of it/);
      assert.match(ui.frame(), /log10 mean \|g\|/);
      assert.match(ui.frame(), /share of all gradient/);
      assertFits(ui.frame(), size);

      await ui.press('x');
      await waitFor('the export', () => /wrote /.test(ui.frame()));
      const first = path.join(dir, 'tiny.deleted-0.onnx');
      assert.ok(existsSync(first), ui.frame());
      await ui.press('x');
      await waitFor('the second export', () => /tiny\.deleted-0\.1\.onnx/.test(ui.frame()));
      const again = await analyseModel(rt, loadModel(path.join(dir, 'tiny.deleted-0.1.onnx')));
      assert.equal(again.structure.blocks.length, 4, 'the exported network has block 0 deleted');

      await waitFor('the error of the current network', () => ui.controller.getState().measured['0'] !== undefined);
      await ui.press('s');
      await waitFor('the save', () => /saved /.test(ui.frame()));
      const doc = JSON.parse(readFileSync(path.join(dir, 'tiny.deleted-0.json'), 'utf8'));
      assert.equal(doc.model.sha256, net.model.sha256);
      assert.deepEqual(doc.deleted, [0]);
      assert.equal(doc.error, ui.controller.getState().measured['0']!.error);
      await ui.press('1');
      assertFits(ui.frame(), size);
      await ui.press('3');
      await waitFor('both ensemble curves', () => /○ plain/.test(ui.frame()) && /min–max/.test(ui.frame()));
      assert.match(ui.frame(), /k\s+mean\s+±sd\s+min–max\s+plain/);
      assertFits(ui.frame(), size);
      assertFills(ui.frame(), size);
      // The spread per k: ±sd and min–max of the random sets, as the backend measured them.
      const pts = ui.controller.getState().ensemble!;
      const p1 = pts.find((p) => p.k === 1)!;
      assert.equal(p1.samples, 10, 'ten random sets per k by default');
      assert.ok(p1.sd >= 0 && p1.sd <= p1.max - p1.min, `sd ${p1.sd} within the range ${p1.min}–${p1.max}`);
      const f1 = (v: number) => (v * 100).toFixed(1);
      assert.match(ui.frame(), new RegExp(` 1 +${f1(p1.mean)}% +±${f1(p1.sd)} +${f1(p1.min)}–${f1(p1.max)} `), 'the table row of k = 1');
      // A wide terminal: the block list with the ensemble curve and the paths beside it.
      await ui.press('1');
      assert.match(ui.frame(), /del blk stage.*error against the number k of deleted blocks/);
      assert.match(ui.frame(), /n = 4 \(5 − 1 deleted\)/);
      assertFits(ui.frame(), size);
      assertFills(ui.frame(), size);
      await ui.press('2');
      assertFills(ui.frame(), size);
    } finally {
      await ui.done();
    }
  });
});

test("a transformer's block list names its sublayers (the vit fixture)", async () => {
  const rt = new Runtime({ threads: 1 });
  try {
    const net = await analyseModel(rt, loadModel('fixtures/models/vit.onnx'));
    const rows = blockRows(net);
    assert.equal(rows.length, 12);
    assert.deepEqual(rows.map((r) => r.sublayer), Array.from({ length: 12 }, (_, i) => `layer ${i >> 1} · ${i % 2 ? 'mlp' : 'attention'}`));
    const info: ExploreInfo = { model: { path: 'vit.onnx', name: 'vit', sha256: '' }, data: { description: 'd', size: 10 }, blocks: rows, survival: null, compare: null };
    const frame = render(<BlocksView state={{ ...initialState(info), cursor: 7 }} width={100} height={16} />).lastFrame() ?? '';
    assert.match(frame, /del blk sublayer/);
    assert.match(frame, /› \[ \]   7 L3 mlp/);
    assert.match(frame, /block 7: layer 3 · mlp \(a residual sublayer/);
  } finally {
    await rt.close();
  }
});

test('the error line gives top-5 error beside top-1 when the model has it (more than 10 classes)', () => {
  const info: ExploreInfo = { model: { path: 'm.onnx', name: 'm', sha256: '' }, data: { description: 'd', size: 8 }, blocks: [], survival: null, compare: null };
  const s = initialState(info);
  const m = { error: 0.25, correct: 6, total: 8, nonFinite: 0 };
  assert.match(errorLineText({ ...s, measured: { '': { ...m, top5Error: 0.125 } } }), /^error 25\.00% \(top-5 12\.50%\) · intact network/);
  assert.doesNotMatch(errorLineText({ ...s, measured: { '': m } }), /top-5/);
});

test('a flat error curve is drawn within 0-100%, not padded past it (every configuration wrong)', () => {
  const axis = (values: number[], o: { floor?: number; ceil?: number }) => {
    const lines = pointChart([{ glyph: '●', values }], { width: 40, height: 5, xs: values.map((_, i) => i), format: (v) => `${(v * 100).toFixed(1)}%`, ...o });
    return lines.map((l) => /^\s*(\S+%) ┤/.exec(l)?.[1]).filter((x) => x);
  };
  assert.deepEqual(axis([1, 1, 1], { floor: 0, ceil: 1 }), ['100.0%', '75.0%', '50.0%']);
  assert.deepEqual(axis([0, 0], { floor: 0, ceil: 1 }), ['50.0%', '25.0%', '0.0%']);
  assert.deepEqual(axis([1, 1], {}), ['150.0%', '100.0%', '50.0%'], 'unbounded values keep half a unit each way');
  assert.deepEqual(axis([0.2, 0.6], { floor: 0, ceil: 1 }), ['60.0%', '40.0%', '20.0%'], 'a curve that is not flat spans its own range');
});
