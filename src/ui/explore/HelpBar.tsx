/** Last line: the keys that matter in this view, from the keymap table. */
import { Text } from 'ink';
import { helpBar } from './keymap.js';
import type { ViewName } from './state.js';

export function HelpBar({ view, width }: { view: ViewName; width: number }) {
  return (
    <Text dimColor wrap="truncate">
      {helpBar(view, width)}
    </Text>
  );
}
