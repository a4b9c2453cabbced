/**
 * `covidct wait ID --api URL --key KEY [--timeout S] [--json]`: poll a study until it is COMPLETE
 * or FAILED, with a progress bar of classified over selected slices (on a terminal). Exit code 1
 * when the study FAILED or the wait timed out.
 */
import type { Command } from 'commander';
import { definedOnly } from '../../core/defined.js';
import { integerOption, printJson, warn } from '../io.js';

/** The options `wait` takes. */
export interface WaitCliOptions {
  readonly api: string;
  readonly key: string;
  readonly timeout?: number;
  readonly interval?: number;
  readonly json?: boolean;
}

/** Register `wait`. */
export function registerWait(program: Command): void {
  program
    .command('wait')
    .description('wait until a study is COMPLETE or FAILED (exit code 1 on FAILED or timeout)')
    .argument('<studyId>', 'the id `covidct upload` printed')
    .requiredOption('--api <url>', 'the API base URL')
    .requiredOption('--key <key>', "the hospital's API key")
    .addOption(integerOption('--timeout <seconds>', 'give up after this long (default 600)', 1, 86_400))
    .addOption(integerOption('--interval <seconds>', 'poll period (default 2)', 1, 3600))
    .option('--json', 'print the final status as JSON')
    .action(async (studyId: string, options: WaitCliOptions) => {
      const [{ formatStatus, waitForStudy }, { startProgress }] = await Promise.all([
        import('../../pipeline/api-client.js'),
        import('../progress.js'),
      ]);
      const progress = startProgress('classified', 1);
      let result: Awaited<ReturnType<typeof waitForStudy>>;
      try {
        result = await waitForStudy({
          api: options.api,
          key: options.key,
          studyId,
          ...definedOnly({
            timeoutSeconds: options.timeout,
            intervalSeconds: options.interval,
          }),
          onProgress: (s) => {
            if (s.selectedCount !== undefined && s.selectedCount > 0) {
              progress.update(s.classifiedCount ?? 0, s.selectedCount);
            }
          },
        });
      } finally {
        progress.stop();
      }
      if (options.json) printJson(result.status);
      else process.stdout.write(formatStatus(result.status));
      if (result.timedOut) {
        warn(`${studyId}: still ${result.status.status} after ${options.timeout ?? 600} s`);
        process.exitCode = 1;
      } else if (result.status.status === 'FAILED') {
        process.exitCode = 1;
      }
    });
}
