/** `covidct select PATH`: the paper's slice selection over a series or a study folder. */
import type { Command } from 'commander';
import { type SeriesSelection, selectStudy } from '../../core/study.js';
import { printJson, warn } from '../io.js';
import { startProgress } from '../progress.js';

/** The JSON form `select --json` prints for one series. */
export function seriesToJson(series: SeriesSelection) {
  return {
    id: series.id,
    threshold: series.threshold,
    selectedCount: series.selectedCount,
    ...(series.error === undefined ? {} : { error: series.error }),
    slices: series.slices.map((s) => ({ file: s.file, darkPixels: s.darkPixels, selected: s.selected })),
  };
}

/** Register `select`. */
export function registerSelect(program: Command): void {
  program
    .command('select')
    .description(
      "select the slices that show open lung (the paper's dark-pixel rule) in a series or study folder",
    )
    .argument('<path>', 'a slice file, a series folder, or a study folder of series folders')
    .option(
      '--json',
      'print JSON: { series: [ { id, threshold, slices: [ { file, darkPixels, selected } ] } ] }',
    )
    .action(async (path: string, options: { json?: boolean }) => {
      const progress = startProgress('reading slices');
      const study = await selectStudy(path, { onProgress: (done, total) => progress.update(done, total) });
      progress.stop();
      if (options.json) {
        printJson({ series: study.series.map(seriesToJson), ignored: study.ignored });
      } else {
        for (const series of study.series) printSeries(series);
      }
      const failed = study.series.filter((s) => s.error !== undefined);
      for (const s of failed) warn(`${s.folder}: ${s.error}`);
      if (failed.length > 0) process.exitCode = 1;
    });
}

function printSeries(series: SeriesSelection): void {
  if (series.error !== undefined) {
    process.stdout.write(`${series.id}: FAILED\n`);
    return;
  }
  process.stdout.write(
    `${series.id}: ${series.selectedCount} of ${series.slices.length} slices selected (threshold ${formatThreshold(series.threshold!)})\n`,
  );
  const width = Math.max(...series.slices.map((s) => s.file.length));
  for (const s of series.slices) {
    process.stdout.write(
      `  ${s.selected ? '*' : ' '} ${s.file.padEnd(width)} ${String(s.darkPixels).padStart(6)}\n`,
    );
  }
}

function formatThreshold(t: number): string {
  return Number.isInteger(t) ? String(t) : t.toFixed(2);
}
