/**
 * `covidct train`: the authors' recipe (Nadam 1e-4, categorical cross-entropy, batch 14, their
 * augmentation on raw 16-bit values, best checkpoint by validation accuracy), resumable.
 * The command parses options and prints; where a run starts (resume, initial weights, resize) is
 * models/train/session.ts. TensorFlow.js is loaded inside the action, so other commands never pay
 * for it.
 */
import type { Command } from 'commander';
import { definedOnly } from '../../core/defined.js';
import { InputError } from '../../core/errors.js';
import type { IntendedUse } from '../../core/intended-use.js';
import { BACKEND_OPTION_HELP } from '../../models/backend-names.js';
import {
  cachedRunSaver,
  dataSources,
  openTrainSession,
  readTrainingSets,
} from '../../models/train/session.js';
import { integerOption, parseNumber, parseWidth, warn } from '../io.js';
import { type PhasedProgress, phasedProgress } from '../progress.js';
import {
  diagnosticOption,
  type IntendedUseCliOptions,
  intendedUseFromOptions,
  intendedUseOption,
} from './intended-use.js';
import { ARCHITECTURES_HELP } from './model.js';

/** The options as commander hands them over. */
export interface TrainCliOptions {
  readonly arch?: string;
  readonly trainCsv?: string;
  readonly valCsv?: string;
  readonly images?: string;
  readonly data?: string;
  readonly valData?: string;
  readonly epochs?: number;
  readonly lr?: number;
  readonly batch?: number;
  readonly inputSize?: number;
  readonly width?: string;
  readonly initWeights?: string;
  readonly resume?: string;
  readonly out?: string;
  readonly seed?: number;
  readonly trainable?: string;
  readonly augment?: boolean;
  readonly calibrateBn?: number;
  readonly backend?: string;
}

