/** `covidct status ID --api URL --key KEY [--json]`: a study's status from the pipeline's API. */
import type { Command } from 'commander';
import { printJson } from '../io.js';

/** Register `status`. */
export function registerStatus(program: Command): void {
  program
    .command('status')
    .description("a study's status, counts and decision")
    .argument('<studyId>', 'the id `covidct upload` printed')
    .requiredOption('--api <url>', 'the API base URL')
    .requiredOption('--key <key>', "the hospital's API key")
    .option('--json', 'print the API response as JSON')
    .action(async (studyId: string, options: { api: string; key: string; json?: boolean }) => {
      const { formatStatus, getStudy } = await import('../../pipeline/api-client.js');
      const status = await getStudy(options, studyId);
      if (options.json) printJson(status);
      else process.stdout.write(formatStatus(status));
    });
}
