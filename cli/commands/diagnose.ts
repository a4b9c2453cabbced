/**
 * `covidct diagnose PATH`: the paper's whole method on a study: select, classify, vote. The model
 * folder is checked before TensorFlow.js is loaded, so a missing model fails at once.
 */
import type { Command } from 'commander';
import { definedOnly } from '../../core/defined.js';
import { notDiagnosticWarning } from '../../core/intended-use.js';
import { PAPER_VOTE_THRESHOLD } from '../../core/vote.js';
import { BACKEND_OPTION_HELP } from '../../models/backend-names.js';
import { resolveModelDir } from '../../models/default-model.js';
import type { DiagnoseResult, DiagnoseStage, VoteFigures } from '../../models/diagnose.js';
import { integerOption, parseVoteThresholdOption, printJson, warn } from '../io.js';
import { type Progress, startProgress } from '../progress.js';

/** The options `diagnose` takes. */
export interface DiagnoseCliOptions {
  readonly model?: string;
  readonly threshold: number;
  readonly heatmaps?: string;
  readonly json?: boolean;
  readonly backend?: string;
  readonly batch?: number;
  readonly workers?: number;
}

/** Parse `--threshold`: a multiple of 0.0001 from 0.0001 to 1 (core/vote.ts's check). */
export const parseVoteThreshold: (value: string) => number = parseVoteThresholdOption('--threshold');

const STAGE_LABELS: Record<DiagnoseStage, string> = {
  read: 'reading slices',
  decode: 'decoding selected slices',
  classify: 'classifying',
  heatmaps: 'drawing heatmaps',
};

/** Register `diagnose`. */
export function registerDiagnose(program: Command): void {
  program
    .command('diagnose')
    .description(
      'diagnose a study: select the open-lung slices, classify them, and vote (COVID when ≥ --threshold of them are COVID)',
    )
    .argument('<path>', 'a study folder of series folders, a series folder, or one slice file')
    .option(
      '--model <dir>',
      'a model folder from `covidct import-keras` or `covidct train` (default: the installed default model)',
    )
    .option(
      '--threshold <f>',
      `fraction of classified slices that must be COVID for a COVID decision (paper: ${PAPER_VOTE_THRESHOLD}, authors' code: 0.1)`,
      parseVoteThreshold,
      PAPER_VOTE_THRESHOLD,
    )
    .option('--heatmaps <dir>', 'write a Grad-CAM overlay PNG for every COVID slice into this folder')
    .option(
      '--json',
      'print JSON: { study, series: [ { id, selectedCount, classifiedCount, covidCount, covidFraction, decision, slices } ], timings, backend, model, intendedUse: { diagnostic, statement }, threshold }',
    )
    .option('--backend <name>', `${BACKEND_OPTION_HELP} (default: the best that loads)`)
    .addOption(integerOption('--batch <n>', 'slices per forward pass', 1, 256))
    .addOption(
      integerOption(
        '--workers <n>',
        'worker threads classifying: ONNX Runtime sessions (default 2 from two cores, the cores shared among them) or the wasm pool (default: the available cores); 1 classifies in this thread',
        1,
        256,
      ),
    )
    .action(async (path: string, options: DiagnoseCliOptions) => {
      // Before tfjs loads: no model is a one-line error, never random weights.
      const modelDir = resolveModelDir(options.model);
      const [{ initBackendOption, loadClassifier }, { diagnoseStudy }] = await Promise.all([
        import('../../models/classifier.js'),
        import('../../models/diagnose.js'),
      ]);
      await initBackendOption(options.backend);
      const classifier = await loadClassifier(modelDir);
      let bar: Progress | undefined;
      let stage: DiagnoseStage | undefined;
      let result: DiagnoseResult;
      try {
        result = await diagnoseStudy(path, {
          model: classifier,
          threshold: options.threshold,
          ...definedOnly({
            heatmapsDir: options.heatmaps,
            batchSize: options.batch,
            poolSize: options.workers,
          }),
          onProgress: (s, done, total) => {
            if (s !== stage) {
              bar?.stop();
              stage = s;
              bar = startProgress(STAGE_LABELS[s], s === 'read' ? 20 : 4);
            }
            bar!.update(done, total);
          },
        });
      } finally {
        bar?.stop();
        classifier.dispose();
      }
      if (options.json) printJson(result);
      else printSummary(result);
      // A decision looks the same whatever took it: say so when the model is not for diagnosis.
      if (result.study.decision !== null && !result.intendedUse.diagnostic) {
        warn(notDiagnosticWarning(result.model.id, result.intendedUse));
      }
      const failed = result.series.filter((s) => s.error !== undefined);
      for (const s of failed) warn(`${s.id}: ${s.error}`);
      if (failed.length > 0) process.exitCode = 1;
    });
}

function percent(fraction: number): string {
  return `${(fraction * 100).toFixed(1)}%`;
}

function describeVote(v: VoteFigures): string {
  if (v.decision === null) return `no decision (nothing classified, ${v.selectedCount} selected)`;
  return `${v.decision.toUpperCase()}: ${v.covidCount} of ${v.classifiedCount} classified slices COVID (${percent(v.covidFraction!)})`;
}

function seconds(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}

/** The human-readable form: the decision first, then each series and the time each stage took. */
function printSummary(r: DiagnoseResult): void {
  const lines = [
    `${r.path}: ${describeVote(r.study)}; threshold ${percent(r.threshold)}`,
    ...r.series.map((s) => {
      if (s.error !== undefined) return `  ${s.id}: FAILED`;
      const heatmaps = s.slices.filter((x) => x.heatmap !== undefined).length;
      return `  ${s.id}: ${describeVote(s)}; ${s.selectedCount} of ${s.slices.length} slices selected${heatmaps > 0 ? `; ${heatmaps} heatmap(s)` : ''}`;
    }),
    `model ${r.model.id}, backend ${r.backend}${r.workers > 1 ? ` (${r.workers} workers)` : ''}`,
    `intended use: ${r.intendedUse.diagnostic ? 'diagnostic' : 'not diagnostic'}, ${r.intendedUse.statement}`,
    `time: read+select ${seconds(r.timings.readSelectMs)}, decode ${seconds(r.timings.decodeMs)}, ` +
      `classify ${seconds(r.timings.poolStartMs + r.timings.classifyMs)}, heatmaps ${seconds(r.timings.heatmapModelMs + r.timings.heatmapsMs)}${r.timings.heatmapMsPerSlice === null ? '' : ` (${seconds(r.timings.heatmapMsPerSlice)} per COVID slice)`}, total ${seconds(r.timings.totalMs)}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}
