/** reslens merge: the shard files of `reslens report --shard I/N` → the report one machine would have written. */
import type { Command } from 'commander';
import { Option } from 'commander';
import { renderHtml } from '../report/html.js';
import { assemble, checkReport, checkShards, readState } from '../report/state.js';
import { checkOutput, toJson, writeFileAtomic } from '../files.js';
import { renderReportSummary } from './report.js';
import { note } from '../ui/progress.js';

export function registerMerge(program: Command): void {
  program
    .command('merge')
    .description('combine the shard files of reslens report --shard I/N into one report')
    .argument('<shards...>', 'the N shard files (any order)')
    .addOption(new Option('-o, --output <file>', 'the report (JSON)').default('report.json'))
    .addOption(new Option('--html <file>', 'also write the self-contained HTML page'))
    .addOption(new Option('--force', 'replace existing output files'))
    .addHelpText('after', `
Examples:
  reslens merge shard-0.json shard-1.json shard-2.json shard-3.json -o report.json
  reslens merge shards/*.json -o report.json --html report.html`)
    .action(async (files: string[], o: { output: string; html?: string; force?: boolean }) => {
      checkOutput(o.output, { force: o.force, flag: '-o' });
      if (o.html) checkOutput(o.html, { force: o.force, flag: '--html' });
      const states = checkShards(files.map((file) => ({ file, state: readState(file, 'shard file') })));
      const devices = [...new Set(states.map((s) => s.device))];
      if (devices.length > 1) note(`reslens: note: the shards ran on different devices (${devices.join(', ')}); the report names ${devices[0]}`);
      const report = checkReport(assemble(states));
      const html = o.html ? await renderHtml(report) : null;
      writeFileAtomic(o.output, toJson(report), !!o.force, '-o');
      note(`merged ${states.length} shards into ${o.output}`);
      if (html !== null && o.html) {
        writeFileAtomic(o.html, html, !!o.force, '--html');
        note(`wrote ${o.html}`);
      }
      process.stdout.write(renderReportSummary(report));
    });
}
