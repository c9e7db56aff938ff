/**
 * reslens explore end to end: the built CLI in a real terminal (tmux, 80x24 and 200x50),
 * driven by keys and read back from the screen; and its refusal without a terminal.
 * Uses fixtures/models/resnet20.onnx when it is there, else a small untrained network on the
 * shipped data (same screens, errors near chance).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { encodeModel } from '../src/loader/proto.js';
import { buildNet } from './helpers/build.js';

const CLI = path.resolve('dist/cli.js');
const RESNET20 = path.resolve('fixtures/models/resnet20.onnx');
const DATA = path.resolve('fixtures/data/t10k-images-idx3-ubyte');
const dir = mkdtempSync(path.join(os.tmpdir(), 'reslens-explore-e2e-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function modelArgs(): string[] {
  if (existsSync(RESNET20)) return [RESNET20, '--limit', '200'];
  const file = path.join(dir, 'tiny28.onnx');
  if (!existsSync(file)) {
    const net = buildNet({ size: 28, seed: 2, blocks: [{ cout: 4 }, { cout: 4 }, { cout: 8, stride: 2 }, { cout: 8 }, { cout: 8 }] });
    net.metadataProps = [{ key: 'reslens.input_size', value: '28,28' }];
    writeFileSync(file, encodeModel(net));
  }
  return [file, '--data', DATA, '--limit', '200'];
}

const hasTmux = spawnSync('tmux', ['-V']).status === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** One explore run in its own tmux server, so nothing else the user runs in tmux is touched. */
class Terminal {
  readonly socket = `reslens-e2e-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  readonly name = 'explore';
  readonly rcFile: string;

  constructor(readonly columns: number, readonly rows: number, args: string[]) {
    this.rcFile = path.join(dir, `${this.socket}.rc`);
    const cmd = `${quote(process.execPath)} ${quote(CLI)} explore ${args.map(quote).join(' ')} --threads 1; echo $? > ${quote(this.rcFile)}`;
    this.tmux('new-session', '-d', '-s', this.name, '-x', String(columns), '-y', String(rows), `sh -c ${quote(cmd)}`);
  }

  tmux(...args: string[]): string {
    return execFileSync('tmux', ['-L', this.socket, '-f', '/dev/null', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  }

  alive(): boolean {
    return spawnSync('tmux', ['-L', this.socket, 'has-session', '-t', this.name]).status === 0;
  }

  screen(): string {
    try {
      return this.tmux('capture-pane', '-p', '-t', this.name);
    } catch {
      return '';
    }
  }

  keys(...keys: string[]): void {
    this.tmux('send-keys', '-t', this.name, ...keys);
  }

  async waitFor(what: string, cond: (screen: string) => boolean, ms = 60000): Promise<string> {
    const t0 = Date.now();
    for (;;) {
      const s = this.screen();
      if (cond(s)) return s;
      if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}; screen:\n${s}`);
      await sleep(100);
    }
  }

  async waitGone(ms = 20000): Promise<void> {
    const t0 = Date.now();
    while (this.alive()) {
      if (Date.now() - t0 > ms) throw new Error(`explore did not exit; screen:\n${this.screen()}`);
      await sleep(100);
    }
  }

  kill(): void {
    spawnSync('tmux', ['-L', this.socket, 'kill-server']);
  }
}

const errorLine = (screen: string) => screen.split('\n').find((l) => l.startsWith('error ')) ?? '';

function assertFits(screen: string, columns: number) {
  for (const l of screen.split('\n')) assert.ok([...l].length <= columns, `wider than ${columns}: ${l}`);
}

/** The screen is used: its drawing reaches near the right edge and fills nearly every row. */
function assertFills(screen: string, columns: number, rows: number) {
  const lines = screen.split('\n');
  const widest = Math.max(...lines.map((l) => [...l.replace(/\s+$/, '')].length));
  const filled = lines.filter((l) => l.trim()).length;
  assert.ok(widest >= columns - 12, `widest line ${widest} of ${columns} columns:\n${screen}`);
  assert.ok(filled >= rows - 6, `${filled} non-empty lines of ${rows} rows:\n${screen}`);
}

