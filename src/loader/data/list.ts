/**
 * A list file naming images and their labels, for a flat folder such as ImageNet's validation
 * set: one image a line, `path<TAB>label`, `path,label` (CSV) or `path label`; paths relative to
 * the list's folder; a label is a class index or a class id from the model's class list
 * (--classes FILE or reslens.classes), of which only the first word counts (so
 * LOC_val_solution.csv's "n01751748 x y x y" reads as n01751748). A first line whose label is
 * neither and holds no digit is a header and skipped.
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../../errors.js';
import { ACCEPTED, applyLimit, errCode } from './common.js';
import type { Dataset, OpenOptions } from './dataset.js';
import { openImageFiles } from './decode.js';

export const LIST_EXTS = new Set(['.txt', '.tsv', '.csv', '.lst']);

export interface ListEntry {
  file: string;
  label: number;
  /** The line of the list it is on (from 1). */
  line: number;
}

/** Parses a list file's text; `where` names it in errors. Pure. */
export function parseList(text: string, where: string, classes: string[] | undefined): ListEntry[] {
  const at = classes ? new Map(classes.map((c, i) => [c, i])) : null;
  const out: ListEntry[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (!line || line.startsWith('#')) continue;
    const sep = line.includes('\t') ? '\t' : line.includes(',') ? ',' : /\s/;
    const cut = typeof sep === 'string' ? line.indexOf(sep) : line.search(sep);
    const file = cut < 0 ? line : line.slice(0, cut).trim();
    const word = cut < 0 ? '' : line.slice(cut + 1).trim().split(/[\s,]+/)[0]!.replace(/^"|"$/g, '');
    let label: number | undefined;
    if (/^\d+$/.test(word)) label = Number(word);
    else if (at?.has(word)) label = at.get(word);
    if (label === undefined) {
      // A header names its columns; a first label with a digit (n99999999, 7a) is a wrong label, not a header to drop.
      if (out.length === 0 && i === lines.findIndex((l) => l.trim()) && !/\d/.test(word)) continue;
      const hint = at ? `a class index or one of the ${at.size} class ids` : 'a class index (or pass --classes FILE to use class ids)';
      throw new UserError(`${where}:${i + 1}: label '${word}' of ${file || 'the line'} is not ${hint}; fix the line`);
    }
    if (classes && label >= classes.length) {
      throw new UserError(`${where}:${i + 1}: label ${label} is past the ${classes.length} classes; fix the line or the class list`);
    }
    out.push({ file: file.replace(/^"|"$/g, ''), label, line: i + 1 });
  }
  if (!out.length) throw new UserError(`${where}: lists no images (one 'path<TAB>label' a line); ${ACCEPTED}`);
  return out;
}

export async function openList(file: string, opts: OpenOptions): Promise<Dataset> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new UserError(`${file}: cannot read (${errCode(e)}); check the path and permissions`);
  }
  const entries = parseList(text, file, opts.classes ?? opts.modelClasses);
  const root = path.dirname(file);
  await checkFiles(entries.slice(0, applyLimit(entries.length, opts.limit)), root, file);
  const named = opts.classes ?? opts.modelClasses;
  const classes = Math.max(named?.length ?? opts.classCount ?? 0, ...entries.map((e) => e.label + 1));
  return openImageFiles({
    what: `image list ${file}`,
    format: 'list',
    root,
    files: entries.map((e) => path.resolve(root, e.file)),
    labels: entries.map((e) => e.label),
    classes,
    ...(named ? { classNames: named } : {}),
    labelNote: opts.classes ? 'labels by the class list' : 'labels as given',
  }, opts);
}

/**
 * Refuses the first listed image that is missing or not a file, naming its line, before any
 * decoding: otherwise it surfaced only when its batch was decoded, perhaps an hour in.
 */
async function checkFiles(entries: ListEntry[], root: string, where: string): Promise<void> {
  const bad: (string | null)[] = new Array(entries.length).fill(null);
  let next = 0;
  const worker = async () => {
    while (next < entries.length) {
      const k = next++;
      const full = path.resolve(root, entries[k]!.file);
      try {
        if (!(await stat(full)).isFile()) bad[k] = `${full} is not a file`;
      } catch (e) {
        bad[k] = errCode(e) === 'ENOENT' ? `${full} does not exist` : `cannot read ${full} (${errCode(e)})`;
      }
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  const k = bad.findIndex((b) => b !== null);
  if (k < 0) return;
  const more = bad.filter((b) => b !== null).length - 1;
  throw new UserError(`${where}:${entries[k]!.line}: ${bad[k]}${more ? ` (and ${more} more listed images)` : ''}; paths are relative to the list's folder, fix the list or the files`);
}
