/**
 * `covidct upload PATH --api URL --key KEY [--json] [--threshold F] [--map FILE] [--uid-secret-file FILE]`:
 * create a study through the pipeline's API and upload its slices with the presigned URLs, manifest
 * last. The study is de-identified first, once, as `covidct deidentify` does (neutral names, CT images
 * only); what leaves is exactly what was hashed. The work is in ../api-client.ts, imported inside the action.
 */
import type { Command } from 'commander';
import { definedOnly } from '../../core/defined.js';
import { parseVoteThresholdOption, printJson, warn } from '../io.js';

/** The options `upload` takes. */
export interface UploadCliOptions {
  readonly api: string;
  readonly key: string;
  readonly json?: boolean;
  readonly threshold?: number;
  readonly concurrency?: number;
  readonly map?: string;
  readonly uidSecretFile?: string;
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
    .option(
      '--map <file>',
      'write original paths and UIDs ↔ the neutral ones sent to this file (mode 0600); keep it in the hospital',
    )
    .option(
      '--uid-secret-file <file>',
      'HMAC key for new UIDs (at least 16 bytes); default: random per upload',
    )
    .option('--json', 'print JSON: { studyId, series, slices, bytes, skipped }')
    .action(async (path: string, options: UploadCliOptions) => {
      const [{ uploadStudy }, { startProgress }, { readUidSecret }] = await Promise.all([
        import('../../pipeline/api-client.js'),
        import('../progress.js'),
        import('../../core/dicom/uids.js'),
      ]);
      const uidSecret =
        options.uidSecretFile === undefined ? undefined : await readUidSecret(options.uidSecretFile);
      const progress = startProgress('upload');
      try {
        const result = await uploadStudy({
          path,
          api: options.api,
          key: options.key,
          ...definedOnly({
            threshold: options.threshold,
            mapFile: options.map,
            uidSecret,
          }),
          onSkip: (file, reason) => warn(`${file}: skipped, ${reason}`),
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
