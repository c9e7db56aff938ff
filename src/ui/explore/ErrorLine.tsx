/** Second line: the current network's error, against the intact one, and what is deleted. */
import { Box, Text } from 'ink';
import { cut, pct, signedPts } from './charts.js';
import { Spinner } from './Spinner.js';
import { baseline, currentMeasurement, keptBlocks, type ExploreState } from './state.js';

export function errorLineText(state: ExploreState): string {
  const cur = currentMeasurement(state);
  const base = baseline(state);
  const n = keptBlocks(state).length;
  const parts: string[] = [];
  parts.push(`error ${cur ? pct(cur.error) : '…'}${cur?.top5Error !== undefined ? ` (top-5 ${pct(cur.top5Error)})` : ''}`);
  if (base && state.deleted.length) parts.push(`baseline ${pct(base.error)}${cur ? ` (${signedPts(cur.error - base.error)} pts)` : ''}`);
  else if (!state.deleted.length) parts.push('intact network');
  parts.push(state.deleted.length ? `deleted ${state.deleted.join(',')}` : 'nothing deleted');
  parts.push(`2^${n} paths`);
  if (cur?.nonFinite) parts.push(`${cur.nonFinite} non-finite`);
  return parts.join(' · ');
}

export function ErrorLine({ state, width }: { state: ExploreState; width: number }) {
  const ev = state.evaluation;
  const tail = ev ? ` measuring ${Math.round(ev.progress * 100)}%` : '';
  const text = cut(errorLineText(state), Math.max(0, width - (ev ? tail.length + 2 : 0)));
  return (
    <Box width={width}>
      <Text wrap="truncate" color={state.deleted.length ? 'yellow' : undefined}>{text}</Text>
      {ev ? (
        <Text>
          {' '}
          <Spinner />
          {tail}
        </Text>
      ) : null}
    </Box>
  );
}
