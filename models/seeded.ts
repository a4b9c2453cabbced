/**
 * Compact "seeded" model folders: a network whose convolutions are FIXED RANDOM weights regenerated
 * from a seed, with only what cannot be regenerated stored: the BatchNormalization moving statistics
 * (calibrated on data) and the Dense layers (the trained heads). The paper's full model is 136 MB of
 * float32 and random weights do not compress; the seeded folder of the default model is ~3 MB.
 *
 * The fixed weights come from our own generator (mulberry32 in core/phantom/random.ts, one stream
 * per weight keyed by the seed and the weight's name), filled as Keras's default initialisers do:
 * glorot_uniform for every kernel (limit √(6 / (fan_in + fan_out)), fans as Keras computes them),
 * zeros for biases and BN beta, ones for BN gamma, BN moving mean 0 / variance 1 until calibrated.
 * Integer arithmetic, one division by 2^32 and one correctly rounded square root per weight: the same
 * bits on every platform. A SHA-256 of the materialised weights is recorded and checked on load.
 *
 * Layout: `model.json` (the tfjs topology; its weightsManifest lists ONLY the stored weights, so a
 * plain tfjs loader refuses the folder rather than running random weights), `stored.bin`, and
 * `manifest.json` with `kind: 'seeded'` (see {@link SeededManifest}).
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { io, moments, type Tensor, tensor, tidy } from '@tensorflow/tfjs-core';
import { type LayersModel, loadLayersModel, type SymbolicTensor } from '@tensorflow/tfjs-layers';
import { createRng, hash32 } from '../core/phantom/random.js';
import type { ModelManifest } from './io.js';

/** `manifest.json` kind of a seeded folder. */
export const SEEDED_KIND = 'seeded';
/** Name of the generator; bump it if the fill ever changes (old folders then fail their hash check). */
export const SEEDED_GENERATOR = 'covidct-mulberry32-v1';
/** The stored weights' file. */
export const STORED_WEIGHTS_BIN = 'stored.bin';

/** `manifest.json` of a seeded folder. */
export interface SeededManifest extends ModelManifest {
  readonly kind: typeof SEEDED_KIND;
  readonly generator: typeof SEEDED_GENERATOR;
  readonly seed: number;
  /** Architecture options the topology was built with (for the record; model.json is authoritative). */
  readonly width: number;
  readonly inputSize: number;
  /** What the stored part was fitted on, e.g. 'synthetic phantoms'. */
  readonly trainedOn?: string;
  /** What is stored rather than regenerated. */
  readonly stored: string;
  /** SHA-256 (hex) of every weight of the materialised model, float32 little-endian, in `model.weights` order. */
  readonly materializedSha256: string;
  /** Free-form figures (calibration set, training run). */
  readonly notes?: Record<string, unknown>;
}

/** Whether a manifest describes a seeded folder. */
export function isSeededManifest(m: ModelManifest | undefined): m is SeededManifest {
  return (m as { kind?: unknown } | undefined)?.kind === SEEDED_KIND;
}

/** One weight of a layer, as tfjs-layers exposes it. */
interface WeightLike {
  readonly originalName: string;
  readonly shape: number[];
}

/** The part of a weight's name after the layer's (`kernel`, `moving_mean`, …). */
function shortName(w: WeightLike): string {
  return w.originalName.slice(w.originalName.lastIndexOf('/') + 1);
}

/** Whether a weight is stored in the folder (not regenerated): BN moving statistics and Dense layers. */
export function isStoredWeight(layerClass: string, weightName: string): boolean {
  if (layerClass === 'Dense') return true;
  return (
    layerClass === 'BatchNormalization' && (weightName === 'moving_mean' || weightName === 'moving_variance')
  );
}

