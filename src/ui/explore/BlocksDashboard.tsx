/**
 * The blocks view on a wide terminal: the block list on the left, and beside it what the
 * deletions do, the ensemble curve above the path lengths of the current network.
 */
import { Box } from 'ink';
import { BlocksView } from './BlocksView.js';
import { EnsembleView } from './EnsembleView.js';
import { PathsView } from './PathsView.js';
import type { ExploreState } from './state.js';

/** Widest terminal that shows the block list alone. */
export const DASHBOARD_MIN_WIDTH = 150;
const GAP = 3;

/** Columns of the list and of the side panel, or null when the terminal is too narrow for both. */
export function dashboardLayout(width: number): { list: number; side: number } | null {
  if (width < DASHBOARD_MIN_WIDTH) return null;
  const list = Math.max(80, Math.floor(width * 0.48));
  return { list, side: width - list - GAP };
}

export function BlocksDashboard({ state, width, height }: { state: ExploreState; width: number; height: number }) {
  const { list, side } = dashboardLayout(width)!;
  const top = Math.ceil(height / 2);
  return (
    <Box flexDirection="row" width={width} height={height}>
      <BlocksView state={state} width={list} height={height} />
      <Box width={GAP} />
      <Box flexDirection="column" width={side} height={height}>
        <EnsembleView state={state} width={side} height={top} />
        <PathsView state={state} width={side} height={height - top} />
      </Box>
    </Box>
  );
}
