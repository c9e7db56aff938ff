/**
 * Strings that come from files (metadata, tensor and node names, op types, file names found in
 * a data folder) reach the terminal only through `shown`: a control character in a model could
 * otherwise clear the screen, set the window title or hide text (ESC, CSI, BEL, bidi overrides).
 */

/** C0 controls, DEL, C1 controls, and the Unicode bidi embeddings/overrides/isolates. */
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** `s` with every control character written as an escape (`\x1b`, `\n`, `\u202e`), safe to print. */
export function shown(s: string): string {
  return s.replace(UNSAFE, (c) => {
    const named = NAMED[c];
    if (named) return named;
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}
