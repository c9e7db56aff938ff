/** Files explore writes: next to nothing, never over anything (a counter is added instead). */
import { linkSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../../errors.js';
import { checkFolder, writeError } from '../../files.js';

/** The model's file name without .onnx: "resnet20" for fixtures/models/resnet20.onnx. */
export function modelStem(file: string): string {
  return path.basename(file).replace(/\.onnx$/i, '');
}

/**
 * Writes `content` to dir/base+ext, or base.1+ext, base.2+ext, ... whichever is free first.
 * The content goes to a temporary file that is hard-linked into place, so a name is taken
 * only with its full content and an existing file is never replaced. Returns the path written.
 */
export function writeNewFile(dir: string, base: string, ext: string, content: string | Uint8Array): string {
  checkFolder(dir, path.join(dir, base + ext), 'save');
  const tmp = path.join(dir, `.${base}${ext}.${process.pid}.${Date.now()}.tmp`);
  try {
    writeFileSync(tmp, content);
    for (let i = 0; i < 10000; i++) {
      const target = path.join(dir, i ? `${base}.${i}${ext}` : `${base}${ext}`);
      try {
        linkSync(tmp, target);
        return target;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') continue;
        // No hard links here (some network or FAT file systems): exclusive create instead.
        try {
          writeFileSync(target, content, { flag: 'wx' });
          return target;
        } catch (e2) {
          if ((e2 as NodeJS.ErrnoException).code === 'EEXIST') continue;
          throw writeError(target, e2);
        }
      }
    }
    throw new UserError(`${path.join(dir, base + ext)}: 10000 numbered copies exist already`);
  } catch (e) {
    throw writeError(path.join(dir, base + ext), e);
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
  }
}

/** A path as the user should read it: relative to the current folder when inside it. */
export function displayPath(file: string): string {
  const rel = path.relative(process.cwd(), file);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : file;
}