test('explore without a terminal: exit 2 and one line saying what to use instead', () => {
  const r = spawnSync(process.execPath, [CLI, 'explore', ...modelArgs()], { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
  assert.equal(r.status, 2);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.match(r.stderr, /explore needs an interactive terminal; for scripts use reslens lesion --json/);
  assert.equal(r.stdout, '');
});

test('80x24 in tmux: blocks view, Space changes the error line, Tab shows paths, q exits', { skip: !hasTmux && 'tmux is not installed', timeout: 180000 }, async () => {
  const t = new Terminal(80, 24, modelArgs());
  try {
    const first = await t.waitFor('the baseline', (s) => /^error \d+\.\d\d% · intact network/m.test(s));
    assert.match(first, /explore · \S+ · \d+ blocks · 200 samples/);
    assert.match(first, /› \[ \]\s+0\s+0 identity/);
    assert.match(first, /↑↓\/jk move/);
    assertFits(first, 80);
    const before = errorLine(first);
    t.keys('Space');
    const toggled = await t.waitFor('the deletion', (s) => /› \[x\]\s+0\s/.test(s) && /deleted 0 · /.test(errorLine(s)));
    assert.notEqual(errorLine(toggled), before);
    const measured = await t.waitFor('the new error', (s) => /^error \d+\.\d\d% · baseline \d+\.\d\d% \([+−]\d+\.\d\d pts\) · deleted 0/m.test(s));
    assertFits(measured, 80);
    t.keys('Tab');
    const paths = await t.waitFor('the paths view', (s) => /^n = \d+ \(\d+ − 1 deleted\), 2\^\d+ = \d+ paths/m.test(s));
    assert.match(paths, /press g/);
    assertFits(paths, 80);
    t.keys('q');
    await t.waitGone();
    assert.equal(readFileSync(t.rcFile, 'utf8').trim(), '0');
  } finally {
    t.kill();
  }
});

test('200x50 in tmux: every view fits and uses the screen, : jumps to a block, ? shows the keys, Ctrl-C exits', { skip: !hasTmux && 'tmux is not installed', timeout: 180000 }, async () => {
  const t = new Terminal(200, 50, [...modelArgs(), '--samples', '4']);
  try {
    const first = await t.waitFor('the blocks view with the ensemble curve beside it', (s) => /^error \d+\.\d\d% · intact network/m.test(s) && /k +mean +±sd +min–max/.test(s));
    assertFits(first, 200);
    assertFills(first, 200, 50);
    assert.match(first, /\(4 random sets per k;/, '--samples sets the random sets per k');
    assert.match(first, /:N↵ jump/, 'the help line names the jump key');
    t.keys(':', '3');
    await t.waitFor('the jump prompt', (s) => /go to block: 3▏/.test(s));
    t.keys('Enter');
    await t.waitFor('block 3 selected', (s) => /› \[ \]\s+3\s/.test(s) && !/go to block/.test(s));
    t.keys(':', '2', 'Enter', 'Space');
    await t.waitFor('block 2 deleted', (s) => /› \[x\]\s+2\s/.test(s));
    t.keys('3');
    const ens = await t.waitFor('the ensemble view', (s) => /^error against the number k of deleted blocks/m.test(s));
    assertFits(ens, 200);
    assertFills(ens, 200, 50);
    t.keys('2');
    const paths = await t.waitFor('the paths view', (s) => /^n = \d+ \(\d+ − 1 deleted\)/m.test(s));
    assertFits(paths, 200);
    assertFills(paths, 200, 50);
    t.keys('?');
    const help = await t.waitFor('the help overlay', (s) => /keys of reslens explore/.test(s));
    assert.match(help, /Space\s+delete the selected block/);
    assert.match(help, /q \/ Ctrl-C\s+quit/);
    t.keys('Escape');
    await t.waitFor('the overlay to close', (s) => !/keys of reslens explore/.test(s));
    t.keys('C-c');
    await t.waitGone();
    assert.equal(readFileSync(t.rcFile, 'utf8').trim(), '0');
  } finally {
    t.kill();
  }
});
