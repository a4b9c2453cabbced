/**
 * Read Keras HDF5 checkpoints with h5wasm: the full-model files `keras.Model.save()` writes
 * (Keras 2.3 / TF 2.2: root attributes `model_config`, `keras_version`, `backend`; group
 * `model_weights`) and the weights-only files `save_weights()` writes (`layer_names` on the root).
 * The optimizer state (`optimizer_weights`) is never read.
 */
import { open, stat } from 'node:fs/promises';
import h5wasm from 'h5wasm/node';
import { CorruptFileError, describeError, InputError, UnknownFormatError } from '../../core/errors.js';

/** One weight array as Keras stored it. */
export interface KerasWeight {
  /** Keras's variable name, e.g. `conv1_conv/kernel:0`. */
  readonly name: string;
  /** Its shape, in Keras's (channels-last) order. */
  readonly shape: readonly number[];
  /** Its values, row-major, converted to float32. */
  readonly values: Float32Array;
}

/** Everything covidct uses from a Keras HDF5 file. */
export interface KerasCheckpoint {
  /** `model`: a full model (architecture and weights); `weights`: weights only. */
  readonly kind: 'model' | 'weights';
  /** The parsed `model_config` attribute (`{ class_name, config }`); absent for weights-only files. */
  readonly modelConfig?: unknown;
  /** The `keras_version` attribute, when present. */
  readonly kerasVersion?: string | undefined;
  /** The `backend` attribute (`tensorflow`, `theano`, …), when present. */
  readonly backend?: string | undefined;
  /** The `layer_names` attribute: every layer of the saved model, weighted or not, in order. */
  readonly layerNames: readonly string[];
  /** Weights per layer name, in the order of the layer's `weight_names`; layers without weights map to []. */
  readonly weights: ReadonlyMap<string, readonly KerasWeight[]>;
}

// h5wasm's types: only what this module touches.
type H5Entity = ReturnType<InstanceType<typeof h5wasm.File>['get']>;
type H5Group = InstanceType<typeof h5wasm.Group>;
type H5Dataset = InstanceType<typeof h5wasm.Dataset>;

let ready: Promise<unknown> | undefined;

/** h5wasm's wasm module, loaded once. */
function h5ready(): Promise<unknown> {
  ready ??= h5wasm.ready;
  return ready;
}

/** HDF5's 8-byte signature, at offset 0 of every file h5py writes. */
const HDF5_SIGNATURE = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a];

async function checkHdf5File(file: string): Promise<void> {
  let size: number;
  try {
    const info = await stat(file);
    if (!info.isFile()) throw new InputError(file, 'not a file: expected a Keras .h5/.hdf5 model file');
    size = info.size;
  } catch (error) {
    if (error instanceof InputError) throw error;
    throw new InputError(file, 'no such file: expected a Keras .h5/.hdf5 model file');
  }
  const handle = await open(file, 'r');
  try {
    const head = Buffer.alloc(8);
    await handle.read(head, 0, 8, 0);
    if (size < 8 || !HDF5_SIGNATURE.every((b, i) => head[i] === b)) {
      throw new UnknownFormatError(
        file,
        'not an HDF5 file (no HDF5 signature): expected a Keras .h5/.hdf5 model file',
      );
    }
  } finally {
    await handle.close();
  }
}

/** An attribute's value as a string: h5py writes `str` as UTF-8 strings and `bytes` as fixed-length ones; h5wasm reads both as strings. */
function stringAttribute(entity: H5Group, name: string): string | undefined {
  const attr = entity.attrs[name];
  if (attr === undefined) return undefined;
  const value = attr.value;
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array) return new TextDecoder().decode(value);
  if (Array.isArray(value) && value.length === 1 && typeof value[0] === 'string') return value[0];
  return undefined;
}

/**
 * A list-of-names attribute (`layer_names`, `weight_names`). Keras splits one that would overflow
 * HDF5's 64 KiB object header into `name0`, `name1`, …; an empty list is stored as an empty float array.
 */
function namesAttribute(group: H5Group, name: string, file: string): string[] | undefined {
  const read = (key: string): string[] | undefined => {
    const attr = group.attrs[key];
    if (attr === undefined) return undefined;
    const value = attr.value;
    if (typeof value === 'string') return [value];
    if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value as string[];
    if (ArrayBuffer.isView(value) && (value as { length: number }).length === 0) return [];
    throw new CorruptFileError(file, `attribute ${group.path}/${key} is not a list of names`);
  };
  const whole = read(name);
  if (whole !== undefined) return whole;
  const parts: string[] = [];
  for (let chunk = 0; ; chunk++) {
    const part = read(`${name}${chunk}`);
    if (part === undefined) return chunk === 0 ? undefined : parts;
    parts.push(...part);
  }
}

