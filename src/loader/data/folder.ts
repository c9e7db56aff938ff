/**
 * A folder with one subfolder of images per class (ImageNet/torchvision ImageFolder style).
 * Labels: with the model's class ids (--classes FILE, or the model's reslens.classes when every
 * folder is named in it) each folder's index in that list; otherwise the sorted folder names
 * (torchvision's order when every class is present). Decoding is decode.ts's.
 */
import { lstat, readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../../errors.js';
import { errCode } from './common.js';
import { kindOf } from '../../oserror.js';
import type { Dataset, OpenOptions } from './dataset.js';
import { IMAGE_EXTS, isImageFile, openImageFiles } from './decode.js';

export { IMAGE_EXTS, isImageFile };

/**
 * Class subfolders (sorted) or null when `dir` has none. A linked subfolder counts when its
 * real path is inside `dir`'s (a data set laid out with links); one leading elsewhere is refused.
 */
export async function classFolders(dir: string): Promise<string[] | null> {
  const ents = await readdir(dir, { withFileTypes: true });
  const cls: string[] = [];
  let root: string | null = null;
  for (const e of ents) {
    if (e.name.startsWith('.')) continue;
    if (e.isDirectory()) cls.push(e.name);
    else if (e.isSymbolicLink()) {
      const link = path.join(dir, e.name);
      let real: string;
      try {
        real = await realpath(link);
      } catch {
        continue; // a dangling link is not a class
      }
      if (!(await stat(real)).isDirectory()) continue;
      root ??= await realpath(dir);
      if (!real.startsWith(root + path.sep)) {
        throw new UserError(`${link}: a class folder that links to ${real}, outside the data folder; refusing to follow it. Copy the images into ${dir} or pass the real folder`);
      }
      cls.push(e.name);
    }
  }
  cls.sort();
  return cls.length ? cls : null;
}

/** Each folder's label: its index in `classes` (every folder must be there) or in the sorted folders. */
export function folderLabels(dir: string, folders: string[], classes: string[] | undefined): number[] {
  if (!classes) return folders.map((_, i) => i);
  const at = new Map(classes.map((c, i) => [c, i]));
  const missing = folders.filter((f) => !at.has(f));
  if (missing.length) {
    throw new UserError(`${dir}: class folder${missing.length > 1 ? 's' : ''} ${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ` and ${missing.length - 3} more` : ''} not in the ${classes.length} classes given (e.g. ${classes.slice(0, 2).join(', ')}); name folders by class id or pass the matching --classes FILE`);
  }
  return folders.map((f) => at.get(f)!);
}

export async function openImageFolder(dir: string, folders: string[], opts: OpenOptions): Promise<Dataset> {
  const byModel = !opts.classes && opts.modelClasses && folders.every((f) => opts.modelClasses!.includes(f));
  if (byModel) opts = { ...opts, classes: opts.modelClasses! };
  const labelOf = folderLabels(dir, folders, opts.classes);
  const files: string[] = [];
  const labels: number[] = [];
  for (let c = 0; c < folders.length; c++) {
    let names: string[];
    try {
      names = await readdir(path.join(dir, folders[c]!));
    } catch (e) {
      throw new UserError(`${path.join(dir, folders[c]!)}: cannot list (${errCode(e)}); check permissions`);
    }
    for (const n of names.filter((n) => !n.startsWith('.') && isImageFile(n)).sort()) {
      const file = path.join(dir, folders[c]!, n);
      // A link to a device or a FIFO would never finish decoding.
      if (!(await lstat(file)).isFile()) {
        const st = await stat(file).catch(() => null);
        if (!st?.isFile()) throw new UserError(`${file}: is ${st ? kindOf(st) : 'a dangling link'}, not an image file; remove it`);
      }
      files.push(file);
      labels.push(labelOf[c]!);
    }
  }
  if (files.length === 0) {
    throw new UserError(`${dir}: is not a data set: its subfolders (${folders.slice(0, 5).join(', ')}${folders.length > 5 ? ', ...' : ''}) hold no images (${[...IMAGE_EXTS].join(' ')}); pass a data-set file or a folder with one subfolder of images per class`);
  }
  const classes = opts.classes ?? folders;
  return openImageFiles({
    what: `image folder ${dir}`,
    format: 'folder',
    root: dir,
    files,
    labels,
    classes: classes.length,
    classNames: classes,
    labelNote: byModel ? "labels by the model's class list" : opts.classes ? 'labels by --classes' : 'labels = sorted folder names',
  }, opts);
}