/** Register `train`. */
export function registerTrain(program: Command): void {
  program
    .command('train')
    .description(
      "train a classifier with the authors' recipe: Nadam (lr 1e-4), categorical cross-entropy, batch 14, " +
        'flips, rotation up to 360°, zoom/shift/shear 0.05 on the raw 16-bit values; best/ by validation accuracy, ' +
        'last/ to resume from, metrics.jsonl. Full size (512×512, the paper) needs a GPU (tfjs-node-gpu); on a CPU ' +
        'train at a small --input-size or only the heads (--trainable heads)',
    )
    .option('--train-csv <file>', "a COVID-CTset fold CSV 'filename,class' (e.g. CSV/train1.csv)")
    .option('--val-csv <file>', 'the fold’s validation CSV (e.g. CSV/validation1.csv); picks best/')
    .option('--images <dir>', 'the folder the CSVs name files in')
    .option('--data <dir>', 'instead of CSVs: a folder with covid/ and normal/ slice folders')
    .option('--val-data <dir>', 'with --data: the validation folder (covid/, normal/)')
    .option('--out <dir>', 'output folder: best/, last/, metrics.jsonl (default: the --resume checkpoint’s)')
    .option('--arch <name>', `architecture (${ARCHITECTURES_HELP}); default resnet50v2-fpn`)
    .addOption(
      integerOption(
        '--epochs <n>',
        'total epochs (a resumed run continues up to this); default 50, the paper’s',
        1,
        100000,
      ),
    )
    .option('--lr <rate>', 'Nadam learning rate; default 1e-4, the paper’s', parseNumber('--lr'))
    .addOption(integerOption('--batch <n>', 'slices per step; default 14, the paper’s', 1, 4096))
    .addOption(
      integerOption(
        '--input-size <n>',
        'resize slices to n×n (area averaging on raw values) and build the model for it; the paper uses 512 ' +
          '(no resizing); small sizes (64, 96) are for tests and CPU training',
        16,
        4096,
      ),
    )
    .option('--width <w>', 'width multiplier of every convolution, e.g. 1/16 (default 1, the paper’s)')
    .option(
      '--init-weights <dir>',
      'start from this model folder (import-keras or an earlier train run) instead of random weights; with a ' +
        'different --input-size its convolutions carry over and its Dense heads start fresh (progressive resizing)',
    )
    .option(
      '--resume <dir>',
      'continue a run from its checkpoint (OUT/last, or OUT): weights, optimizer, epoch and random state',
    )
    .addOption(
      integerOption('--seed <s>', 'whole number every random choice follows (default 1)', 0, 2 ** 32 - 1),
    )
    .option(
      '--trainable <which>',
      "'all' (default) or 'heads': train only the final Dense layers, everything else frozen",
    )
    .option('--no-augment', 'no augmentation')
    .addOption(
      integerOption(
        '--calibrate-bn <n>',
        'after each epoch, set BatchNorm statistics from n training slices before validating (short runs: ' +
          'the running averages need hundreds of steps); default off, as in the paper',
        1,
        1000,
      ),
    )
    .option('--backend <name>', BACKEND_OPTION_HELP)
    .addOption(intendedUseOption())
    .addOption(diagnosticOption())
    .action(async (o: TrainCliOptions & IntendedUseCliOptions) => {
      const intendedUse = intendedUseFromOptions(o);
      const trainable = o.trainable ?? 'all';
      if (trainable !== 'all' && trainable !== 'heads') {
        throw new InputError('--trainable', `must be 'all' or 'heads', got '${trainable}'`);
      }
      const width = o.width === undefined ? undefined : parseWidth(o.width);
      const given = dataSources(o);
      // A fresh run's data are read before tfjs starts, so a bad CSV fails in one line at once.
      const freshSets = o.resume === undefined ? await readTrainingSets(given) : undefined;
      const [backendMod, train] = await Promise.all([
        import('../../models/backend.js'),
        import('../../models/train/train.js'),
      ]);
      const prefer = backendMod.parseBackendOption(o.backend);
      // Heads only without augmentation: the frozen part's features are cached once per slice
      // (models/train/cached.ts); they are computed on the inference engine (ONNX Runtime, else the
      // tfjs backend), the heads on tfjs (cpu when that is wasm).
      const cached = trainable === 'heads' && o.augment === false && o.resume === undefined;
      const engine = cached
        ? await backendMod.initBackend(prefer === undefined ? {} : { prefer })
        : undefined;
      const backend =
        engine?.tf ??
        (await train.ensureGradientBackend((line) => process.stderr.write(`${line}\n`), prefer));

      const session = await openTrainSession({
        augment: o.augment !== false,
        ...definedOnly({
          arch: o.arch,
          learningRate: o.lr,
          batchSize: o.batch,
          inputSize: o.inputSize,
          width,
          initWeights: o.initWeights,
          resume: o.resume,
          outDir: o.out,
          seed: o.seed,
          trainable: o.trainable === undefined ? undefined : trainable,
          batchNormCalibration: o.calibrateBn,
        }),
      });
      const { model, start, optimizer, seededInit, outDir } = session;
      if (session.resumedFrom !== undefined) {
        process.stderr.write(`covidct: resuming ${session.resumedFrom} after epoch ${start?.epoch}\n`);
      }
      if (session.resized !== undefined) {
        const r = session.resized;
        process.stderr.write(
          `covidct: ${o.initWeights} moved from ${r.from}×${r.from} to ${r.to}×${r.to}: ` +
            `${r.report.copied.length} layers carried over, fresh: ${r.report.fresh.join(', ') || 'none'}\n`,
        );
      }
      let settings = session.settings;
      const sets =
        freshSets ?? (await readTrainingSets(Object.keys(given).length > 0 ? given : (settings.data ?? {})));
      if (Object.keys(given).length > 0) settings = { ...settings, data: given };
      const epochs = o.epochs ?? 50;
      process.stderr.write(
        `covidct: training ${settings.arch} at ${settings.inputSize}×${settings.inputSize} on ${backend}: ` +
          `${sets.train.length} training slices, ${sets.validation.length} validation slices, batch ${settings.batchSize}, ` +
          `lr ${settings.learningRate}, ${settings.trainable === 'heads' ? 'heads only' : 'all layers'}, epochs ${start?.epoch ?? 0}→${epochs}, out ${outDir}\n`,
      );
      if (sets.validation.length === 0) {
        warn('no validation set: best/ follows the training accuracy');
      }
      const run: TrainRun = {
        model,
        train: sets.train,
        validation: sets.validation,
        settings,
        epochs,
        outDir,
      };
      if (cached) {
        const featureEngine = engine?.name === 'ort' ? 'ort' : 'tfjs';
        await trainCached(run, seededInit, intendedUse, featureEngine);
        return;
      }
      const progress = phasedProgress();
      const result = await train.trainModel({
        ...run,
        createdBy: `covidct train (${settings.arch}, ${settings.inputSize}×${settings.inputSize})`,
        intendedUse,
        ...definedOnly({
          optimizer,
          start,
        }),
        onStep: (epoch, done, total) => progress.update(`epoch ${epoch}/${epochs}`, done, total),
        onEpoch: epochPrinter(progress, epochs),
      });
      progress.stop();
      process.stdout.write(summaryLine(outDir, '', result, start?.epoch ?? 0));
    });
}

