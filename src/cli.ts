#!/usr/bin/env node
/**
 * reslens command line: parse → library → render. Results go to stdout, progress and
 * diagnostics to stderr; exit 0 on success, 2 on bad usage or input, 1 on internal errors.
 */
import { runCli } from './main.js';

const code = await runCli(process.argv);
// Let stdout drain before exiting (large JSON to a pipe).
process.stdout.write('', () => process.exit(code));
