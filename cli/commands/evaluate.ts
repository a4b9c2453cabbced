/**
 * `covidct evaluate`: the paper's figures for a model — slice level on a labelled slice set
 * (confusion matrix; per class sensitivity, specificity, precision, accuracy; overall accuracy)
 * and patient level on labelled patient folders (select → classify → vote: the patient table at a
 * threshold and a sweep over thresholds). TensorFlow.js is loaded inside the action.
 */
import { writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { InputError } from '../../core/errors.js';
import type { PatientTable, SliceMetrics } from '../../core/metrics.js';
import { PAPER_VOTE_THRESHOLD } from '../../core/vote.js';
import { BACKEND_OPTION_HELP } from '../../models/backend-names.js';
import { integerOption, parseNumber, printJson } from '../io.js';
import { startProgress } from '../progress.js';

/** The options as commander hands them over. */
export interface EvaluateCliOptions {
  readonly model?: string;
  readonly csv?: string;
  readonly images?: string;
  readonly data?: string;
  readonly patients?: string;
  readonly series?: string;
  readonly threshold?: number;
  readonly batch?: number;
  readonly json?: boolean;
  readonly plot?: string;
  readonly backend?: string;
}

const pct = (v: number | null) => (v === null ? '     -' : `${(v * 100).toFixed(2).padStart(6)}`);

/** The slice-level report as text. */
export function formatSliceMetrics(m: SliceMetrics): string {
  const c = m.confusion;
  const lines = [
    `slices: ${m.total}, overall accuracy ${pct(m.overallAccuracy).trim()} %`,
    '',
    'confusion (rows truth, columns predicted)',
    '              covid   normal',
    `  covid   ${String(c.covid.covid).padStart(8)} ${String(c.covid.normal).padStart(8)}`,
    `  normal  ${String(c.normal.covid).padStart(8)} ${String(c.normal.normal).padStart(8)}`,
    '',
    'class     sensitivity  specificity  precision  accuracy   (%)',
  ];
  for (const k of ['covid', 'normal'] as const) {
    const p = m.perClass[k];
    lines.push(
      `  ${k.padEnd(7)}    ${pct(p.sensitivity)}       ${pct(p.specificity)}     ${pct(p.precision)}    ${pct(p.accuracy)}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

const TABLE_HEAD =
  'threshold  patients  correct  wrong  covid correct  covid missed  normal correct  normal flagged  undecided';

function tableRow(t: PatientTable): string {
  const n = (v: number, w: number) => String(v).padStart(w);
  return `${t.threshold.toFixed(2).padStart(9)}  ${n(t.patients, 8)}  ${n(t.correct, 7)}  ${n(t.wrong, 5)}  ${n(t.covidCorrect, 13)}  ${n(t.covidMissed, 12)}  ${n(t.normalCorrect, 14)}  ${n(t.normalFlagged, 14)}  ${n(t.undecided, 9)}`;
}

/** The patient table and sweep as text. */
export function formatPatientTables(table: PatientTable, sweep: readonly PatientTable[]): string {
  return [
    `patients at vote threshold ${table.threshold} (COVID when ≥ that fraction of selected slices is COVID)`,
    TABLE_HEAD,
    tableRow(table),
    '',
    'sweep',
    TABLE_HEAD,
    ...sweep.map(tableRow),
    '',
  ].join('\n');
}

/** Register `evaluate`. */
export function registerEvaluate(program: Command): void {
  program
    .command('evaluate')
    .description(
      "the paper's evaluation of a model: slice metrics on a labelled slice set, and the patient table " +
        '(select → classify → vote) with a threshold sweep on labelled patient folders',
    )
    .option('--model <dir>', 'the model folder (default: the installed default model)')
    .option('--csv <file>', "a labelled slice set as a fold CSV 'filename,class' (e.g. CSV/validation1.csv)")
    .option('--images <dir>', 'the folder the CSV names files in')
    .option('--data <dir>', 'instead of --csv: a folder with covid/ and normal/ slice folders')
    .option(
      '--patients <dir|csv>',
      "labelled patients: a folder with covid/<patient>/ and normal/<patient>/ whole-series folders, or a CSV 'folder,class'",
    )
    .option(
      '--series <name>',
      "use only series folders of this name, e.g. SR_2 (the authors' patient table used only SR_2)",
    )
    .option(
      '--threshold <fraction>',
      `vote threshold of the patient table (default ${PAPER_VOTE_THRESHOLD}, the paper's; the authors' code used 0.1)`,
      parseNumber('--threshold'),
    )
    .addOption(integerOption('--batch <n>', 'slices per forward pass (default 8)', 1, 1024))
    .option('--json', 'print everything as JSON')
    .option('--plot <file.png>', 'draw the threshold sweep as a PNG')
    .option('--backend <name>', BACKEND_OPTION_HELP)
    .action(async (o: EvaluateCliOptions) => {
      if (o.csv === undefined && o.data === undefined && o.patients === undefined) {
        throw new InputError(
          'evaluate',
          'nothing to evaluate: give --csv F --images DIR, --data DIR, and/or --patients DIR',
        );
      }
      if (o.csv !== undefined && o.images === undefined) {
        throw new InputError('--csv', 'needs --images DIR (the folder the CSV names files in)');
      }
      if (o.csv !== undefined && o.data !== undefined)
        throw new InputError('--data', 'give either --csv or --data, not both');
      if (o.plot !== undefined && o.patients === undefined)
        throw new InputError('--plot', 'needs --patients (it plots the sweep)');
      const { resolveModelDir } = await import('../../models/default-model.js');
      const modelDir = resolveModelDir(o.model);
      const dataset = await import('../../core/dataset.js');
      const slices =
        o.csv !== undefined
          ? await dataset.readSliceCsv(o.csv, o.images!)
          : o.data !== undefined
            ? await dataset.readSliceFolders(o.data)
            : undefined;
      const patients = o.patients === undefined ? undefined : await dataset.readPatients(o.patients);
      const [backendMod, classifierMod, predictorMod, evaluate] = await Promise.all([
        import('../../models/backend.js'),
        import('../../models/classifier.js'),
        import('../../models/predictor.js'),
        import('../../models/evaluate/evaluate.js'),
      ]);
      const prefer = backendMod.parseBackendOption(o.backend);
      const backend = await backendMod.initBackend(prefer === undefined ? {} : { prefer });
      const classifier = await classifierMod.loadClassifier(modelDir);
      const predictor = await predictorMod.createPredictor(classifier, { backend: backend.name });
      // The ONNX Runtime (or wasm) workers keep the process alive until closed, on errors too.
      try {
        const [size] = classifier.inputShape;
        const batchSize = o.batch ?? 8;
        const report: Record<string, unknown> = {
          model: { dir: modelDir, arch: classifier.arch, inputSize: size },
          backend: predictor.backend,
        };
        let text = `model ${modelDir} (${classifier.arch}, ${size}×${size}) on ${predictor.backend}\n\n`;
        if (slices !== undefined) {
          const progress = startProgress('slices');
          const classify = evaluate.modelClassifier(predictor, {
            batchSize,
            onProgress: (d) => progress.update(d, slices.length),
          });
          const { metrics } = await evaluate.evaluateSlices(slices, classify);
          progress.stop();
          report.slices = metrics;
          text += `${formatSliceMetrics(metrics)}\n`;
        }
        if (patients !== undefined) {
          const progress = startProgress('patients', 1);
          const result = await evaluate.evaluatePatients(
            patients,
            evaluate.modelClassifier(predictor, { batchSize }),
            {
              threshold: o.threshold ?? PAPER_VOTE_THRESHOLD,
              ...(o.series === undefined ? {} : { series: o.series }),
              onPatient: (d, t) => progress.update(d, t),
            },
          );
          progress.stop();
          report.patients = result;
          text += formatPatientTables(result.table, result.sweep);
          const failed = result.patients.filter((p) => p.error !== undefined);
          for (const p of failed) text += `note: ${p.id}: ${p.error}\n`;
          if (o.plot !== undefined) {
            const { renderSweepPng, SWEEP_PLOT_LEGEND } = await import('../../models/evaluate/plot.js');
            await writeFile(o.plot, renderSweepPng(result.sweep, result.threshold));
            text += `\nplot: ${o.plot} (x: vote threshold 0…1; y: 0…1; ${Object.values(SWEEP_PLOT_LEGEND).join('; ')})\n`;
            report.plot = o.plot;
          }
        }
        if (o.json) printJson(report);
        else process.stdout.write(text);
      } finally {
        await predictor.close();
        classifier.dispose();
      }
    });
}