function isGroup(entity: H5Entity): entity is H5Group {
  return entity instanceof h5wasm.Group;
}

function isDataset(entity: H5Entity): entity is H5Dataset {
  return entity instanceof h5wasm.Dataset;
}

function readWeight(layerGroup: H5Group, name: string, file: string): KerasWeight {
  const entity = layerGroup.get(name);
  const where = `${layerGroup.path}/${name}`;
  if (!isDataset(entity))
    throw new CorruptFileError(file, `weight ${where} is listed in weight_names but missing`);
  const meta = entity.metadata;
  const shape = entity.shape ?? [];
  // h5wasm reads float32/float64 natively; it cannot read float16 (Keras mixed precision).
  const FLOAT_CLASS = 1;
  if (meta.type !== FLOAT_CLASS || (meta.size !== 4 && meta.size !== 8)) {
    const what = meta.type === FLOAT_CLASS ? `float${meta.size * 8}` : `type class ${meta.type}`;
    throw new InputError(file, `weight ${where} is ${what}: expected float32 or float64`);
  }
  const raw = entity.value;
  const values =
    raw instanceof Float32Array ? raw : raw instanceof Float64Array ? Float32Array.from(raw) : undefined;
  if (values === undefined) throw new CorruptFileError(file, `weight ${where} could not be read as floats`);
  const expected = shape.reduce((a, b) => a * b, 1);
  if (values.length !== expected) {
    throw new CorruptFileError(
      file,
      `weight ${where} has ${values.length} values for shape [${shape.join(',')}]`,
    );
  }
  return { name, shape, values };
}

function readWeightGroup(
  root: H5Group,
  file: string,
): { layerNames: string[]; weights: Map<string, KerasWeight[]> } {
  const layerNames = namesAttribute(root, 'layer_names', file);
  if (layerNames === undefined) throw new CorruptFileError(file, `${root.path} has no layer_names attribute`);
  const weights = new Map<string, KerasWeight[]>();
  for (const layer of layerNames) {
    const group = root.get(layer);
    if (!isGroup(group))
      throw new CorruptFileError(file, `layer ${layer} is listed in layer_names but has no group`);
    const names = namesAttribute(group, 'weight_names', file) ?? [];
    weights.set(
      layer,
      names.map((name) => readWeight(group, name, file)),
    );
  }
  return { layerNames, weights };
}

/**
 * Read a Keras HDF5 file: its model config (full-model files) and every layer's weights.
 * Throws {@link InputError}s naming the file for anything that is not a readable Keras file.
 */
export async function readKerasHdf5(file: string): Promise<KerasCheckpoint> {
  await checkHdf5File(file);
  await h5ready();
  let h5: InstanceType<typeof h5wasm.File>;
  try {
    h5 = new h5wasm.File(file, 'r');
  } catch (error) {
    throw new CorruptFileError(file, `HDF5 library could not open it (${firstLine(error)})`);
  }
  try {
    const kerasVersion = stringAttribute(h5, 'keras_version');
    const backend = stringAttribute(h5, 'backend');
    const modelConfigText = stringAttribute(h5, 'model_config');
    if (modelConfigText !== undefined) {
      let modelConfig: unknown;
      try {
        modelConfig = JSON.parse(modelConfigText);
      } catch {
        throw new CorruptFileError(file, 'model_config attribute is not valid JSON');
      }
      const group = h5.get('model_weights');
      if (!isGroup(group)) throw new CorruptFileError(file, 'full-model file has no model_weights group');
      const { layerNames, weights } = readWeightGroup(group, file);
      return {
        kind: 'model',
        modelConfig,
        kerasVersion: kerasVersion ?? stringAttribute(group, 'keras_version'),
        backend: backend ?? stringAttribute(group, 'backend'),
        layerNames,
        weights,
      };
    }
    if (h5.attrs.layer_names !== undefined || h5.attrs.layer_names0 !== undefined) {
      const { layerNames, weights } = readWeightGroup(h5, file);
      return { kind: 'weights', kerasVersion, backend, layerNames, weights };
    }
    throw new UnknownFormatError(
      file,
      'HDF5 file without model_config or layer_names: expected a Keras model.save() or save_weights() file',
    );
  } finally {
    h5.close();
  }
}

function firstLine(error: unknown): string {
  return describeError(error, { className: false });
}
