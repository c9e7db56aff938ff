/**
 * What reslens says on stderr besides errors: notes (one line each), details (only under
 * --verbose) and progress (a bar on a terminal, JSON lines for pipelines, or nothing). The
 * command's flags set the policy once (commands/common.ts); --quiet leaves only errors.
 */
export type ProgressMode = 'bar' | 'json' | 'none';
export const PROGRESS_MODES: ProgressMode[] = ['bar', 'json', 'none'];

export interface StderrPolicy {
  quiet: boolean;
  verbose: boolean;
  progress: ProgressMode;
}

let policy: StderrPolicy = { quiet: false, verbose: false, progress: 'bar' };
let sink: NodeJS.WriteStream = process.stderr;

export function setStderrPolicy(p: StderrPolicy, stream: NodeJS.WriteStream = process.stderr): void {
  policy = { ...p };
  sink = stream;
}

export function stderrPolicy(): StderrPolicy {
  return { ...policy };
}

/** One line for the user (device, files written, timings); silent under --quiet. With --progress json, a JSON object. */
export function note(line: string): void {
  if (policy.quiet) return;
  sink.write(policy.progress === 'json' ? `${JSON.stringify({ note: line.trim() })}\n` : `${line}\n`);
}

/** A note that only --verbose shows (why a device was passed over, and the like). */
export function detail(line: string): void {
  if (policy.verbose) note(line);
}

/** A one-line progress bar with ETA on stderr; silent when stderr is not a terminal. */
export interface Progress {
  update(done: number): void;
  done(): void;
}

const SILENT: Progress = { update() {}, done() {} };

/**
 * Progress of one phase (`label`: lesion, gradients, a report part) of `total` units. Under
 * --progress json: `{"phase","done","total","elapsed"}` per line, at most 5 a second, and a last
 * line with done = total when the phase ends.
 */
export function progressBar(label: string, total: number, stream: NodeJS.WriteStream = sink, minMs = 1000): Progress {
  if (policy.quiet || policy.progress === 'none' || total <= 0) return SILENT;
  const start = Date.now();
  if (policy.progress === 'json') {
    let last = -Infinity;
    let latest = 0;
    let written = -1;
    const line = (done: number) => {
      if (done === written) return;
      written = done;
      stream.write(`${JSON.stringify({ phase: label, done, total, elapsed: Math.round(Date.now() - start) / 1000 })}\n`);
    };
    line(0);
    return {
      update(done) {
        latest = done;
        const now = Date.now();
        if (now - last < 200) return;
        last = now;
        line(done);
      },
      done() {
        line(Math.max(latest, total));
      },
    };
  }
  let last = 0;
  let shown = false;
  if (!stream.isTTY) return SILENT;
  const draw = (done: number) => {
    const frac = Math.min(1, done / total);
    const elapsed = (Date.now() - start) / 1000;
    const eta = frac > 0 ? (elapsed / frac) * (1 - frac) : 0;
    const width = Math.max(10, Math.min(40, (stream.columns ?? 80) - label.length - 30));
    const filled = Math.round(frac * width);
    stream.write(`\r${label} ${'█'.repeat(filled)}${'░'.repeat(width - filled)} ${(frac * 100).toFixed(0).padStart(3)}% ETA ${fmtSeconds(eta)}  `);
    shown = true;
  };
  return {
    update(done) {
      const now = Date.now();
      // Only for work longer than a second, and at most 10 redraws a second.
      if (now - start < minMs || now - last < 100) return;
      last = now;
      draw(done);
    },
    done() {
      if (shown) stream.write('\r\x1b[2K');
    },
  };
}

export function fmtSeconds(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 60) return `${s.toFixed(0)}s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}
