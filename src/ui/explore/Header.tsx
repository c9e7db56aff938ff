/** First line: what is explored, and the view tabs. */
import { Box, Text } from 'ink';
import { bindingFor } from './keymap.js';
import { cut } from './charts.js';
import { VIEWS, type ExploreState, type ViewName } from './state.js';
import { shown } from '../../text.js';

const TAB_ACTION = { blocks: 'viewBlocks', paths: 'viewPaths', ensemble: 'viewEnsemble' } as const;

export function tabLabel(v: ViewName): string {
  return `${bindingFor(TAB_ACTION[v]).keys[0]!.label} ${v}`;
}

export function Header({ state, width }: { state: ExploreState; width: number }) {
  const tabs = VIEWS.map((v) => ` ${tabLabel(v)} `);
  const tabsWidth = tabs.reduce((a, t) => a + t.length, 0);
  const { info } = state;
  const room = Math.max(0, width - tabsWidth - 1);
  const what = `explore · ${shown(info.model.name)} · ${info.blocks.length} blocks · ${info.data.size} samples`;
  const left = cut(`reslens ${what}`.length <= room ? `reslens ${what}` : what, room);
  return (
    <Box width={width}>
      <Box flexGrow={1}>
        <Text bold wrap="truncate">{left}</Text>
      </Box>
      {VIEWS.map((v, i) => (
        <Text key={v} inverse={v === state.view} color={v === state.view ? 'cyan' : undefined}>
          {tabs[i]}
        </Text>
      ))}
    </Box>
  );
}
