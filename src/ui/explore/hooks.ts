/** The two hooks explore's components share: the controller's state, and the terminal size. */
import { useStdout } from 'ink';
import { useEffect, useState, useSyncExternalStore } from 'react';
import type { ExploreController } from './controller.js';
import type { ExploreState } from './state.js';

export function useExploreState(controller: ExploreController): ExploreState {
  return useSyncExternalStore(controller.subscribe, controller.getState);
}

export interface TerminalSize {
  columns: number;
  rows: number;
}

/** columns × rows of the terminal, following resizes; `fixed` (tests) wins. */
export function useTerminalSize(fixed?: TerminalSize): TerminalSize {
  const { stdout } = useStdout();
  const read = (): TerminalSize => ({ columns: stdout.columns || 80, rows: stdout.rows || 24 });
  const [size, setSize] = useState<TerminalSize>(read);
  useEffect(() => {
    if (fixed) return;
    const onResize = () => setSize(read());
    stdout.on('resize', onResize);
    return () => {
      stdout.off('resize', onResize);
    };
  }, [stdout, fixed]);
  return fixed ?? size;
}
