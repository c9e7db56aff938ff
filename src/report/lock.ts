/**
 * One run per report output: an exclusive lock file beside it (`OUT.lock`, created with O_EXCL)
 * that names its holder (pid, host, a random token) and is refreshed every 15 s. A second run
 * is told at once who holds it. A lock is stale, and taken over, when its pid is dead on this
 * host or it has not been refreshed for 120 s (a holder on another machine that was killed).
 */
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync, constants } from 'node:fs';
import os from 'node:os';
import { UserError } from '../errors.js';
import { osCause, osCode } from '../oserror.js';

export const REFRESH_MS = 15_000;
export const STALE_MS = 120_000;

export interface LockInfo {
  pid: number;
  host: string;
  token: string;
  startedAt: string;
}

export interface OutputLock {
  file: string;
  release(): void;
}

function readLock(file: string): { info: LockInfo | null; mtimeMs: number } | null {
  try {
    const mtimeMs = statSync(file).mtimeMs;
    let info: LockInfo | null = null;
    try {
      const raw = JSON.parse(readFileSync(file, 'utf8')) as Partial<LockInfo>;
      if (typeof raw.pid === 'number' && typeof raw.host === 'string' && typeof raw.token === 'string') info = raw as LockInfo;
    } catch {
      // Being written this instant, or damaged: judged by its age alone.
    }
    return { info, mtimeMs };
  } catch (e) {
    if (osCode(e) === 'ENOENT') return null;
    throw e;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return osCode(e) === 'EPERM';
  }
}

/** Why the lock is stale, or null when its holder may still be running. */
export function staleness(l: { info: LockInfo | null; mtimeMs: number }, now = Date.now(), host = os.hostname()): string | null {
  if (l.info && l.info.host === host && !alive(l.info.pid)) return `its process ${l.info.pid} is gone`;
  if (now - l.mtimeMs > STALE_MS) return `not refreshed for ${Math.round((now - l.mtimeMs) / 1000)} s`;
  return null;
}

function write(fd: number, info: LockInfo): void {
  writeSync(fd, JSON.stringify(info) + '\n', 0);
}

/** Takes the lock on `output` or says at once who holds it (a UserError, exit 2). */
export function lockOutput(output: string): OutputLock {
  const file = `${output}.lock`;
  const info: LockInfo = { pid: process.pid, host: os.hostname(), token: randomBytes(8).toString('hex'), startedAt: new Date().toISOString() };
  for (let attempt = 0; ; attempt++) {
    let fd: number;
    try {
      fd = openSync(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
    } catch (e) {
      if (osCode(e) !== 'EEXIST') throw new UserError(`${file}: cannot create the lock for ${output} (${osCause(e)}); choose another -o path`);
      const held = readLock(file);
      if (!held) continue;
      const stale = staleness(held);
      if (stale === null || attempt > 2) {
        const who = held.info ? `pid ${held.info.pid} on ${held.info.host}, since ${held.info.startedAt}` : 'a run starting now';
        throw new UserError(`${output}: another reslens run is writing it (${who}; lock ${file}); wait for it to finish or choose another -o path`);
      }
      // Move the stale lock aside under a name of our own so that of two runs taking it over, one wins.
      const aside = `${file}.stale.${info.pid}.${info.token}`;
      try {
        renameSync(file, aside);
        unlinkSync(aside);
        process.stderr.write(`reslens: ${file}: took over a stale lock (${stale})\n`);
      } catch {
        // Another run moved it first; try again.
      }
      continue;
    }
    try {
      write(fd, info);
    } finally {
      closeSync(fd);
    }
    break;
  }
  const refresh = setInterval(() => {
    const now = readLock(file);
    // Refresh only our own lock; if it was taken over (we were judged stale), leave it alone.
    if (now?.info?.token !== info.token) return;
    try {
      const fd = openSync(file, 'r+');
      try {
        write(fd, info);
      } finally {
        closeSync(fd);
      }
    } catch {
      // A missed refresh is harmless while the next one succeeds.
    }
  }, REFRESH_MS);
  refresh.unref();
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    clearInterval(refresh);
    process.off('exit', release);
    try {
      if (readLock(file)?.info?.token === info.token) unlinkSync(file);
    } catch {
      // already gone
    }
  };
  process.on('exit', release);
  return { file, release };
}
