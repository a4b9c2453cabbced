/**
 * `covidct model info`: what a model is: architecture, parameter count, input shape, layer names.
 * The work is in model-info.ts, imported inside the action so that tfjs loads only when it runs.
 */
import type { Command } from 'commander';
import { printJson } from '../io.js';
import { registerModelExportOnnx } from './model-export-onnx.js';
import { registerModelSeed } from './model-seed.js';
import { registerModelUpload } from './model-upload.js';

/** What `model info --json` prints. */
export interface ModelInfo {
  readonly arch: string;
  readonly params: number;
  /** `[height, width, channels]`. */
  readonly inputShape: [number, number, number];
  readonly layers: string[];
}

/** The built-in architectures as help text names them; checked against models/registry.ts by a test. */
export const ARCHITECTURES_HELP = 'resnet50v2-fpn, resnet50v2, xception';

/** Register `model` and its subcommand `info`. */
export function registerModel(program: Command): void {
  const model = program.command('model').description('inspect classifier models');
  registerModelUpload(model);
  registerModelSeed(model);
  registerModelExportOnnx(model);
  model
    .command('info')
    .description('architecture, parameter count, input shape and layer names of a model')
    .option('--arch <name>', `a built-in architecture (${ARCHITECTURES_HELP})`)
    .option('--model <dir>', 'a saved model folder (model.json, weights, manifest.json) instead of --arch')
    .option('--json', 'print JSON: { arch, params, inputShape, layers: [names] }')
    .action(async (options: { arch?: string; model?: string; json?: boolean }) => {
      const { modelInfo } = await import('./model-info.js');
      const info = await modelInfo(options);
      if (options.json) {
        printJson(info);
        return;
      }
      process.stdout.write(
        `${info.arch}: ${info.params.toLocaleString('en-US')} parameters, input ${info.inputShape.join('×')}, ${info.layers.length} layers\n`,
      );
      for (const name of info.layers) process.stdout.write(`  ${name}\n`);
    });
}