/** FNV-1a of a name's UTF-16 code units: the per-weight stream key. */
function nameHash(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/**
 * The seeded value of one weight: glorot_uniform for kernels (Keras's fans: the receptive field
 * times the last two dimensions), zeros for biases / beta / moving mean, ones for gamma / moving variance.
 */
export function seededWeightValues(seed: number, name: string, shape: readonly number[]): Float32Array {
  const size = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(size);
  const short = name.slice(name.lastIndexOf('/') + 1);
  if (short === 'gamma' || short === 'moving_variance') return out.fill(1);
  if (!short.endsWith('kernel')) return out; // bias, beta, moving_mean
  let fanIn: number;
  let fanOut: number;
  if (shape.length === 2) {
    fanIn = shape[0]!;
    fanOut = shape[1]!;
  } else {
    const receptive = shape.slice(0, -2).reduce((a, b) => a * b, 1);
    fanIn = shape[shape.length - 2]! * receptive;
    fanOut = shape[shape.length - 1]! * receptive;
  }
  const limit = Math.sqrt(6 / (fanIn + fanOut));
  const rng = createRng(hash32(seed, nameHash(name)));
  for (let i = 0; i < size; i++) out[i] = limit * (2 * rng.next() - 1);
  return out;
}

/** Overwrite every weight of `model` with its seeded value (calibration and heads come after). */
export function fillSeededWeights(model: LayersModel, seed: number): void {
  for (const layer of model.layers) {
    const ws = layer.weights as unknown as WeightLike[];
    if (ws.length === 0) continue;
    const values = ws.map((w) => tensor(seededWeightValues(seed, w.originalName, w.shape), w.shape));
    layer.setWeights(values);
    for (const t of values) t.dispose();
  }
}

/** SHA-256 (hex) of all of a model's weights, float32 little-endian, in `model.weights` order. */
export function weightsSha256(model: LayersModel): string {
  const hash = createHash('sha256');
  for (const w of model.weights) {
    const values = w.read().dataSync() as Float32Array;
    hash.update(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  }
  return hash.digest('hex');
}

/** A layer application inside a functional model, as far as the executor needs it. */
interface NodeLike {
  readonly inputTensors: SymbolicTensor[];
  readonly outputTensors: SymbolicTensor[];
}

/**
 * Set every BatchNormalization layer's moving mean and variance to the per-channel statistics
 * (over batch, height and width; biased variance) of its input on `slices`, in topological order,
 * so each layer sees its input through the layers calibrated before it. One layer-by-layer pass:
 * every activation is kept only until its last consumer ran. `slices` are NHWC float32 images of
 * the model's input size (raw values). Returns the number of layers calibrated.
 */
export function calibrateBatchNorm(model: LayersModel, slices: readonly Float32Array[]): number {
  const shape = model.inputs[0]!.shape as number[];
  const [, h, w, c] = shape as [null, number, number, number];
  const packed = new Float32Array(slices.length * h * w * c);
  slices.forEach((s, i) => {
    packed.set(s, i * h * w * c);
  });
  const nodes = model.layers
    .filter((l) => l.getClassName() !== 'InputLayer')
    .map((l) => ({ layer: l, node: l.inboundNodes[0] as unknown as NodeLike }));
  const uses = new Map<number, number>();
  for (const { node } of nodes) for (const t of node.inputTensors) uses.set(t.id, (uses.get(t.id) ?? 0) + 1);
  const live = new Map<number, Tensor>();
  live.set(model.inputs[0]!.id, tensor(packed, [slices.length, h, w, c]));
  let calibrated = 0;
  try {
    for (const { layer, node } of nodes) {
      const inputs = node.inputTensors.map((t) => {
        const v = live.get(t.id);
        if (v === undefined)
          throw new Error(`calibrateBatchNorm: ${layer.name}'s input ${t.name} not computed`);
        return v;
      });
      if (layer.getClassName() === 'BatchNormalization') {
        const weights = layer.getWeights();
        const [mean, variance] = tidy(() => {
          const m = moments(inputs[0]!, [0, 1, 2]);
          return [m.mean, m.variance];
        });
        layer.setWeights([weights[0]!, weights[1]!, mean!, variance!]);
        mean!.dispose();
        variance!.dispose();
        calibrated++;
      }
      const out = tidy(
        () => layer.apply(inputs.length === 1 ? inputs[0]! : inputs, { training: false }) as Tensor,
      );
      live.set(node.outputTensors[0]!.id, out);
      for (const t of node.inputTensors) {
        const left = (uses.get(t.id) ?? 0) - 1;
        uses.set(t.id, left);
        if (left === 0) {
          live.get(t.id)?.dispose();
          live.delete(t.id);
        }
      }
    }
  } finally {
    for (const t of live.values()) t.dispose();
  }
  return calibrated;
}

/** Save `model` as a compact seeded folder (model.json, stored.bin, manifest.json); returns the manifest. */
export async function saveSeededModel(
  model: LayersModel,
  dir: string,
  about: Omit<SeededManifest, 'kind' | 'generator' | 'stored' | 'materializedSha256' | 'classes'>,
): Promise<SeededManifest> {
  await mkdir(dir, { recursive: true });
  const manifest: SeededManifest = {
    kind: SEEDED_KIND,
    generator: SEEDED_GENERATOR,
    ...about,
    classes: ['covid', 'normal'],
    stored:
      'BatchNormalization moving mean/variance and every Dense layer (kernel, bias); all else regenerated',
    materializedSha256: weightsSha256(model),
  };
  const storedByName = new Map<string, string>();
  for (const layer of model.layers) {
    for (const w of layer.weights as unknown as WeightLike[]) {
      if (isStoredWeight(layer.getClassName(), shortName(w))) storedByName.set(w.originalName, layer.name);
    }
  }
  await model.save({
    save: async (artifacts) => {
      const all = new Uint8Array(io.CompositeArrayBuffer.join(artifacts.weightData ?? new ArrayBuffer(0)));
      const specs: io.WeightsManifestEntry[] = [];
      const parts: Uint8Array[] = [];
      let offset = 0;
      for (const spec of artifacts.weightSpecs ?? []) {
        if (spec.dtype !== undefined && spec.dtype !== 'float32') {
          throw new Error(`saveSeededModel: weight ${spec.name} is ${spec.dtype}, expected float32`);
        }
        const bytes = 4 * spec.shape.reduce((a, b) => a * b, 1);
        if (storedByName.has(spec.name)) {
          specs.push(spec);
          parts.push(all.subarray(offset, offset + bytes));
        }
        offset += bytes;
      }
      const json: io.ModelJSON = {
        modelTopology: artifacts.modelTopology as object,
        format: artifacts.format ?? 'layers-model',
        generatedBy: artifacts.generatedBy ?? 'TensorFlow.js',
        convertedBy: about.createdBy,
        weightsManifest: [{ paths: [STORED_WEIGHTS_BIN], weights: specs }],
      };
      await writeFile(join(dir, STORED_WEIGHTS_BIN), Buffer.concat(parts));
      await writeFile(join(dir, 'model.json'), JSON.stringify(json));
      return { modelArtifactsInfo: io.getModelArtifactsInfoForJSON(artifacts) };
    },
  });
  await writeFile(join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

/**
 * Build the full model of a seeded folder from its artifacts (topology + stored weights): the
 * topology, every weight regenerated from the seed, then the stored ones set by name. Throws when
 * the result's weights do not hash to the manifest's `materializedSha256`.
 */
export async function materializeSeeded(
  artifacts: io.ModelArtifacts,
  manifest: SeededManifest,
): Promise<LayersModel> {
  if (manifest.generator !== SEEDED_GENERATOR) {
    throw new Error(`generator '${manifest.generator}' unknown, expected '${SEEDED_GENERATOR}'`);
  }
  const model = await loadLayersModel(io.fromMemory({ modelTopology: artifacts.modelTopology as object }));
  fillSeededWeights(model, manifest.seed);
  const data = new Uint8Array(io.CompositeArrayBuffer.join(artifacts.weightData ?? new ArrayBuffer(0)));
  const stored = new Map<string, Float32Array>();
  let offset = 0;
  for (const spec of artifacts.weightSpecs ?? []) {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    stored.set(spec.name, new Float32Array(data.slice(offset, offset + 4 * n).buffer));
    offset += 4 * n;
  }
  let used = 0;
  const created: Tensor[] = [];
  for (const layer of model.layers) {
    const ws = layer.weights as unknown as WeightLike[];
    if (!ws.some((w) => stored.has(w.originalName))) continue;
    const values = layer.getWeights().map((current, i) => {
      const v = stored.get(ws[i]!.originalName);
      if (v === undefined) return current;
      used++;
      const t = tensor(v, ws[i]!.shape);
      created.push(t);
      return t;
    });
    layer.setWeights(values);
  }
  for (const t of created) t.dispose();
  if (used !== stored.size)
    throw new Error(`${stored.size - used} stored weights name no weight of the model`);
  const sha = weightsSha256(model);
  if (sha !== manifest.materializedSha256) {
    model.dispose();
    throw new Error(
      `materialised weights hash ${sha.slice(0, 12)}…, manifest says ${manifest.materializedSha256.slice(0, 12)}…`,
    );
  }
  return model;
}
