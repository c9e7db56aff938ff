/**
 * The block list: each residual block with its stage, shortcut, downsampling marker, and a
 * bar of how much the error rises when it alone is deleted (filled in as the sweep runs).
 */
import { Box, Text } from 'ink';
import { cut, fit, hbar, pct, signedPts } from './charts.js';
import { baseline, singleBlock, type ExploreState } from './state.js';

/** First row shown so that the cursor stays in a window of `visible` rows, centred when it can be. */
export function scrollWindow(cursor: number, count: number, visible: number): number {
  if (count <= visible) return 0;
  return Math.max(0, Math.min(count - visible, cursor - Math.floor(visible / 2)));
}

const LEFT = 29; // "› [x] 123 stage identity   ↓ "
const RIGHT = 16; // " +12.34  12.34%"

/** The bar takes every column the fixed parts leave. */
export function blockListWidths(width: number): { bar: number } {
  return { bar: Math.max(4, width - LEFT - RIGHT) };
}

/** Rows of the block list a body of `height` lines holds (header and detail line aside). */
export function listRows(height: number): number {
  return Math.max(1, height - 2);
}

export function BlocksView({ state, width, height }: { state: ExploreState; width: number; height: number }) {
  const { blocks } = state.info;
  const base = baseline(state);
  const { bar } = blockListWidths(width);
  const visible = listRows(height);
  const top = scrollWindow(state.cursor, blocks.length, visible);
  const shown = blocks.slice(top, top + visible);
  const deltas = blocks.map((b) => {
    const m = singleBlock(state, b.index);
    return m && base ? m.error - base.error : null;
  });
  // Bars share one scale: the largest rise (at least half a point, so noise stays small).
  const scale = Math.max(0.005, ...deltas.map((d) => d ?? 0));
  // A transformer's blocks are its sublayers: "L3 attention" where a ResNet shows stage and shortcut.
  const transformer = blocks.some((b) => b.sublayer);
  const header = fit(`  del blk ${transformer ? 'sublayer        ' : 'stage shortcut  '} ↓ ${fit('error rise when deleted alone', bar)}   Δ pts   error`, width);
  const cur = blocks[state.cursor];
  const curM = cur ? singleBlock(state, cur.index) : null;
  let detail = '';
  if (cur) {
    if (blocks.length > visible) detail += `rows ${top + 1}–${top + shown.length} of ${blocks.length} · `;
    detail += cur.sublayer
      ? `block ${cur.index}: ${cur.sublayer} (a residual sublayer: deleting it skips its branch)`
      : `block ${cur.index}: stage ${cur.stage}, ${cur.shortcut} shortcut${cur.downsampling ? ' (downsampling)' : ''}, ${cur.post ?? 'nothing'} after the Add`;
    detail += curM && base ? `; alone deleted ${pct(curM.error)} (${signedPts(curM.error - base.error)} pts)` : '; alone deleted: measuring…';
  }
  return (
    <Box flexDirection="column" width={width} height={height}>
      <Text dimColor wrap="truncate">{header}</Text>
      {shown.map((b) => {
        const selected = b.index === state.cursor;
        const deleted = state.deleted.includes(b.index);
        const m = singleBlock(state, b.index);
        const d = deltas[b.index] ?? null;
        const what = b.sublayer ? b.sublayer.replace(/^layer (\d+) · /, 'L$1 ').padEnd(16) : `${String(b.stage).padStart(5)} ${b.shortcut.padEnd(10)}`;
        const left = `${selected ? '›' : ' '} ${deleted ? '[x]' : '[ ]'} ${String(b.index).padStart(3)} ${what} ${b.downsampling ? '↓' : ' '} `;
        const barText = d === null ? fit('…', bar) : fit(d > 0 ? hbar(d / scale, bar) : '·', bar);
        const right = ` ${(d === null ? '' : signedPts(d)).padStart(7)} ${(m ? pct(m.error) : '').padStart(7)}`;
        return (
          <Text key={b.index} wrap="truncate" inverse={selected} bold={selected}>
            <Text color={deleted ? 'red' : undefined}>{left}</Text>
            <Text color={deleted ? 'gray' : 'cyan'}>{barText}</Text>
            {right}
          </Text>
        );
      })}
      {Array.from({ length: Math.max(0, visible - shown.length) }, (_, i) => (
        <Text key={`pad${i}`}> </Text>
      ))}
      <Text dimColor wrap="truncate">{cut(detail, width) || ' '}</Text>
    </Box>
  );
}
