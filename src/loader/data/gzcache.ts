/**
 * Decompresses a .gz once, streaming, into <cacheDir>/<sha256-of-gz>.idx and returns that path.
 * The write goes to a temporary name that is renamed into place, so a cache file is always
 * complete; concurrent runs each write their own temporary file and the last rename wins.
 * The output is capped at what the file's own header promises (a 5 MB .gz of a valid header
 * and 1 GiB of zeros stops at the header's size), and the cache keeps at most CACHE_LIMIT
 * bytes, the least recently used files going first.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, stat, unlink, utimes } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { UserError } from '../../errors.js';
import { errCode, openRegular, sha256Files } from './common.js';

/** Most bytes the cache holds (and so the largest file it takes). */
export const CACHE_LIMIT = 2 ** 31;
/** Temporary files of killed runs older than this are removed. */
const STALE_TMP_MS = 3600_000;

export function defaultCacheDir(): string {
  return path.join(os.tmpdir(), 'reslens-cache');
}

/**
 * How many bytes the decompressed file should have, from its first bytes: null while more are
 * needed. A wrong header may promise anything small; the reader refuses it afterwards.
 */
export type SizePromise = (head: Buffer) => number | null;

class Capped extends Transform {
  private head = Buffer.alloc(0);
  private promised: number | null = null;
  private seen = 0;
  constructor(private readonly gz: string, private readonly promise: SizePromise, private readonly limit: number) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (this.promised === null) {
      this.head = Buffer.concat([this.head, chunk.subarray(0, 64)]);
      this.promised = this.promise(this.head);
      if (this.promised !== null && this.promised > this.limit) {
        return done(new UserError(`${this.gz}: its header promises ${this.promised} bytes decompressed, over the ${this.limit}-byte cache limit; decompress it yourself (gunzip -k) and pass the raw file`));
      }
    }
    this.seen += chunk.length;
    const cap = this.promised ?? this.limit;
    if (this.seen > cap && this.promised === 16 && this.head.length >= 4 && !(this.head[0] === 0 && this.head[1] === 0)) {
      return done(new UserError(`${this.gz}: does not decompress to an IDX file (it starts 0x${this.head.subarray(0, 4).toString('hex')}); pass the images file`));
    }
    if (this.seen > cap) {
      return done(new UserError(`${this.gz}: decompresses to more than the ${cap} bytes its header promises; the file is damaged (or a decompression bomb)`));
    }
    done(null, chunk);
  }
}

export async function gunzipCached(gz: string, promise: SizePromise, cacheDir = defaultCacheDir()): Promise<string> {
  const digest = await sha256Files([gz]);
  const target = path.join(cacheDir, `${digest}.idx`);
  try {
    if ((await stat(target)).isFile()) {
      const now = new Date();
      await utimes(target, now, now).catch(() => {}); // least recently used goes first
      return target;
    }
  } catch {
    /* not cached yet */
  }
  try {
    await mkdir(cacheDir, { recursive: true });
  } catch (e) {
    throw new UserError(`${cacheDir}: cannot create the decompression cache (${errCode(e)}); set TMPDIR to a writable folder`);
  }
  process.stderr.write(`decompressing ${gz} into ${target} (a cache under TMPDIR, at most ${CACHE_LIMIT / 2 ** 30} GiB)\n`);
  const tmp = `${target}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const { fh } = await openRegular(gz);
  try {
    await pipeline(fh.createReadStream(), createGunzip(), new Capped(gz, promise, CACHE_LIMIT), createWriteStream(tmp));
    await rename(tmp, target);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    if (e instanceof UserError) throw e;
    const code = errCode(e);
    if (code.startsWith('Z_') || /incorrect header|unexpected end|invalid/i.test(String((e as Error)?.message))) {
      throw new UserError(`${gz}: not a valid gzip file (${(e as Error).message}); re-download it or pass the uncompressed file`);
    }
    throw new UserError(`${gz}: cannot decompress into ${cacheDir} (${code}); check free space or set TMPDIR`);
  } finally {
    await fh.close().catch(() => {});
  }
  await pruneCache(cacheDir, target);
  return target;
}

/** Removes the least recently used cache files beyond CACHE_LIMIT, and old temporary files. */
export async function pruneCache(cacheDir: string, keep: string, limit = CACHE_LIMIT): Promise<void> {
  const now = Date.now();
  const files: { file: string; size: number; mtime: number }[] = [];
  for (const name of await readdir(cacheDir).catch(() => [] as string[])) {
    const file = path.join(cacheDir, name);
    const st = await stat(file).catch(() => null);
    if (!st?.isFile()) continue;
    if (name.endsWith('.tmp')) {
      if (now - st.mtimeMs > STALE_TMP_MS) await unlink(file).catch(() => {});
    } else if (name.endsWith('.idx')) {
      files.push({ file, size: st.size, mtime: st.mtimeMs });
    }
  }
  let total = files.reduce((a, f) => a + f.size, 0);
  for (const f of files.sort((a, b) => a.mtime - b.mtime)) {
    if (total <= limit) break;
    if (f.file === keep) continue;
    await unlink(f.file).catch(() => {});
    total -= f.size;
  }
}
