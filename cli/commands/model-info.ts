/**
 * What `covidct model info` does once TensorFlow.js is loaded (imported lazily by model.ts, so other
 * commands never pay for tfjs start-up).
 */
import type { LayersModel } from '@tensorflow/tfjs-layers';
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
import type { ModelInfo } from './model.js';

/** Describe a built or loaded model. */
export function describeModel(model: LayersModel, arch: string): ModelInfo {
  return {
    arch,
    params: model.countParams(),
    inputShape: modelInputShape(model),
    layers: model.layers.map((layer) => layer.name),
  };
}

/** Describe `--model DIR`, or the architecture `--arch` names (default the paper's). */
export async function modelInfo(options: { arch?: string; model?: string }): Promise<ModelInfo> {
  if (options.arch !== undefined && options.model !== undefined) {
    throw new InputError('model info', 'give --arch or --model, not both');
  }
  if (options.arch !== undefined && !isArchitecture(options.arch)) {
    throw new InputError('--arch', `must be one of ${ARCHITECTURES.join(', ')}, got '${options.arch}'`);
  }
  await initBackend();
  if (options.model !== undefined) {
    const loaded = await loadModel(options.model);
    const info = describeModel(loaded.model, loaded.manifest?.arch ?? loaded.model.name);
    loaded.model.dispose();
    return info;
  }
  const arch = options.arch ?? DEFAULT_ARCHITECTURE;
  const built = buildArchitecture(arch);
  const info = describeModel(built, arch);
  built.dispose();
  return info;
}
