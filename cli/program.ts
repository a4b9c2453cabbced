/** The `covidct` program: every command, and the error policy (one line on stderr, exit code 1, no stack trace). */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { describeError, InputError } from '../core/errors.js';
import { packageRoot } from '../models/default-model.js';
import { registerBench } from './commands/bench.js';
import { registerClassify } from './commands/classify.js';
import { registerDeidentify } from './commands/deidentify.js';
import { registerDemo } from './commands/demo.js';
import { registerDev } from './commands/dev.js';
import { registerDiagnose } from './commands/diagnose.js';
import { registerEvaluate } from './commands/evaluate.js';
import { registerGateway } from './commands/gateway.js';
import { registerImportKeras } from './commands/import-keras.js';
import { registerModel } from './commands/model.js';
import { registerPhantom } from './commands/phantom.js';
import { registerSelect } from './commands/select.js';
import { registerSimulate } from './commands/simulate.js';
import { registerStatus } from './commands/status.js';
import { registerTrain } from './commands/train.js';
import { registerUpload } from './commands/upload.js';
import { registerWait } from './commands/wait.js';
import { warn } from './io.js';

/** covidct's version, from its package.json. */
function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version?: string };
  return pkg.version ?? 'unknown';
}

/** Build the program with every command registered. */
export function buildProgram(): Command {
  const program = new Command('covidct')
    .description(
      'COVID-19 from whole chest CT series: slice selection, classification, vote (Rahimzadeh et al.)',
    )
    .version(packageVersion(), '-V, --version', 'print the version of covidct')
    .showHelpAfterError('(run with --help for usage)');
  registerSelect(program);
  registerPhantom(program);
  registerModel(program);
  registerImportKeras(program);
  registerClassify(program);
  registerDiagnose(program);
  registerBench(program);
  registerDeidentify(program);
  registerUpload(program);
  registerStatus(program);
  registerWait(program);
  registerGateway(program);
  registerDev(program);
  registerDemo(program);
  registerTrain(program);
  registerEvaluate(program);
  registerSimulate(program);
  return program;
}

/** Run the command line on `argv` (as `process.argv`); resolves to the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv as string[]);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (error) {
    warn(describeError(error));
    // Unexpected errors are bugs: show the stack only when asked, so users still get one line.
    if (!(error instanceof InputError) && process.env.COVIDCT_DEBUG) console.error(error);
    return 1;
  }
}
