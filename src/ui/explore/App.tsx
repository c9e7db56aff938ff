/**
 * reslens explore's screen: header, current error, one of three views, background work,
 * status and the help bar. Renders the controller's state and dispatches keys; nothing else.
 */
import { Box, Text, useApp, useInput, type Key } from 'ink';
import { useCallback, useEffect } from 'react';
import { BlocksDashboard, dashboardLayout } from './BlocksDashboard.js';
import { BlocksView, listRows } from './BlocksView.js';
import type { ExploreController } from './controller.js';
import { EnsembleView } from './EnsembleView.js';
import { ErrorLine } from './ErrorLine.js';
import { Header } from './Header.js';
import { HelpBar } from './HelpBar.js';
import { HelpOverlay } from './HelpOverlay.js';
import { useExploreState, useTerminalSize, type TerminalSize } from './hooks.js';
import { JobsLine, StatusLine } from './JobsLine.js';
import { PathsView } from './PathsView.js';

/** Smallest terminal explore draws in. */
export const MIN_SIZE = { columns: 40, rows: 12 };

/** Lines around the view: header, error line / jobs, status, help bar. */
const CHROME = 5;

/** Height explore draws: one line short of the terminal, so Ink never clears the whole screen. */
export function screenLayout(size: TerminalSize): { width: number; height: number; body: number } {
  const width = Math.max(1, size.columns);
  const height = Math.max(1, size.rows - 1);
  return { width, height, body: Math.max(1, height - CHROME) };
}

export interface AppProps {
  controller: ExploreController;
  /** Fixed terminal size (tests); default: the terminal's, following resizes. */
  size?: TerminalSize;
}

export function App({ controller, size }: AppProps) {
  const state = useExploreState(controller);
  const term = useTerminalSize(size);
  const { exit } = useApp();
  const { width, height, body } = screenLayout(term);

  const onInput = useCallback((input: string, key: Key) => controller.keys(input, key, { page: listRows(body) }), [controller, body]);
  useInput(onInput);

  useEffect(() => {
    if (state.quitting) exit();
  }, [state.quitting, exit]);

  const pathsShown = !state.help && (state.view === 'paths' || (state.view === 'blocks' && dashboardLayout(width) !== null));
  useEffect(() => controller.setPathsShown(pathsShown), [controller, pathsShown]);

  if (term.columns < MIN_SIZE.columns || term.rows < MIN_SIZE.rows) {
    return <Text wrap="truncate">{`explore needs at least ${MIN_SIZE.columns}x${MIN_SIZE.rows} (now ${term.columns}x${term.rows}); q quits`}</Text>;
  }
  // A wide terminal shows the ensemble curve and the paths beside the block list.
  const View = state.view === 'blocks' ? (dashboardLayout(width) ? BlocksDashboard : BlocksView) : state.view === 'paths' ? PathsView : EnsembleView;
  return (
    <Box flexDirection="column" width={width} height={height}>
      <Header state={state} width={width} />
      <ErrorLine state={state} width={width} />
      {state.help ? (
        <HelpOverlay width={width} height={body + 2} />
      ) : (
        <>
          <View state={state} width={width} height={body} />
          <JobsLine state={state} width={width} />
          <StatusLine state={state} width={width} />
        </>
      )}
      <HelpBar view={state.view} width={width} />
    </Box>
  );
}
