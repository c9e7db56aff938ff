/** Flags and helpers that several commands share, so each is defined once. */
import { Option, type Command } from 'commander';
import { UserError } from '../errors.js';
import { Runtime } from '../engine/session.js';

export function positiveInt(flag: string, max = 1e9) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > max) throw new UserError(`${flag}: '${v}' is not a whole number from 1 to ${max}`);
    return n;
  };
}

export function addRuntimeOptions(cmd: Command): Command {
  return cmd.addOption(new Option('--threads <n>', 'onnxruntime intra-op threads (default: all cores)').argParser(positiveInt('--threads', 1024)));
}

export function addJsonOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--json [file]', 'write the result as JSON (to stdout when no file is given)'))
    .addOption(new Option('--force', 'replace an existing output file'));
}

export function addPreprocessOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--mean <list>', 'per-channel mean on the 0-1 scale (overrides reslens.mean)'))
    .addOption(new Option('--std <list>', 'per-channel std on the 0-1 scale (overrides reslens.std)'))
    .addOption(new Option('--size <h,w>', 'model input size (overrides reslens.input_size)'));
}

export async function withRuntime<T>(opts: { threads?: number }, fn: (rt: Runtime) => Promise<T>): Promise<T> {
  const rt = new Runtime({ threads: opts.threads });
  try {
    return await fn(rt);
  } finally {
    await rt.close();
  }
}
