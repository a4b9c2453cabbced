/** `covidct model info`: what a model is: architecture, parameter count, input shape, layer names. */

import type { LayersModel } from '@tensorflow/tfjs-layers';
import type { Command } from 'commander';
import { InputError } from '../../core/errors.js';
import { initBackend } from '../../models/backend.js';
import { loadModel } from '../../models/io.js';
import { modelInputShape } from '../../models/predict.js';
import {
  ARCHITECTURES,
  buildArchitecture,
  DEFAULT_ARCHITECTURE,
  isArchitecture,
} from '../../models/registry.js';
import { OptionValueError, printJson } from '../io.js';

/** What `model info --json` prints. */
export interface ModelInfo {
  readonly arch: string;
  readonly params: number;
  /** `[height, width, channels]`. */
  readonly inputShape: [number, number, number];
  readonly layers: string[];
}

/** Describe a built or loaded model. */
export function describeModel(model: LayersModel, arch: string): ModelInfo {
  return {
    arch,
    params: model.countParams(),
    inputShape: modelInputShape(model),
    layers: model.layers.map((layer) => layer.name),
  };
}

function parseArch(value: string): string {
  if (!isArchitecture(value))
    throw new OptionValueError(`--arch must be one of ${ARCHITECTURES.join(', ')}, got '${value}'`);
  return value;
}

/** Register `model` and its subcommand `info`. */
export function registerModel(program: Command): void {
  const model = program.command('model').description('inspect classifier models');
  model
    .command('info')
    .description('architecture, parameter count, input shape and layer names of a model')
    .option('--arch <name>', `a built-in architecture (${ARCHITECTURES.join(', ')})`, parseArch)
    .option('--model <dir>', 'a saved model folder (model.json, weights, manifest.json) instead of --arch')
    .option('--json', 'print JSON: { arch, params, inputShape, layers: [names] }')
    .action(async (options: { arch?: string; model?: string; json?: boolean }) => {
      if (options.arch !== undefined && options.model !== undefined) {
        throw new InputError('model info', 'give --arch or --model, not both');
      }
      await initBackend();
      let info: ModelInfo;
      if (options.model !== undefined) {
        const loaded = await loadModel(options.model);
        info = describeModel(loaded.model, loaded.manifest?.arch ?? loaded.model.name);
        loaded.model.dispose();
      } else {
        const arch = options.arch ?? DEFAULT_ARCHITECTURE;
        const built = buildArchitecture(arch);
        info = describeModel(built, arch);
        built.dispose();
      }
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
