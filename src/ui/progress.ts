/** A one-line progress bar with ETA on stderr; silent when stderr is not a terminal. */
export interface Progress {
  update(done: number): void;
  done(): void;
}

export function progressBar(label: string, total: number, stream: NodeJS.WriteStream = process.stderr, minMs = 1000): Progress {
  const start = Date.now();
  let last = 0;
  let shown = false;
  if (!stream.isTTY || total <= 0) return { update() {}, done() {} };
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
