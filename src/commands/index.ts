/** Every subcommand, registered on one commander program. */
import type { Command } from 'commander';
import { registerInspect } from './inspect.js';
import { registerLesion } from './lesion.js';
import { registerExport } from './export.js';
import { registerPaths } from './paths.js';
import { registerGradients } from './gradients.js';
import { registerReport } from './report.js';
import { registerMerge } from './merge.js';
import { registerExplore } from './explore.js';
import { registerAnnotate } from './annotate.js';
import { addStderrOptions, applyStderrFlags } from './common.js';

export function registerCommands(program: Command): void {
  registerInspect(program);
  registerLesion(program);
  registerExport(program);
  registerPaths(program);
  registerGradients(program);
  registerReport(program);
  registerMerge(program);
  registerExplore(program);
  registerAnnotate(program);
  for (const cmd of program.commands) addStderrOptions(cmd);
  program.hook('preAction', (_program, action) => applyStderrFlags(action.opts()));
}
