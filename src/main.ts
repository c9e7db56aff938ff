/**
 * reslens's command line as a function: argv in, exit code out (0 success, 2 bad usage or
 * input, 1 internal error, 130 interrupted). src/cli.ts is the executable around it; the fuzz
 * test runs thousands of hostile inputs through it in one process.
 */
import { Command, CommanderError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { Interrupted, isUserError } from './errors.js';
import { registerCommands } from './commands/index.js';
import { shown } from './text.js';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

export function buildProgram(): Command {
  const program = new Command('reslens')
    .description('ResNets as ensembles of shallow networks (Veit et al. 2016)')
    .version(pkg.version, '-V, --version')
    .addOption(new Option('--debug', 'print stack traces for errors'))
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({
      writeErr: (s) => process.stderr.write(s.split('\n').map(shown).join('\n')),
      // A terminal's width, else $COLUMNS (help piped to a pager or a file), else 80.
      getOutHelpWidth: () => (process.stdout.isTTY ? process.stdout.columns : Number(process.env.COLUMNS) || 80),
    });
  registerCommands(program);
  return program;
}

export async function runCli(argv: string[]): Promise<number> {
  const program = buildProgram();
  const debug = argv.includes('--debug');
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // help and version exit 0; every parse error is bad usage.
      return e.exitCode === 0 ? 0 : 2;
    }
    if (e instanceof Interrupted) {
      process.stderr.write(`reslens: ${shown(e.message)}\n`);
      return 130;
    }
    if (isUserError(e)) {
      process.stderr.write(`reslens: ${shown(e.message)}\n`);
      if (debug) process.stderr.write(`${e.stack}\n`);
      return 2;
    }
    const msg = shown(e instanceof Error ? e.message.split('\n')[0]! : String(e));
    process.stderr.write(`reslens: internal error: ${msg}${debug ? '' : ' (run with --debug for the stack trace; please report it)'}\n`);
    if (debug && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    return 1;
  }
}
