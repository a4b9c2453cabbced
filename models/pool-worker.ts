/**
 * A prediction worker thread: one backend instance and one model copy, fed batches by
 * {@link PredictionPool}; or one ONNX Runtime session (`init-ort`), whose forward passes, synchronous
 * in onnxruntime-node, then run beside the other workers' instead of one after another.
 */
import { parentPort } from 'node:worker_threads';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { describeError } from '../core/errors.js';
import type { OrtClassifier } from './onnx/runtime.js';
import type { FromWorker, ModelSource, ToWorker } from './pool-protocol.js';

const port = parentPort;
if (port === null) throw new Error('pool-worker.ts runs only as a worker thread');

function send(message: FromWorker, transfer: ArrayBuffer[] = []): void {
  port!.postMessage(message, transfer);
}

/** TensorFlow.js and covidct's model code, imported only by tfjs workers: an ONNX Runtime worker starts without them. */
function tfjsModules() {
  tfjs ??= importTfjs();
  return tfjs;
}

let tfjs: ReturnType<typeof importTfjs> | undefined;

async function importTfjs() {
  const [core, layers, backend, graphCache, modelIo, predict, registry] = await Promise.all([
    import('@tensorflow/tfjs-core'),
    import('@tensorflow/tfjs-layers'),
    import('./backend.js'),
    import('./fast/graph-cache.js'),
    import('./io.js'),
    import('./predict.js'),
    import('./registry.js'),
  ]);
  return { core, layers, backend, graphCache, modelIo, predict, registry };
}

async function load(source: ModelSource): Promise<LayersModel> {
  const { core, layers, modelIo, registry } = await tfjsModules();
  switch (source.kind) {
    case 'dir':
      return (await modelIo.loadModel(source.dir)).model;
    case 'artifacts':
      return layers.loadLayersModel(core.io.fromMemory(source.artifacts));
    case 'arch':
      return registry.buildArchitecture(source.arch, source.options);
  }
}

let model: LayersModel | undefined;
let session: OrtClassifier | undefined;
// Batches run one at a time per worker; the pool never sends a second before the first answers.
port.on('message', async (message: ToWorker) => {
  try {
    if (message.type === 'init-ort') {
      const { createOrtSession } = await import('./onnx/runtime.js');
      session = await createOrtSession(message.graph, { threads: message.threads });
      send({ type: 'ready', backend: 'ort', inputShape: [...session.inputShape] });
      return;
    }
    if (session !== undefined && message.type === 'predict') {
      const start = performance.now();
      // A copy (count × 2 values): the session's output buffer is not ours to transfer.
      const probabilities = new Float32Array(await session.run(message.pixels, message.count));
      send({ type: 'result', id: message.id, probabilities, ms: performance.now() - start }, [
        probabilities.buffer as ArrayBuffer,
      ]);
      return;
    }
    if (message.type === 'init') {
      // The main thread already logged its choice; workers stay quiet.
      const { backend, graphCache, predict } = await tfjsModules();
      const choice = await backend.initBackend({ prefer: message.backend, log: () => {} });
      model = await load(message.source);
      // Compile now (folded weights, ~2 s for the full FPN) rather than on the first batch.
      graphCache.inferenceGraphFor(model);
      send({ type: 'ready', backend: choice.name, inputShape: predict.modelInputShape(model) });
      return;
    }
    if (model === undefined) throw new Error('predict before init');
    const start = performance.now();
    const { predict } = await tfjsModules();
    const probabilities = await predict.predictBatch(model, message.pixels, message.count);
    send({ type: 'result', id: message.id, probabilities, ms: performance.now() - start }, [
      probabilities.buffer as ArrayBuffer,
    ]);
  } catch (error) {
    send({
      type: 'error',
      ...(message.type === 'predict' ? { id: message.id } : {}),
      message: describeError(error, { className: false }),
    });
  }
});
