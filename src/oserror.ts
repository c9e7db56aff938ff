/** The operating system's error codes in words, for one-line messages that name a path and a cause. */
import type { Stats } from 'node:fs';

const CAUSES: Record<string, string> = {
  ENOENT: 'no such file',
  ENOTDIR: 'a part of the path is not a folder',
  EISDIR: 'it is a folder',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EFBIG: 'file too large (over the file-size limit)',
  EEXIST: 'it already exists',
  ELOOP: 'too many levels of symbolic links',
  ENAMETOOLONG: 'the name is too long',
  EMFILE: 'too many open files',
  EINVAL: 'invalid argument (the file system refuses this file)',
  EIO: 'input/output error',
  EXDEV: 'it lies on another file system',
  EBUSY: 'the device is busy',
};

/** The code of a Node system error (`ENOENT`), or undefined. */
export function osCode(e: unknown): string | undefined {
  return e && typeof e === 'object' && 'code' in e && typeof (e as { code: unknown }).code === 'string' ? (e as { code: string }).code : undefined;
}

/** An OS error as a few words (`permission denied`); other errors by their first line. */
export function osCause(e: unknown): string {
  const code = osCode(e);
  if (code && CAUSES[code]) return CAUSES[code];
  const msg = (e instanceof Error ? e.message : String(e)).split('\n')[0]!;
  return code ? `${code}: ${msg.replace(/^[A-Z]+: /, '')}` : msg;
}

/** Is this an error the file system gave (as opposed to a bug)? */
export function isOsError(e: unknown): boolean {
  const code = osCode(e);
  return !!code && /^E[A-Z]+$/.test(code);
}

/** What a non-regular file is, in words. */
export function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a folder';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isSocket()) return 'a socket';
  if (st.isSymbolicLink()) return 'a symbolic link';
  return st.isFile() ? 'a regular file' : 'not a regular file';
}
