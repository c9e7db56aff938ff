/** JSON text and atomic file writes: what the report, explore and the commands all write through. */
import { existsSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { UserError } from './errors.js';

/** BigInt-safe JSON: bigints become decimal strings. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n';
}

/** Writes `text` to `file` via a temporary file and rename, refusing to replace a file unless `force`. */
export function writeFileAtomic(file: string, text: string | Uint8Array, force: boolean, flag = '--json'): void {
  if (existsSync(file) && !force) {
    throw new UserError(`${file}: already exists; pass --force to replace it or choose another ${flag} path`);
  }
  const dir = path.dirname(path.resolve(file));
  if (!existsSync(dir)) throw new UserError(`${file}: folder ${dir} does not exist; create it first`);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.tmp`);
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}
