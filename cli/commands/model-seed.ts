/**
 * `covidct model seed` (a compact seeded model folder: fixed random weights from a seed, BatchNorm
 * statistics calibrated on slices) and `covidct model materialize` (any model folder, seeded ones
 * included, written out as a plain tfjs folder with every weight, e.g. for `covidct model upload`:
 * the GPU worker loads plain folders). See models/seeded.ts.
 */
import type { Command } from 'commander';
import { InputError } from '../../core/errors.js';
import { pickCalibration } from '../../models/calibration-slices.js';
import { integerOption, parseWidth } from '../io.js';
import {
  diagnosticOption,
  type IntendedUseCliOptions,
  intendedUseFromOptions,
  intendedUseOption,
} from './intended-use.js';

/** Options of `model seed`. */
interface SeedCliOptions {
  readonly arch?: string;
  readonly seed?: number;
  readonly inputSize?: number;
  readonly width?: string;
  readonly calibrateCsv?: string;
  readonly images?: string;
  readonly calibrationSlices?: number;
}

/** Register `model seed` and `model materialize` under `model`. */
export function registerModelSeed(model: Command): void {
  model
    .command('seed')
    .description(
      'write a compact seeded model folder: fixed random weights regenerated from --seed (Keras default ' +
        'initialisers, covidct-mulberry32-v1), BatchNormalization statistics calibrated on slices; the ' +
        'start of `covidct train --init-weights DIR --trainable heads --no-augment`',
    )
    .argument('<outdir>', 'the folder to write (model.json, stored.bin, manifest.json)')
    .option('--arch <name>', 'architecture (default resnet50v2-fpn)')
    .addOption(integerOption('--seed <s>', 'seed of the fixed weights (default 1)', 0, 2 ** 32 - 1))
    .addOption(integerOption('--input-size <n>', 'input size (default 512)', 16, 4096))
    .option('--width <w>', 'width multiplier (default 1)')
    .option('--calibrate-csv <file>', "slices to calibrate BatchNorm on: a fold CSV 'filename,class'")
    .option('--images <dir>', 'the folder the CSV names files in')
    .addOption(
      integerOption(
        '--calibration-slices <n>',
        'how many slices, half COVID half normal (default 12)',
        1,
        1000,
      ),
    )
    .addOption(intendedUseOption())
    .addOption(diagnosticOption())
    .action(async (outDir: string, o: SeedCliOptions & IntendedUseCliOptions) => {
      const intendedUse = intendedUseFromOptions(o);
      if (o.calibrateCsv === undefined || o.images === undefined) {
        throw new InputError(
          'model seed',
          'give --calibrate-csv F --images DIR (slices to calibrate BatchNorm on)',
        );
      }
      const width = o.width === undefined ? 1 : parseWidth(o.width);
      const { readSliceCsv } = await import('../../core/dataset.js');
      const all = await readSliceCsv(o.calibrateCsv, o.images);
      const picked = pickCalibration(all, o.calibrationSlices ?? 12);
      const [backendMod, registry, seeded, data] = await Promise.all([
        import('../../models/backend.js'),
        import('../../models/registry.js'),
        import('../../models/seeded.js'),
        import('../../models/train/data.js'),
      ]);
      const backend = await backendMod.initBackend();
      const arch = o.arch ?? registry.DEFAULT_ARCHITECTURE;
      const inputSize = o.inputSize ?? 512;
      const seed = o.seed ?? 1;
      const t0 = performance.now();
      const built = registry.buildArchitecture(arch, { inputSize, width });
      seeded.fillSeededWeights(built, seed);
      const slices = await Promise.all(picked.map((p) => data.loadSlicePixels(p.path, inputSize)));
      const count = seeded.calibrateBatchNorm(built, slices);
      const seconds = (performance.now() - t0) / 1000;
      const manifest = await seeded.saveSeededModel(built, outDir, {
        arch,
        width,
        inputSize,
        seed,
        createdBy: 'covidct model seed',
        intendedUse,
        notes: {
          calibration: {
            slices: picked.length,
            covid: picked.filter((p) => p.label === 'covid').length,
            batchNormLayers: count,
            seconds: Math.round(seconds),
            backend: backend.tf,
          },
        },
      });
      process.stdout.write(
        `${outDir}: ${arch} ${inputSize}×${inputSize} width ${width}, seed ${seed}, ${count} BatchNorm layers calibrated on ${picked.length} slices in ${seconds.toFixed(1)} s; weights sha256 ${manifest.materializedSha256.slice(0, 12)}…\n`,
      );
    });
  model
    .command('materialize')
    .description(
      'write any model folder (a compact seeded one included) as a plain tfjs folder with every weight ' +
        '(model.json, weights.bin, manifest.json), e.g. before `covidct model upload` for the GPU worker',
    )
    .argument('<dir>', 'the model folder')
    .argument('<outdir>', 'the folder to write')
    .action(async (dir: string, outDir: string) => {
      const [backendMod, io] = await Promise.all([
        import('../../models/backend.js'),
        import('../../models/io.js'),
      ]);
      await backendMod.initBackend();
      const { model: m, manifest } = await io.loadModel(dir);
      await io.saveModel(m, outDir, {
        arch: manifest?.arch ?? m.name,
        classes: ['covid', 'normal'],
        createdBy: `covidct model materialize (from ${manifest?.createdBy ?? 'a tfjs model'})`,
        // The same weights: the same intended use (none declared stays none: not diagnostic).
        ...(manifest?.intendedUse === undefined ? {} : { intendedUse: manifest.intendedUse }),
      });
      m.dispose();
      process.stdout.write(`${outDir}: ${manifest?.arch ?? m.name} with every weight\n`);
    });
}
