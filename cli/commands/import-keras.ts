/** `covidct import-keras FILE OUTDIR`: a Keras HDF5 checkpoint (the authors' published models) into a covidct model folder. */
import type { Command } from 'commander';
import { initBackend } from '../../models/backend.js';
import { importKerasToFolder } from '../../models/keras/save.js';
import { ARCHITECTURES, isArchitecture } from '../../models/registry.js';
import { OptionValueError, printJson } from '../io.js';

function parseArch(value: string): string {
  if (!isArchitecture(value)) {
    throw new OptionValueError(`--arch must be one of ${ARCHITECTURES.join(', ')}, got '${value}'`);
  }
  return value;
}

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
      `architecture (${ARCHITECTURES.join(', ')}): required for weights-only files; for full models, checked`,
      parseArch,
    )
    .option('--json', 'print the manifest as JSON')
    .action(async (file: string, outDir: string, options: { arch?: string; json?: boolean }) => {
      // Import does no arithmetic: the plain JS backend is enough and starts at once.
      await initBackend({ prefer: 'cpu', log: () => {} });
      const { model, manifest } = await importKerasToFolder(
        file,
        outDir,
        options.arch === undefined ? {} : { architecture: options.arch },
      );
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
        `${file} (${version}) → ${outDir}: ${arch}, ${manifest.params.toLocaleString('en-US')} parameters, input ${manifest.inputShape.join('×')}, sha256 ${manifest.sourceSha256}\n`,
      );
    });
}
