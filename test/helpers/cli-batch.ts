/**
 * Runs many reslens command lines in one process (src/main.ts's runCli), each with its own
 * captured stdout and stderr: a spawn per case costs ~0.5 s of Node start-up, which held the
 * hostile-input fuzz to a few dozen cases.
 *   node --import tsx test/helpers/cli-batch.ts CASES.json RESULTS.json
 * CASES.json: an array of argument lists (without node and the script). RESULTS.json gets
 * [{ code, out, err }] in the same order; `crash` holds an exception that escaped runCli, which
 * the exit-code contract forbids. PROGRESS (RESULTS.json.progress) names the case running, so
 * a hang can be traced to it.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { runCli } from '../../src/main.js';

const [casesFile, resultsFile] = process.argv.slice(2) as [string, string];
const cases = JSON.parse(readFileSync(casesFile, 'utf8')) as string[][];
const results: { code: number | null; out: string; err: string; crash?: string }[] = [];
const realOut = process.stdout.write.bind(process.stdout);
const realErr = process.stderr.write.bind(process.stderr);
for (const [i, args] of cases.entries()) {
  writeFileSync(`${resultsFile}.progress`, `${i}\n`);
  let out = '';
  let err = '';
  process.stdout.write = ((s: string | Uint8Array) => ((out += String(s)), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array) => ((err += String(s)), true)) as typeof process.stderr.write;
  try {
    results.push({ code: await runCli(['node', 'reslens', ...args]), out, err });
  } catch (e) {
    results.push({ code: null, out, err, crash: e instanceof Error ? (e.stack ?? e.message) : String(e) });
  } finally {
    process.stdout.write = realOut;
    process.stderr.write = realErr;
  }
}
writeFileSync(resultsFile, JSON.stringify(results));
