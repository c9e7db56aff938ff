/** The one parser for block lists like `3,7,10-12` (flags --delete, --blocks, --k ranges), and for lists of numbers. */
import { UserError } from './errors.js';

/**
 * Parses "3,7,10-12" into sorted unique integers in [min, max]; `flag` names the source in
 * errors, and `bound`, when given, says why max is the bound.
 */
export function parseBlockList(spec: string, flag: string, max: number, min = 0, bound?: string): number[] {
  const out = new Set<number>();
  const text = spec.trim();
  if (!text) throw new UserError(`${flag}: empty list; give indices like 3,7,10-12`);
  for (const part of text.split(',')) {
    const p = part.trim();
    const m = /^(\d+)(?:\s*(?:-|\.\.)\s*(\d+))?$/.exec(p);
    if (!m) throw new UserError(`${flag}: '${p}' is not an index or a range like 10-12`);
    const a = Number(m[1]);
    const b = m[2] !== undefined ? Number(m[2]) : a;
    if (b < a) throw new UserError(`${flag}: range '${p}' runs backwards; write ${b}-${a}`);
    if (a < min || b > max) throw new UserError(`${flag}: '${p}' is outside ${min}-${max}${bound ? ` (${bound})` : ''}`);
    for (let i = a; i <= b; i++) out.add(i);
  }
  return [...out].sort((x, y) => x - y);
}

/** Parses "0.5,0.5,0.5" into numbers; `what` names the source in errors (a flag, a metadata key). */
export function parseNumberList(s: string, what: string): number[] {
  const parts = s.split(',').map((p) => p.trim()).filter((p) => p.length);
  const nums = parts.map(Number);
  if (!parts.length || nums.some((n) => !Number.isFinite(n))) {
    throw new UserError(`${what}: '${s}' is not a comma-separated list of numbers (e.g. 0.5,0.5,0.5)`);
  }
  return nums;
}

/** The inverse of parseBlockList: sorted unique integers written as "3, 7, 10-12". */
export function formatBlockList(ids: number[]): string {
  const s = [...new Set(ids)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < s.length; ) {
    let j = i;
    while (j + 1 < s.length && s[j + 1] === s[j]! + 1) j++;
    parts.push(j > i ? `${s[i]}-${s[j]}` : `${s[i]}`);
    i = j + 1;
  }
  return parts.join(', ');
}
