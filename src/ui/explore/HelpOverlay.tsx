/** The `?` overlay: every key of the keymap table with what it does. */
import { Box, Text } from 'ink';
import { cut, fit } from './charts.js';
import { KEYMAP, keysLabel } from './keymap.js';

export function helpLines(width: number, height: number): string[] {
  const keyWidth = Math.max(...KEYMAP.map((b) => keysLabel(b).length)) + 2;
  const lines = ['keys of reslens explore (? or Esc closes this list)'];
  for (const b of KEYMAP) {
    const where = b.views ? ` (${b.views.join(', ')} view)` : '';
    lines.push(cut(`  ${fit(keysLabel(b), keyWidth)}${b.description}${where}`, width));
  }
  const notes = [
    '',
    'Deleting a block leaves post(shortcut(x)): its residual branch is skipped, 2^n paths become 2^(n-1).',
    'Veit et al. 2016: deleting one block of a ResNet barely moves the error; an ensemble losing a member.',
  ];
  for (const l of notes) if (lines.length < height) lines.push(cut(l, width));
  return lines.slice(0, height);
}

export function HelpOverlay({ width, height }: { width: number; height: number }) {
  const lines = helpLines(width, height);
  return (
    <Box flexDirection="column" width={width} height={height}>
      {lines.map((l, i) => (
        <Text key={i} wrap="truncate" bold={i === 0} color={i === 0 ? 'cyan' : undefined}>
          {l || ' '}
        </Text>
      ))}
    </Box>
  );
}
