/**
 * Export a covidct model folder to ONNX: the Keras functional config in `model.json` and its
 * weights become an ONNX ModelProto (IR 8, opset 13), built layer by layer and encoded with
 * protobufjs from ONNX's published schema (models/onnx/onnx.proto, vendored from ONNX 1.12.0).
 *
 * Why not tf2onnx or Keras's own exporters: they need Python and TensorFlow, and covidct runs on
 * Node alone (a laptop, a Lambda, the worker image). The layers covidct's architectures use are few,
 * so translating them directly is a small, checkable piece of code; test/onnx-export.test.ts runs
 * the result in ONNX Runtime against tfjs's own prediction.
 *
 * The ONNX model takes the same tensor as the tfjs model: NHWC float32 `[N, H, W, C]` of raw values
 * (models/predict.ts), batch size free. Inside, it transposes once to NCHW (ONNX's Conv layout) and
 * back to NHWC only where order matters (before Flatten). Shapes are tracked statically, because
 * Keras's 'same' padding is asymmetric at stride 2 (the extra row and column go at the bottom and
 * right) and must be written out as explicit pads.
 *
 * Supported layer classes: InputLayer, Conv2D, SeparableConv2D, DepthwiseConv2D,
 * BatchNormalization (channel axis), Activation (linear, relu, sigmoid, tanh, softmax, elu), ReLU
 * (plain or capped), ZeroPadding2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, Add,
 * Multiply, Concatenate, Flatten, Dropout, Dense (on flat inputs), UpsampleLike; functional and
 * Sequential configs. Anything else
 * (nested models, shared layers, quantized weights, other activations) is refused with the layer's
 * name rather than exported wrongly.
 *
 * Beside this file: the layers' translations (translate-image.ts, translate-tensor.ts), the protobuf
 * writer (protobuf.ts), reading Keras layer configs (keras-config.ts), the weights (weights.ts) and
 * the exporter's error (errors.ts).
 */
import { join } from 'node:path';
import type { io } from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { loadModel, MODEL_JSON, readArtifacts, readManifest } from '../io.js';
import { isSeededManifest } from '../seeded.js';
import { OnnxExportError } from './errors.js';
import {
  inboundNames,
  type LayerEntry,
  type ModelConfig,
  type Shape,
  sequentialAsFunctional,
} from './keras-config.js';
import { encodeModel, FLOAT, GraphBuilder } from './protobuf.js';
import {
  type LayerContext,
  type LayerTranslation,
  translateBatchNorm,
  translateConv,
  translateCropping,
  translatePooling,
  translateZeroPadding,
  type ZeroPad,
} from './translate-image.js';
import {
  translateActivation,
  translateConcatenate,
  translateDense,
  translateDropout,
  translateFlatten,
  translateGlobalPooling,
  translateMerge,
  translateRelu,
  translateUpsampleLike,
} from './translate-tensor.js';
import {
  decodeWeights,
  joinBuffers,
  layersModelWeights,
  type WeightMap,
  type WeightValue,
} from './weights.js';

// Declared beside the modules that throw it; export.ts is where callers look for them.
export { decodeWeights, layersModelWeights, OnnxExportError, type WeightMap, type WeightValue };

/** How each Keras layer class other than InputLayer is written (a Map: class names come from the file). */
const TRANSLATIONS = new Map<string, LayerTranslation>([
  ['Conv2D', translateConv],
  ['SeparableConv2D', translateConv],
  ['DepthwiseConv2D', translateConv],
  ['BatchNormalization', translateBatchNorm],
  ['Activation', translateActivation],
  ['ReLU', translateRelu],
  ['Dropout', translateDropout],
  ['ZeroPadding2D', translateZeroPadding],
  ['Cropping2D', translateCropping],
  ['MaxPooling2D', translatePooling],
  ['AveragePooling2D', translatePooling],
  ['GlobalAveragePooling2D', translateGlobalPooling],
  ['GlobalMaxPooling2D', translateGlobalPooling],
  ['Add', translateMerge],
  ['Multiply', translateMerge],
  ['Concatenate', translateConcatenate],
  ['Flatten', translateFlatten],
  ['Dense', translateDense],
  ['UpsampleLike', translateUpsampleLike],
]);

