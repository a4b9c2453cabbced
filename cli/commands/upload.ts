/**
 * `covidct upload PATH --api URL --key KEY [--json] [--threshold F]`: create a study through the
 * pipeline's API and upload its slices with the presigned URLs, manifest last. DICOM headers are
 * stripped of patient identity before anything leaves the machine. The work is in ../api-client.ts,
 * imported inside the action.
 */
import type { Command } from 'commander';
import { parseVoteThresholdOption, printJson } from '../io.js';

/** The options `upload` takes. */
export interface UploadCliOptions {
  readonly api: string;
  readonly key: string;
  readonly json?: boolean;
  readonly threshold?: number;
  readonly concurrency?: number;
}

/** Register `upload`. */
export function registerUpload(program: Command): void {
  program
    .command('upload')
    .description(
      'upload a study to the pipeline (de-identified DICOM or TIFF slices, manifest last); prints the study id',
    )
    .argument('<path>', 'a study folder, a series folder or a slice file')
    .requiredOption('--api <url>', 'the API base URL (`covidct dev` prints it)')
    .requiredOption('--key <key>', "the hospital's API key")
    .option(
      '--threshold <fraction>',
      'vote threshold for this study: a multiple of 0.0001 from 0.0001 to 1',
      parseVoteThresholdOption('--threshold'),
    )
    .option('--json', 'print JSON: { studyId, series, slices, bytes }')
    .action(async (path: string, options: UploadCliOptions) => {
      const [{ uploadStudy }, { startProgress }] = await Promise.all([
        import('../api-client.js'),
        import('../progress.js'),
      ]);
      const progress = startProgress('upload');
      try {
        const result = await uploadStudy({
          path,
          api: options.api,
          key: options.key,
          ...(options.threshold === undefined ? {} : { threshold: options.threshold }),
          onProgress: (done, total) => progress.update(done, total),
        });
        progress.stop();
        if (options.json) printJson(result);
        else process.stdout.write(`${result.studyId}\n`);
      } finally {
        progress.stop();
      }
    });
}
