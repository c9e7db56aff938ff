/**
 * The one table of explore's keys: it drives key dispatch, the help bar, the `?` overlay and
 * the README's Keys section (test/explore.test.tsx checks that README matches keysMarkdown()).
 */
import type { ViewName } from './state.js';

export type Action =
  | 'up' | 'down' | 'pageUp' | 'pageDown' | 'first' | 'last'
  | 'nextView' | 'prevView' | 'viewBlocks' | 'viewPaths' | 'viewEnsemble'
  | 'jump' | 'toggle' | 'reset' | 'export' | 'save' | 'gradients' | 'help' | 'closeHelp' | 'quit';

/** The subset of Ink's Key this table reads (Ink's Key fits it). */
export interface KeyPress {
  upArrow?: boolean;
  downArrow?: boolean;
  pageUp?: boolean;
  pageDown?: boolean;
  home?: boolean;
  end?: boolean;
  tab?: boolean;
  escape?: boolean;
  return?: boolean;
  backspace?: boolean;
  delete?: boolean;
  ctrl?: boolean;
  shift?: boolean;
}

type NamedKey = 'upArrow' | 'downArrow' | 'pageUp' | 'pageDown' | 'home' | 'end' | 'tab' | 'escape';

/** One key: a named key (arrows, Tab, ...) or a typed character, with modifiers. */
export interface KeySpec {
  label: string;
  /** Shorter label for the help bar. */
  short?: string;
  named?: NamedKey;
  input?: string;
  ctrl?: boolean;
  shift?: boolean;
}

export interface Binding {
  action: Action;
  keys: KeySpec[];
  description: string;
  /** Word in the help bar; rows sharing one are shown together (↑↓/jk move). */
  bar?: string;
  /** Views where the action applies (and shows in the help bar); all when absent. */
  views?: ViewName[];
}

const named = (n: NamedKey, label: string, shift = false): KeySpec => ({ label, named: n, ...(shift ? { shift } : {}) });
const char = (c: string, label = c): KeySpec => ({ label, input: c });

export const KEYMAP: readonly Binding[] = [
  { action: 'up', keys: [named('upArrow', '↑'), char('k')], description: 'select the block above', bar: 'move', views: ['blocks'] },
  { action: 'down', keys: [named('downArrow', '↓'), char('j')], description: 'select the block below', bar: 'move', views: ['blocks'] },
  { action: 'pageUp', keys: [named('pageUp', 'PgUp')], description: 'select one screen up', views: ['blocks'] },
  { action: 'pageDown', keys: [named('pageDown', 'PgDn')], description: 'select one screen down', views: ['blocks'] },
  { action: 'first', keys: [named('home', 'Home')], description: 'select the first block', views: ['blocks'] },
  { action: 'last', keys: [named('end', 'End')], description: 'select the last block', views: ['blocks'] },
  { action: 'jump', keys: [{ label: ':', short: ':N↵', input: ':' }], description: 'jump to a block by number: type it, then Enter (Esc cancels)', bar: 'jump', views: ['blocks'] },
  { action: 'nextView', keys: [named('tab', 'Tab')], description: 'next view (blocks → paths → ensemble)', bar: 'view' },
  { action: 'prevView', keys: [named('tab', 'Shift-Tab', true)], description: 'previous view' },
  { action: 'viewBlocks', keys: [char('1')], description: 'blocks view: each block, the error when it alone is deleted' },
  { action: 'viewPaths', keys: [char('2')], description: 'paths view: path lengths and exact gradient shares of the current network, sampled gradient per length' },
  { action: 'viewEnsemble', keys: [char('3')], description: 'ensemble view: error against the number of deleted blocks' },
  { action: 'toggle', keys: [char(' ', 'Space')], description: 'delete the selected block, or put it back; the error is measured again', bar: 'delete', views: ['blocks'] },
  { action: 'reset', keys: [char('r')], description: 'put every deleted block back', bar: 'reset' },
  { action: 'export', keys: [char('x')], description: 'write the current network as ONNX (MODEL.deleted-3-7.onnx in the current folder)', bar: 'export' },
  { action: 'save', keys: [char('s')], description: 'save the state as JSON: model sha256, deleted blocks, error', bar: 'save' },
  { action: 'gradients', keys: [char('g')], description: 'start (or cancel) the path-restricted gradient run in the background', bar: 'gradients', views: ['paths'] },
  { action: 'help', keys: [char('?')], description: 'show or hide the list of keys', bar: 'help' },
  { action: 'closeHelp', keys: [named('escape', 'Esc')], description: 'hide the list of keys' },
  { action: 'quit', keys: [char('q'), { label: 'Ctrl-C', short: '^C', input: 'c', ctrl: true }], description: 'quit (running work is cancelled)', bar: 'quit' },
];

