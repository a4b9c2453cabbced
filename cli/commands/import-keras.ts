/**
 * `covidct import-keras FILE OUTDIR`: a Keras HDF5 checkpoint (the authors' published models) into a
 * covidct model folder. tfjs and h5wasm are imported inside the action, so other commands never load them.
 */
import type { Command } from 'commander';
import { InputError } from '../../core/errors.js';
import { printJson } from '../io.js';
import {
  diagnosticOption,
  type IntendedUseCliOptions,
  intendedUseFromOptions,
  intendedUseOption,
} from './intended-use.js';
import { ARCHITECTURES_HELP } from './model.js';

/** Register `import-keras`. */
export function registerImportKeras(program: Command): void {
  program
    .command('import-keras')
    .description(
      "import a Keras HDF5 model (model.save() file, e.g. the authors' ResNet50V2-FPN checkpoints) into a model folder for --model",
    )
    .argument('<file>', 'the Keras .h5/.hdf5 file')
    .argument('<outdir>', 'the model folder to write (model.json, weights.bin, manifest.json)')
    .option(
      '--arch <name>',
      `architecture (${ARCHITECTURES_HELP}): required for weights-only files; for full models, checked`,
    )
    .option('--json', 'print the manifest as JSON')
    .addOption(intendedUseOption())
    .addOption(diagnosticOption())
    .action(
      async (
        file: string,
        outDir: string,
        options: { arch?: string; json?: boolean } & IntendedUseCliOptions,
      ) => {
        const intendedUse = intendedUseFromOptions(options);
        const [{ initBackend }, { importKerasToFolder }, { ARCHITECTURES, isArchitecture }] =
          await Promise.all([
            import('../../models/backend.js'),
            import('../../models/keras/save.js'),
            import('../../models/registry.js'),
          ]);
        if (options.arch !== undefined && !isArchitecture(options.arch)) {
          throw new InputError('--arch', `must be one of ${ARCHITECTURES.join(', ')}, got '${options.arch}'`);
        }
        // Import does no arithmetic: the plain JS backend is enough and starts at once.
        await initBackend({ prefer: 'cpu', log: () => {} });
        const { model, manifest } = await importKerasToFolder(file, outDir, {
          intendedUse,
          ...(options.arch === undefined ? {} : { architecture: options.arch }),
        });
        model.dispose();
        if (options.json) {
          printJson({ outDir, manifest });
          return;
        }
        const version =
          manifest.source.kerasVersion === null ? 'Keras' : `Keras ${manifest.source.kerasVersion}`;
        const arch = manifest.knownArchitecture
          ? manifest.arch
          : `${manifest.arch} (not a covidct architecture)`;
        process.stdout.write(
          `${file} (${version}) → ${outDir}: ${arch}, ${manifest.params.toLocaleString('en-US')} parameters, input ${manifest.inputShape.join('×')}, sha256 ${manifest.sourceSha256}; ${intendedUse.diagnostic ? 'for diagnostic use' : 'not for diagnostic use'}: ${intendedUse.statement}\n`,
        );
      },
    );
}
