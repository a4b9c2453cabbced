/**
 * A small convolutional model for the quick benches and the worker memory test: the same kind of
 * graph as the paper's (convolutions, ReLU, pooling, a softmax head over [COVID, normal], raw values
 * in) at a few milliseconds per 512×512 slice, so pipeline overheads show instead of drowning in
 * the 136 MB model's ~0.65 s per slice. Its labels mean nothing; only its cost matters.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initializers, input, type LayersModel, layers, model as tfModel } from '@tensorflow/tfjs-layers';
import { saveModel } from '../../models/io.js';

/** Options of {@link buildTinyModel}. */
export interface TinyModelOptions {
  /** Input height and width. @default 512 */
  readonly size?: number;
  /** Filters of the first convolution (the second has twice as many): cost grows with its square. @default 8 */
  readonly filters?: number;
}

/** Build the tiny model (seeded weights: the same model every time). */
export function buildTinyModel(options: TinyModelOptions = {}): LayersModel {
  const size = options.size ?? 512;
  const filters = options.filters ?? 8;
  const init = (seed: number) => initializers.glorotUniform({ seed });
  const x = input({ shape: [size, size, 1], name: 'slice' });
  const c1 = layers
    .conv2d({
      filters,
      kernelSize: 3,
      strides: 4,
      padding: 'same',
      activation: 'relu',
      kernelInitializer: init(1),
      name: 'conv1',
    })
    .apply(x);
  const c2 = layers
    .conv2d({
      filters: filters * 2,
      kernelSize: 3,
      strides: 2,
      padding: 'same',
      activation: 'relu',
      kernelInitializer: init(2),
      name: 'conv2',
    })
    .apply(c1);
  const pooled = layers.globalAveragePooling2d({ name: 'pool' }).apply(c2);
  const out = layers
    .dense({ units: 2, activation: 'softmax', kernelInitializer: init(3), name: 'predictions' })
    .apply(pooled);
  return tfModel({ inputs: x, outputs: out as never, name: 'tiny_bench' });
}

/** Save the tiny model to a new temporary folder (pool workers and the worker process load it from there). */
export async function saveTinyModel(options: TinyModelOptions = {}): Promise<string> {
  const dir = join(await mkdtemp(join(tmpdir(), 'covidct-tiny-model-')), 'model');
  const model = buildTinyModel(options);
  try {
    await saveModel(model, dir, {
      arch: 'tiny-bench',
      classes: ['covid', 'normal'],
      createdBy: 'covidct bench (tiny model, speed only)',
    });
  } finally {
    model.dispose();
  }
  return dir;
}