function matches(k: KeySpec, input: string, key: KeyPress): boolean {
  if (!!k.ctrl !== !!key.ctrl) return false;
  if (k.named) return !!key[k.named] && !!k.shift === !!key.shift;
  return input === k.input;
}

/** The action a key press stands for, or null. */
export function actionFor(input: string, key: KeyPress): Action | null {
  for (const b of KEYMAP) if (b.keys.some((k) => matches(k, input, key))) return b.action;
  return null;
}

const CONTROL: Record<string, KeyPress> = { '\t': { tab: true }, '\r': { return: true }, '\n': { return: true }, '\x7f': { backspace: true }, '\b': { backspace: true } };

export interface KeyEvent {
  input: string;
  key: KeyPress;
}

/**
 * One input event as the keys it holds. Keys typed faster than the screen reads them arrive as
 * one run of text ("jj ", ":12\r"), which Ink hands over whole: each character then counts on its own.
 */
export function splitKeys(input: string, key: KeyPress): KeyEvent[] {
  if (actionFor(input, key) || [...input].length <= 1 || key.ctrl) return [{ input, key }];
  return [...input].map((ch) => {
    const code = ch.charCodeAt(0);
    if (CONTROL[ch]) return { input: '', key: CONTROL[ch]! };
    return code >= 1 && code <= 26 ? { input: String.fromCharCode(code + 96), key: { ctrl: true } } : { input: ch, key: {} };
  });
}

/** The actions of one input event (see splitKeys). */
export function actionsFor(input: string, key: KeyPress): Action[] {
  return splitKeys(input, key).map((k) => actionFor(k.input, k.key)).filter((a): a is Action => a !== null);
}

/** What a key does while the jump prompt is open: a digit, Backspace, Enter, Esc, or anything else (which closes it). */
export function jumpKey(input: string, key: KeyPress): { digit: string } | 'back' | 'enter' | 'cancel' | null {
  if (key.return) return 'enter';
  if (key.escape) return 'cancel';
  if (key.backspace || key.delete) return 'back';
  return !key.ctrl && /^[0-9]$/.test(input) ? { digit: input } : null;
}

export function bindingFor(action: Action): Binding {
  return KEYMAP.find((b) => b.action === action)!;
}

export function appliesIn(b: Binding, view: ViewName): boolean {
  return !b.views || b.views.includes(view);
}

/** "↑ k" style label of a binding's keys. */
export function keysLabel(b: Binding, sep = ' / '): string {
  return b.keys.map((k) => k.label).join(sep);
}

/**
 * Help-bar items for a view, in table order: rows sharing a `bar` word merge their keys,
 * first keys then the other keys (↑↓/jk move). `specific`: the rows only apply in some views.
 */
export function helpBarItems(view: ViewName): { keys: string; label: string; specific: boolean }[] {
  const groups = new Map<string, Binding[]>();
  for (const b of KEYMAP) {
    if (!b.bar || !appliesIn(b, view)) continue;
    groups.set(b.bar, [...(groups.get(b.bar) ?? []), b]);
  }
  return [...groups].map(([label, rows]) => {
    const specific = rows.some((r) => r.views !== undefined);
    const short = (k: KeySpec) => k.short ?? k.label;
    if (rows.length === 1) return { keys: rows[0]!.keys.map(short).join('/'), label, specific };
    const first = rows.map((r) => short(r.keys[0]!)).join('');
    const rest = rows.flatMap((r) => r.keys.slice(1).map(short)).sort().join('');
    return { keys: rest ? `${first}/${rest}` : first, label, specific };
  });
}

/**
 * The help bar as one line of at most `width` columns. When it does not fit, items are left
 * out: first the general ones from the right, then the view's own; help and quit stay.
 */
export function helpBar(view: ViewName, width: number): string {
  const items = helpBarItems(view).map((i) => ({ ...i, text: `${i.keys} ${i.label}` }));
  const fixed = new Set(['help', 'quit']);
  const droppable = items.filter((i) => !fixed.has(i.label));
  const order = [...droppable.filter((i) => !i.specific).reverse(), ...droppable.filter((i) => i.specific).reverse()];
  let shown = items;
  const text = () => shown.map((i) => i.text).join('  ');
  for (const drop of order) {
    if ([...text()].length <= width) break;
    shown = shown.filter((i) => i !== drop);
  }
  const line = text();
  return [...line].length > width ? [...line].slice(0, Math.max(0, width)).join('') : line;
}

/** The README's Keys table. */
export function keysMarkdown(): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  const lines = ['| keys | action | what it does |', '|---|---|---|'];
  for (const b of KEYMAP) {
    const keys = b.keys.map((k) => `\`${esc(k.label)}\``).join(' ');
    const where = b.views ? ` (${b.views.join(', ')} view)` : '';
    lines.push(`| ${keys} | ${b.action} | ${esc(b.description)}${where} |`);
  }
  return lines.join('\n') + '\n';
}
