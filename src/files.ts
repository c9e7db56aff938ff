/**
 * JSON text, output checks and atomic file writes: what the report, explore and the commands
 * all write through. An output is checked before any work starts (checkOutput) and written via
 * a temporary file and rename (writeFileAtomic); a write that fails is one line naming the path
 * and the cause, and leaves no temporary file behind.
 */
import { closeSync, lstatSync, openSync, renameSync, statSync, unlinkSync, writeFileSync, constants } from 'node:fs';
import path from 'node:path';
import { UserError } from './errors.js';
import { kindOf, osCause, osCode, isOsError } from './oserror.js';

/** BigInt-safe JSON: bigints become decimal strings. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n';
}

export interface OutputOptions {
  /** Replace an existing file. */
  force?: boolean;
  /** The flag that names this output, for the message (`--json`, `-o`, `--html`). */
  flag?: string;
  /** An existing file is fine (report --resume decides later whether it is its own). */
  mayExist?: boolean;
}

/**
 * Refuses, before any work, an output that could not be written: its folder missing or not
 * writable (tried with a real file, which also catches /proc and read-only mounts), the target a
 * folder or a device, or an existing file without --force.
 */
export function checkOutput(file: string, o: OutputOptions = {}): void {
  const flag = o.flag ?? '--json';
  const dir = path.dirname(path.resolve(file));
  let st;
  try {
    st = lstatSync(file);
  } catch (e) {
    if (osCode(e) !== 'ENOENT' && osCode(e) !== 'ENOTDIR') throw new UserError(`${file}: cannot use it as ${flag} (${osCause(e)}); choose another ${flag} path`);
  }
  if (st) {
    const target = st.isSymbolicLink() ? safeStat(file) ?? st : st;
    if (target.isDirectory()) throw new UserError(`${file}: is a folder; give a file path for ${flag}`);
    if (!target.isFile() && !target.isSymbolicLink()) throw new UserError(`${file}: is ${kindOf(target)}, not a file; give a file path for ${flag} (--json alone writes to stdout)`);
    if (!o.force && !o.mayExist) throw new UserError(`${file}: already exists; pass --force to replace it or choose another ${flag} path`);
  }
  checkFolder(dir, file, flag);
}

/** The folder exists and a file can be created in it (a probe file, removed at once). */
export function checkFolder(dir: string, file = dir, flag = '--json'): void {
  const st = safeStat(dir);
  if (!st) throw new UserError(`${file}: folder ${dir} does not exist; create it first`);
  if (!st.isDirectory()) throw new UserError(`${file}: ${dir} is not a folder; choose another ${flag} path`);
  const probe = path.join(dir, `.reslens-probe.${process.pid}.tmp`);
  try {
    closeSync(openSync(probe, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600));
  } catch (e) {
    // ENOENT for a file created in an existing folder: /proc and the like accept no new files.
    const why = osCode(e) === 'ENOENT' ? 'the file system there takes no new files' : osCause(e);
    throw new UserError(`${file}: cannot write in ${dir} (${why}); choose another ${flag} path`);
  }
  try {
    unlinkSync(probe);
  } catch {
    // Created but not removable is odd, but the folder is writable, which is what was asked.
  }
}

function safeStat(p: string) {
  try {
    return statSync(p);
  } catch {
    return undefined;
  }
}

/** A failed write as one line naming the file and the cause (OS errors only; others are bugs). */
export function writeError(file: string, e: unknown): unknown {
  if (!isOsError(e)) return e;
  const hint = osCode(e) === 'ENOSPC' || osCode(e) === 'EDQUOT' ? 'free some space or choose another path' : 'choose another path';
  return new UserError(`${file}: cannot write it (${osCause(e)}); ${hint}`);
}

/**
 * Writes `text` to `file` via a temporary file and rename, refusing to replace a file unless
 * `force`. A failed write removes the temporary file and says why in one line.
 */
export function writeFileAtomic(file: string, text: string | Uint8Array, force: boolean, flag = '--json'): void {
  checkOutput(file, { force, flag });
  const dir = path.dirname(path.resolve(file));
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    writeFileSync(tmp, text);
    renameSync(tmp, file);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // never created, or already renamed
    }
    throw writeError(file, e);
  }
}
