/**
 * `covidct classify --model DIR FILE…`: each slice file through the classifier as it is (no
 * selection, no resize). TensorFlow.js is loaded inside the action, so other commands never pay for it.
 */
import type { Command } from 'commander';
import { InputError } from '../../core/errors.js';
import { BACKEND_OPTION_HELP } from '../../models/backend-names.js';
import { integerOption, printJson } from '../io.js';

/** The options `classify` takes. */
export interface ClassifyCliOptions {
  readonly model: string;
  readonly json?: boolean;
  /** A backend name, checked once tfjs is loaded. */
  readonly backend?: string;
  readonly batch?: number;
}

/** Register `classify`. */
export function registerClassify(program: Command): void {
  program
    .command('classify')
    .description('classify slice files as they are (no selection): COVID or normal, with [pCovid, pNormal]')
    .argument('<files...>', 'TIFF or DICOM slices of the size the model takes (512×512 for the paper’s)')
    .requiredOption(
      '--model <dir>',
      'a model folder (model.json, weights, manifest.json) from `covidct import-keras` or `covidct train`',
    )
    .option('--json', 'print JSON: [ { file, probabilities: [pCovid, pNormal], label } ]')
    .option('--backend <name>', `${BACKEND_OPTION_HELP} (default: the best that loads)`)
    .addOption(integerOption('--batch <n>', 'slices per forward pass', 1, 256))
    .action(async (files: string[], options: ClassifyCliOptions) => {
      if (files.length === 0) throw new InputError('classify', 'no slice files given');
      const [{ classifyFiles, initBackendOption, loadClassifier }, { createPredictor }] = await Promise.all([
        import('../../models/classifier.js'),
        import('../../models/predictor.js'),
      ]);
      const choice = await initBackendOption(options.backend);
      const classifier = await loadClassifier(options.model);
      const batch = options.batch ?? 4;
      // Workers each load the model: worth it only with more than one batch to share.
      const predictor = await createPredictor(classifier, {
        backend: choice.name,
        ...(files.length > batch ? {} : { poolSize: 1 }),
      });
      try {
        const results = await classifyFiles(files, predictor, { batchSize: batch });
        if (options.json) {
          printJson(results);
          return;
        }
        const width = Math.max(...results.map((r) => r.file.length));
        for (const r of results) {
          process.stdout.write(
            `${r.file.padEnd(width)}  ${r.label.padEnd(6)}  pCovid ${r.probabilities[0].toFixed(4)}  pNormal ${r.probabilities[1].toFixed(4)}\n`,
          );
        }
      } finally {
        await predictor.close();
        classifier.dispose();
      }
    });
}
