/** Where results go: stdout tables, JSON to stdout or to a file written atomically. */
import { checkOutput, toJson, writeFileAtomic } from '../files.js';
import { note } from '../ui/progress.js';
import { shown } from '../text.js';

export function useColor(stream: NodeJS.WriteStream = process.stdout): boolean {
  return !!stream.isTTY && !('NO_COLOR' in process.env) && process.env.TERM !== 'dumb';
}

/** Before any work: a `--json FILE` that could not be written is refused now, not after the run. */
export function checkJsonOutput(target: string | boolean | undefined, force: boolean): void {
  if (typeof target === 'string' && target !== '-') checkOutput(target, { force, flag: '--json' });
}

/** `--json` alone → stdout; `--json FILE` → FILE. Returns true when stdout was used. */
export function emitJson(value: unknown, target: string | boolean | undefined, force: boolean): boolean {
  if (target === undefined || target === false) return false;
  const text = toJson(value);
  if (target === true || target === '-') {
    process.stdout.write(text);
    return true;
  }
  writeFileAtomic(target, text, force);
  note(`wrote ${target}`);
  return false;
}

const SHORT: Record<string, string> = {
  Conv: 'conv', BatchNormalization: 'bn', Relu: 'relu', Clip: 'clip', Add: 'add', Mul: 'mul', MaxPool: 'maxpool',
  AveragePool: 'avgpool', GlobalAveragePool: 'gap', Gemm: 'fc', MatMul: 'matmul', Flatten: 'flatten', Reshape: 'reshape',
  Identity: 'id', Dropout: 'dropout', Concat: 'concat', LayerNormalization: 'layernorm',
};

/** "conv bn relu conv bn" → compact op list; grouped convs are not distinguishable here. */
export function shortOps(ops: string[], max = 60): string {
  const s = shown(ops.map((o) => SHORT[o] ?? o.toLowerCase()).join(' '));
  return s.length > max ? s.slice(0, max - 1) + '…' : s;
}

export function fmtShape(dims: number[] | undefined): string {
  return dims ? dims.slice(1).join('×') : '?';
}

export function fmtCount(n: number): string {
  if (n >= 1e6) return (n / 1e6).toFixed(2) + 'M';
  if (n >= 1e3) return (n / 1e3).toFixed(1) + 'k';
  return String(n);
}
