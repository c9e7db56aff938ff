/**
 * What the benchmarks share: each method runs in a child process of its own (so its peak RSS
 * is its own) and reports one JSON line; the parent runs them in turn and prints the table.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Runtime, type Session } from '../src/engine/session.js';
import type { ModelProto } from '../src/loader/proto.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const PYTHON = '/usr/bin/python3';
export const DEFAULT_MODEL = path.join(ROOT, 'fixtures', 'models', 'resnet56.onnx');

/** Bad flags: one line and exit 2. */
export class UsageError extends Error {}

/** `--flag N` as a positive whole number (undefined stays undefined). */
export function positive(flag: string, v: string): number;
export function positive(flag: string, v: string | undefined): number | undefined;
export function positive(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${flag}: '${v}' is not a positive whole number`);
  return n;
}

/** Runtime that counts the sessions it creates and the time spent creating them. */
export class CountingRuntime extends Runtime {
  count = 0;
  seconds = 0;
  override async create(model: ModelProto | Uint8Array, label: string, o?: { arena?: boolean }): Promise<Session> {
    const t = performance.now();
    try {
      return await super.create(model, label, o);
    } finally {
      this.count++;
      this.seconds += (performance.now() - t) / 1000;
    }
  }
}

/** Runs a command; resolves with the JSON object on the last line of its stdout. */
export function runJson(cmd: string, argv: string[]): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, argv, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    p.on('error', reject);
    const what = `${path.basename(cmd)} ${argv.join(' ')}`;
    p.on('close', (code, signal) => {
      if (code !== 0) return reject(new Error(`${what}: exited with ${signal ?? code}`));
      const last = out.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(last));
      } catch {
        reject(new Error(`${what}: no JSON result on its last line: ${last.slice(0, 200)}`));
      }
    });
  });
}

/** Why PyTorch cannot run here (no interpreter, no weights, no torch), or null. */
export function torchMissing(python: string, weights: string | null): string | null {
  if (!existsSync(python)) return `${python} not found`;
  if (weights && !existsSync(weights)) return `no PyTorch weights at ${path.relative(process.cwd(), weights)}`;
  const probe = spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8' });
  if (probe.status !== 0) return `${python} cannot import torch${probe.stderr ? `: ${probe.stderr.trim().split('\n').pop()}` : ''}`;
  return null;
}

/** The machine line of a bench table, and the load average it started at. */
export function machine(): { line: string; cpu: string | null; cores: number; platform: string; load: number } {
  const cpus = os.cpus();
  const platform = `${os.platform()} ${os.arch()}`;
  const cpu = cpus[0]?.model ?? null;
  const load = os.loadavg()[0]!;
  return { line: `${cpu ?? 'unknown CPU'}, ${cpus.length} cores, ${platform}; load average ${load.toFixed(2)} at start`, cpu, cores: cpus.length, platform, load };
}

/**
 * A bench's entry point: parse (a UsageError is one line, exit 2), then either the child for
 * one method (its result as one JSON line) or the parent (its return value is the exit code).
 */
export async function benchMain<A>(
  name: string,
  parse: () => A,
  childOf: (a: A) => string | undefined,
  child: (a: A) => Promise<unknown>,
  parent: (a: A) => Promise<number>,
): Promise<void> {
  let a: A;
  try {
    a = parse();
  } catch (e) {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(2);
  }
  const which = childOf(a);
  try {
    if (which !== undefined) {
      process.stdout.write(JSON.stringify(await child(a)) + '\n');
      return;
    }
    process.exitCode = await parent(a);
  } catch (e) {
    process.stderr.write(`${name}${which !== undefined ? ` ${which}` : ''}: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(2);
  }
}
