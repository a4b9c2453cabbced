/**
 * `covidct demo` (`npm start`): the whole pipeline on this machine. Starts the local stack, uploads
 * the bundled real CT study as one hospital and phantom COVID and normal studies as another, waits
 * for each decision, and prints it with where its report and heatmaps are.
 */
import type { Command } from 'commander';
import { integerOption, printJson } from '../io.js';

/** Options of `covidct demo`. */
export interface DemoOptions {
  readonly modelDir?: string;
  readonly slices: number;
  readonly keep?: boolean;
  readonly json?: boolean;
  readonly timeout: number;
  readonly out: string;
  readonly verbose?: boolean;
}

/** One finished demo study. */
export interface DemoResult {
  readonly hospital: string;
  readonly study: string;
  readonly studyId: string;
  readonly status: string;
  readonly reason?: string;
  readonly decision: string | null;
  readonly covidFraction: number | null;
  readonly selectedCount: number;
  readonly classifiedCount: number;
  readonly covidCount: number;
  readonly report: string;
  readonly heatmaps: string;
  readonly seconds: number;
}

/** Register `demo`. */
export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description(
      'run the whole pipeline locally: start the local stack, upload the bundled real study and phantom COVID/normal studies as two hospitals, print each decision',
    )
    .option('--model-dir <dir>', 'model folder the worker runs (default: the shipped default model)')
    .addOption(integerOption('--slices <n>', 'slices per phantom series', 10, 300, 40))
    .addOption(integerOption('--timeout <s>', 'seconds to wait for each study', 10, 7200, 1800))
    .option('--out <dir>', "where each study's report and heatmaps are copied", 'covidct-demo')
    .option('--verbose', "show the Lambdas' and the worker's JSON logs")
    .option('--keep', 'keep the local stack running afterwards (Ctrl-C stops it)')
    .option('--json', 'print the results as JSON')
    .action(async (options: DemoOptions) => {
      const { runDemo } = await import('./demo-run.js');
      const results = await runDemo(options);
      if (options.json) printJson({ studies: results });
      if (results.some((r) => r.status !== 'COMPLETE')) process.exitCode = 1;
    });
}