/** What both training paths take: the model, its slices, settings, epochs and output folder. */
interface TrainRun {
  readonly model: import('@tensorflow/tfjs-layers').LayersModel;
  readonly train: import('../../core/dataset.js').LabelledSlice[];
  readonly validation: import('../../core/dataset.js').LabelledSlice[];
  readonly settings: import('../../models/train/checkpoint.js').TrainSettings;
  readonly epochs: number;
  readonly outDir: string;
}

/** The last line of a run (both training paths): where best/ and last/ came from. */
function summaryLine(
  outDir: string,
  prefix: string,
  result: Pick<import('../../models/train/train.js').TrainResult, 'epochs' | 'best'>,
  startEpoch: number,
): string {
  const best = result.best;
  return `${outDir}: ${prefix}best/ from epoch ${best.epoch} (${best.monitor} ${best.value?.toFixed(4) ?? '-'}), last/ after epoch ${result.epochs.at(-1)?.epoch ?? startEpoch}, metrics in metrics.jsonl\n`;
}

/** Both training paths' onEpoch: the bar stops, the epoch's line is printed. */
function epochPrinter(
  progress: PhasedProgress,
  epochs: number,
): (m: import('../../models/train/train.js').EpochMetrics) => void {
  return (m) => {
    progress.stop();
    process.stderr.write(epochLine(m, epochs));
  };
}

/** One epoch's line (both training paths). */
function epochLine(m: import('../../models/train/train.js').EpochMetrics, epochs: number): string {
  const val =
    m.valAccuracy === null
      ? ''
      : `  val_loss ${m.valLoss!.toFixed(4)}  val_accuracy ${m.valAccuracy.toFixed(4)}`;
  return (
    `epoch ${m.epoch}/${epochs}  loss ${m.loss.toFixed(4)}  accuracy ${m.accuracy.toFixed(4)}${val}` +
    `${m.best ? '  (best)' : ''}  ${m.seconds.toFixed(1)} s, ${m.secondsPerStep.toFixed(2)} s/step\n`
  );
}

/**
 * Heads only, no augmentation: features cached once, heads trained on them. best/ and last/ are
 * compact seeded folders when the initial weights were one, plain model folders otherwise; no
 * optimizer state is written (epochs cost seconds: rerun rather than resume).
 */
async function trainCached(
  run: TrainRun,
  seededInit: import('../../models/seeded.js').SeededManifest | undefined,
  intendedUse: IntendedUse,
  featureEngine: import('../../models/train/cached.js').FeatureEngine,
): Promise<void> {
  const { trainHeadsCached } = await import('../../models/train/cached.js');
  const { settings, epochs, outDir } = run;
  const createdBy = `covidct train (${settings.arch}, ${settings.inputSize}×${settings.inputSize}, heads on cached features)`;
  const save = await cachedRunSaver(settings, seededInit, createdBy, intendedUse);
  process.stderr.write(
    `covidct: heads only without augmentation: caching the frozen features once per slice${featureEngine === 'ort' ? ' (on ONNX Runtime)' : ''}\n`,
  );
  const progress = phasedProgress();
  const result = await trainHeadsCached({
    ...run,
    save,
    featureEngine,
    onFeatures: (set, done, total) => progress.update(`features (${set})`, done, total),
    onEpoch: epochPrinter(progress, epochs),
  });
  progress.stop();
  process.stdout.write(
    summaryLine(outDir, `features cached in ${result.featureSeconds.toFixed(0)} s; `, result, 0),
  );
}
