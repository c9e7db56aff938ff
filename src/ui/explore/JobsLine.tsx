/** The background work at a glance: sweep, ensemble curves, gradient run, exact shares. */
import { Box, Text } from 'ink';
import { cut } from './charts.js';
import { Spinner } from './Spinner.js';
import type { ExploreState, Job, JobName } from './state.js';

function jobText(name: JobName, label: string, job: Job): string | null {
  switch (job.status) {
    case 'idle':
      return null;
    case 'running':
      if (name === 'sweep') return `${label} ${Math.min(job.total, Math.floor(job.done))}/${job.total}`;
      return `${label} ${job.total ? Math.round((job.done / job.total) * 100) : 0}%`;
    case 'done':
      return `${label} ✓`;
    case 'cancelled':
      return `${label} cancelled`;
    case 'failed':
      return `${label} failed`;
  }
}

export function jobsLineText(state: ExploreState): string {
  const parts = [
    jobText('sweep', 'single-block sweep', state.jobs.sweep),
    jobText('ensemble', 'ensemble', state.jobs.ensemble),
    state.info.compare ? jobText('compare', state.info.compare, state.jobs.compare) : null,
    jobText('gradients', 'gradients', state.jobs.gradients),
    state.exactRunning !== null ? 'exact shares…' : null,
  ].filter((p): p is string => p !== null);
  return parts.length ? `background: ${parts.join(' · ')}` : '';
}

export function JobsLine({ state, width }: { state: ExploreState; width: number }) {
  const running = Object.values(state.jobs).some((j) => j.status === 'running') || state.exactRunning !== null;
  return (
    <Box width={width}>
      {running ? (
        <Text>
          <Spinner color="gray" />{' '}
        </Text>
      ) : null}
      <Text dimColor wrap="truncate">{cut(jobsLineText(state), width - (running ? 2 : 0)) || ' '}</Text>
    </Box>
  );
}

export function StatusLine({ state, width }: { state: ExploreState; width: number }) {
  if (state.jump !== null) {
    const last = state.info.blocks.length - 1;
    return (
      <Box width={width}>
        <Text wrap="truncate" color="cyan">{cut(`go to block: ${state.jump}▏ (0–${last}; Enter jumps, Esc cancels)`, width)}</Text>
      </Box>
    );
  }
  const s = state.status;
  return (
    <Box width={width}>
      <Text wrap="truncate" color={s?.tone === 'error' ? 'red' : 'green'}>{cut(s?.text ?? '', width) || ' '}</Text>
    </Box>
  );
}
