/**
 * `covidct deidentify SRC OUT [--map FILE] [--json] [--uid-secret-file FILE]`: write a copy of a
 * slice, series or study folder that may leave the hospital (DICOM PS3.15 Basic Profile, TIFF pixel
 * tags only, neutral names, CT images only). The work is in ../../core/deidentify.ts; this parses,
 * reports skipped files on stderr and prints counts and neutral ids, never an original name.
 */
import type { Command } from 'commander';
import { InputError } from '../../core/errors.js';
import { printJson, warn } from '../io.js';

/** The options `deidentify` takes. */
export interface DeidentifyCliOptions {
  readonly map?: string;
  readonly json?: boolean;
  readonly uidSecretFile?: string;
}

/** Register `deidentify`. */
export function registerDeidentify(program: Command): void {
  program
    .command('deidentify')
    .description(
      'copy a study with patient identity removed (DICOM PS3.15 Basic Profile, neutral names, CT images only) into OUT; the way back goes only to --map',
    )
    .argument('<src>', 'a study folder, a series folder or a slice file (gzipped files too)')
    .argument('<out>', 'a new or empty folder for the de-identified copy')
    .option(
      '--map <file>',
      'write original paths and UIDs ↔ neutral ones to this file (mode 0600); keep it in the hospital',
    )
    .option(
      '--uid-secret-file <file>',
      'HMAC key for new UIDs (at least 16 bytes), so the same UID gets the same replacement across runs; default: random per run',
    )
    .option('--json', 'print JSON: { series: [ { id, slices } ], slices, skipped }')
    .action(async (src: string, out: string, options: DeidentifyCliOptions) => {
      const [
        { deidentifyStudy, deidentifySummary, isInside, reserveMapFile, writeMapFile },
        { readUidSecret },
        { startProgress },
      ] = await Promise.all([
        import('../../core/deidentify.js'),
        import('../../core/dicom/uids.js'),
        import('../progress.js'),
      ]);
      if (options.map !== undefined) {
        if (isInside(options.map, out)) {
          throw new InputError(
            options.map,
            'the map file must not be inside OUT (OUT is what leaves the hospital)',
          );
        }
      }
      const uidSecret =
        options.uidSecretFile === undefined ? undefined : await readUidSecret(options.uidSecretFile);
      const claim = options.map === undefined ? undefined : await reserveMapFile(options.map);
      const progress = startProgress('de-identifying');
      let result: Awaited<ReturnType<typeof deidentifyStudy>>;
      try {
        result = await deidentifyStudy(src, out, {
          ...(uidSecret === undefined ? {} : { uidSecret }),
          onSkip: (file, reason) => {
            progress.stop();
            warn(`${file}: skipped, ${reason}`);
          },
          onProgress: (done, total) => progress.update(done, total),
        });
      } catch (error) {
        await claim?.release();
        throw error;
      } finally {
        progress.stop();
      }
      if (options.map !== undefined) await writeMapFile(options.map, src, result);
      const summary = deidentifySummary(result);
      if (options.json) printJson(summary);
      else {
        process.stdout.write(
          `${summary.slices} slice${summary.slices === 1 ? '' : 's'} in ${summary.series.length} series (${summary.series.map((s) => s.id).join(', ')}), ${summary.skipped} skipped\n`,
        );
      }
    });
}
