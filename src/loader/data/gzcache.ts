/**
 * Decompresses a .gz once, streaming, into <cacheDir>/<sha256-of-gz>.idx and returns that path.
 * The write goes to a temporary name that is renamed into place, so a cache file is always
 * complete; concurrent runs each write their own temporary file and the last rename wins.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, stat, unlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { UserError } from '../../errors.js';
import { errCode, sha256Files } from './common.js';

export function defaultCacheDir(): string {
  return path.join(os.tmpdir(), 'reslens-cache');
}

export async function gunzipCached(gz: string, cacheDir = defaultCacheDir()): Promise<string> {
  const digest = await sha256Files([gz]);
  const target = path.join(cacheDir, `${digest}.idx`);
  try {
    if ((await stat(target)).isFile()) return target;
  } catch {
    /* not cached yet */
  }
  try {
    await mkdir(cacheDir, { recursive: true });
  } catch (e) {
    throw new UserError(`${cacheDir}: cannot create the decompression cache (${errCode(e)}); set TMPDIR to a writable folder`);
  }
  const tmp = `${target}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await pipeline(createReadStream(gz), createGunzip(), createWriteStream(tmp));
    await rename(tmp, target);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    const code = errCode(e);
    if (code.startsWith('Z_') || /incorrect header|unexpected end|invalid/i.test(String((e as Error)?.message))) {
      throw new UserError(`${gz}: not a valid gzip file (${(e as Error).message}); re-download it or pass the uncompressed file`);
    }
    throw new UserError(`${gz}: cannot decompress into ${cacheDir} (${code}); check free space or set TMPDIR`);
  }
  return target;
}