/** ONNX IR version written (ONNX 1.12's, what Debian's checker and every current runtime accept). */
export const ONNX_IR_VERSION = 8;
/** Default-domain opset the graph uses. */
export const ONNX_OPSET = 13;
/**
 * Version of what this exporter writes: part of every cache file name (models/onnx/cache.ts), so a
 * graph an older exporter wrote is never reused. Bump it with any change to the graphs written.
 * 2: ZeroPadding2D → MaxPooling2D no longer meets ONNX Runtime's PadFusion; ReLU layers; Sequential.
 */
export const ONNX_EXPORT_VERSION = 2;
/** Name of the batch dimension in the graph's input and output. */
export const BATCH_DIM = 'N';

/** Translate one Keras functional (or Sequential) model config and its weights into ONNX ModelProto bytes. */
export function exportKerasGraph(topology: unknown, weights: WeightMap, producer = 'covidct'): Uint8Array {
  const root = topology as { model_config?: unknown; class_name?: unknown; config?: unknown };
  const modelConfig = sequentialAsFunctional((root.model_config ?? root) as ModelConfig);
  const config = modelConfig.config;
  if (
    (modelConfig.class_name !== 'Model' && modelConfig.class_name !== 'Functional') ||
    config === undefined ||
    !Array.isArray(config.layers)
  ) {
    throw new OnnxExportError(
      MODEL_JSON,
      `expected a Keras functional model config, got class ${JSON.stringify(modelConfig.class_name)}`,
    );
  }
  const layers = config.layers as LayerEntry[];
  const outputs = (config.output_layers as unknown[] | undefined) ?? [];
  const g = new GraphBuilder();
  const shapes = new Map<string, Shape>();
  const graphInputs: object[] = [];
  const used = new Set<string>();
  /** ZeroPadding2D layers, by name: their input and pads (a MaxPooling2D after one pads again). */
  const zeroPads = new Map<string, ZeroPad>();
  /** Class names of the layers each layer feeds. */
  const consumers = new Map<string, string[]>();
  for (const layer of layers) {
    let inputs: string[] = [];
    try {
      inputs = inboundNames(layer);
    } catch {
      // Reported with the layer's name below.
    }
    for (const input of inputs) consumers.set(input, [...(consumers.get(input) ?? []), layer.class_name]);
  }

  const weight = (layer: string, name: string): WeightValue => {
    const key = `${layer}/${name}`;
    const value = weights.get(key);
    if (value === undefined) throw new Error(`weight '${key}' missing from the weights`);
    used.add(key);
    return value;
  };
  const optionalWeight = (layer: string, name: string, present: boolean): WeightValue | undefined =>
    present ? weight(layer, name) : undefined;

  const activation = (name: string, input: string, output: string, kind: unknown): void => {
    const ops: Record<string, string> = {
      linear: 'Identity',
      relu: 'Relu',
      sigmoid: 'Sigmoid',
      tanh: 'Tanh',
      elu: 'Elu',
      softmax: 'Softmax',
    };
    const op = typeof kind === 'string' ? ops[kind] : undefined;
    if (op === undefined) throw new Error(`activation ${JSON.stringify(kind)} is not exported`);
    // Keras's softmax is over the last axis: channels, which are axis 1 once in NCHW.
    const attrs = op === 'Softmax' ? { axis: 1 } : undefined;
    if (op === 'Softmax' && shapes.get(name)?.kind === 'image') {
      throw new Error('softmax over an image tensor is not exported');
    }
    g.node({ op, inputs: [input], outputs: [output], ...(attrs ? { attrs } : {}) });
  };

  const image = (layer: string, input: string): Extract<Shape, { kind: 'image' }> => {
    const s = shapes.get(input);
    if (s?.kind !== 'image') throw new Error(`'${layer}' expects an image (rank-4) input from '${input}'`);
    return s;
  };

  const ctx: LayerContext = {
    g,
    shapes,
    zeroPads,
    consumers,
    weight,
    optionalWeight,
    activation,
    image,
    known,
    nchw,
  };

  for (const layer of layers) {
    const { name, class_name: cls, config: c } = layer;
    try {
      const inputs = inboundNames(layer);
      const x = inputs[0] ?? '';
      if (cls === 'InputLayer') {
        const shape = (c.batch_input_shape ?? c.batch_shape) as unknown[] | undefined;
        if (
          !Array.isArray(shape) ||
          shape.length !== 4 ||
          !shape.slice(1).every((v) => typeof v === 'number')
        ) {
          throw new Error(`expected a fixed NHWC input shape, got ${JSON.stringify(shape)}`);
        }
        const [, h, w, ch] = shape as [unknown, number, number, number];
        graphInputs.push({
          name,
          type: {
            tensor_type: {
              elem_type: FLOAT,
              shape: {
                dim: [{ dim_param: BATCH_DIM }, { dim_value: h }, { dim_value: w }, { dim_value: ch }],
              },
            },
          },
        });
        // Every Keras layer's output is named after the layer; the graph input is the NHWC tensor.
        g.node({
          op: 'Transpose',
          inputs: [name],
          outputs: [`${name}/nchw`],
          attrs: { perm: [0, 3, 1, 2] },
        });
        shapes.set(name, { kind: 'image', c: ch, h, w });
        continue;
      }
      const translate = TRANSLATIONS.get(cls);
      if (translate === undefined) throw new Error(`layer class ${cls} is not exported`);
      translate(ctx, { name, cls, c, x, inputs });
    } catch (error) {
      if (error instanceof OnnxExportError) throw error;
      throw new OnnxExportError(MODEL_JSON, `layer '${name}' (${cls}): ${(error as Error).message}`);
    }
  }

  const graphOutputs = outputs.map((entry) => {
    const layerName = Array.isArray(entry) ? entry[0] : undefined;
    const s = typeof layerName === 'string' ? shapes.get(layerName) : undefined;
    if (typeof layerName !== 'string' || s?.kind !== 'flat') {
      throw new OnnxExportError(
        MODEL_JSON,
        `output ${JSON.stringify(entry)}: expected a flat (rank-2) layer output`,
      );
    }
    return {
      name: layerName,
      type: {
        tensor_type: { elem_type: FLOAT, shape: { dim: [{ dim_param: BATCH_DIM }, { dim_value: s.n }] } },
      },
    };
  });
  const unused = [...weights.keys()].filter((k) => !used.has(k));
  if (unused.length > 0) {
    throw new OnnxExportError(MODEL_JSON, `weights no layer uses: ${unused.slice(0, 3).join(', ')}`);
  }

  return encodeModel(
    {
      ir_version: ONNX_IR_VERSION,
      opset_import: [{ domain: '', version: ONNX_OPSET }],
      producer_name: producer,
    },
    {
      name: typeof config.name === 'string' ? config.name : 'covidct',
      node: g.nodes,
      input: graphInputs,
      output: graphOutputs,
    },
    g.initializers,
  );

  /** The static shape of a layer's output, which must come before. */
  function known(layer: string): Shape {
    const s = shapes.get(layer);
    if (s === undefined) throw new Error(`input '${layer}' is not the output of an earlier layer`);
    return s;
  }

  /** Graph name of a Keras layer's output: image tensors carry a `/nchw` suffix (they are NCHW inside). */
  function nchw(layer: string): string {
    return shapes.get(layer)?.kind === 'image' ? `${layer}/nchw` : layer;
  }
}

/** Export a built tfjs layers model (seeded and freshly built models). */
export function exportLayersModel(model: LayersModel): Uint8Array {
  return exportKerasGraph(model.toJSON(null, false), layersModelWeights(model));
}

/**
 * Export a covidct model folder to ONNX ModelProto bytes. Plain folders are translated from
 * model.json and the weight files alone; seeded folders (models/seeded.ts) are materialised first.
 */
export async function exportOnnx(modelDir: string): Promise<Uint8Array> {
  const manifest = await readManifest(modelDir);
  if (isSeededManifest(manifest)) return exportLayersModel((await loadModel(modelDir)).model);
  return exportArtifacts(await readArtifacts(modelDir), join(modelDir, MODEL_JSON));
}

/**
 * Export a tfjs layers model held as artifacts (topology and float32 weights, as the GPU worker
 * reads a model from S3) without building it; `file` names the source in errors.
 */
export function exportArtifacts(artifacts: io.ModelArtifacts, file = MODEL_JSON): Uint8Array {
  const data = artifacts.weightData === undefined ? new ArrayBuffer(0) : joinBuffers(artifacts.weightData);
  return exportKerasGraph(artifacts.modelTopology, decodeWeights(artifacts.weightSpecs ?? [], data, file));
}
