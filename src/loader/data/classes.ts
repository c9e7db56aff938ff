/**
 * A class-list file: line i names class i by its id, the first word of the line (an ImageNet
 * synset such as n01440764); the rest of the line (a human name) is ignored. torchvision's
 * ImageNet models number classes in the sorted order of the 1000 synsets, so the sorted synset
 * list is their class list.
 */
import { readFileSync } from 'node:fs';
import { UserError } from '../../errors.js';
import { errCode } from './common.js';

/** Parses the text of a class list; `where` names it in errors. Pure. */
export function parseClassList(text: string, where: string): string[] {
  const ids: string[] = [];
  const seen = new Map<string, number>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const id = line.split(/[\s,]+/)[0]!;
    if (seen.has(id)) throw new UserError(`${where}:${i + 1}: class id '${id}' is listed twice (first on line ${seen.get(id)}); each class once`);
    seen.set(id, i + 1);
    ids.push(id);
  });
  if (!ids.length) throw new UserError(`${where}: lists no classes; write one class id a line (e.g. n01440764)`);
  return ids;
}

export function readClassList(file: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UserError(`--classes: ${file}: cannot read (${errCode(e)}); check the path`);
  }
  return parseClassList(text, file);
}

/**
 * Refuses a class list that is not one id per model output: a list one line short shifts every
 * later class by one and would be scored silently.
 */
export function checkClassCount(ids: string[], outputs: number | undefined, file: string, model: string): void {
  if (!outputs || ids.length === outputs) return;
  throw new UserError(`--classes: ${file}: lists ${ids.length} class${ids.length === 1 ? '' : 'es'} but ${model} has ${outputs} outputs; give the model's whole class list, one id a line in class-index order`);
}
