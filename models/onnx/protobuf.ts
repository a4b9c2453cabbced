/**
 * The ONNX protobuf writer of the exporter (export.ts): ModelProto, GraphProto and node attributes
 * through protobufjs from the vendored schema (onnx.proto), initializers written as chunks that
 * point at the weights, and a {@link GraphBuilder} that collects nodes and initializers.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import { concatBytes } from '../../core/bytes.js';
import { packageRoot } from '../default-model.js';

// ONNX enums (onnx.proto): TensorProto.DataType and AttributeProto.AttributeType.
export const FLOAT = 1;
export const INT64 = 7;
export const ATTR_FLOAT = 1;
export const ATTR_INT = 2;
export const ATTR_STRING = 3;
export const ATTR_INTS = 7;

let schemaRoot: protobuf.Root | undefined;

/** A message type of the vendored schema, parsed once (snake_case kept). */
export function messageType(name: 'ModelProto' | 'GraphProto' | 'TensorProto'): protobuf.Type {
  if (schemaRoot === undefined) {
    const source = readFileSync(join(packageRoot(), 'models', 'onnx', 'onnx.proto'), 'utf8');
    schemaRoot = protobuf.parse(source, { keepCase: true }).root;
  }
  return schemaRoot.lookupType(`onnx.${name}`);
}

/** The number of a message's field in the schema. */
export function fieldId(type: protobuf.Type, field: string): number {
  const found = type.fields[field];
  if (found === undefined) throw new Error(`onnx.proto: ${type.name} has no field ${field}`);
  return found.id;
}

/** A protobuf varint (non-negative, below 2^53). */
export function varint(value: number): Uint8Array {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return Uint8Array.from(out);
}

/** A length-delimited field (wire type 2) holding `chunks`, as a list of chunks (nothing copied). */
export function delimited(field: number, chunks: readonly Uint8Array[]): Uint8Array[] {
  const length = chunks.reduce((sum, c) => sum + c.length, 0);
  return [varint(field * 8 + 2), varint(length), ...chunks];
}

/** An initializer: a named tensor and its little-endian bytes. */
export interface Initializer {
  readonly name: string;
  readonly dims: readonly number[];
  readonly dataType: number;
  readonly raw: Uint8Array;
}

/**
 * Encode the model: every message but the initializers through protobufjs; the initializers
 * (all but a few kilobytes of a model's bytes) as chunks that point at the weights, joined by one
 * copy at the end. protobufjs alone copies each weight several times as its writer grows: the
 * paper's 136 MB model took seconds to encode that way. Field numbers come from the schema.
 */
export function encodeModel(model: object, graph: object, initializers: readonly Initializer[]): Uint8Array {
  const modelType = messageType('ModelProto');
  const graphType = messageType('GraphProto');
  const tensorType = messageType('TensorProto');
  const dimsField = fieldId(tensorType, 'dims');
  const typeField = fieldId(tensorType, 'data_type');
  const nameField = fieldId(tensorType, 'name');
  const rawField = fieldId(tensorType, 'raw_data');
  const initializerField = fieldId(graphType, 'initializer');
  const graphChunks: Uint8Array[] = [graphType.encode(graphType.fromObject(graph)).finish()];
  for (const t of initializers) {
    const tensor: Uint8Array[] = [];
    for (const d of t.dims) tensor.push(varint(dimsField * 8), varint(d));
    tensor.push(varint(typeField * 8), varint(t.dataType));
    tensor.push(...delimited(nameField, [new TextEncoder().encode(t.name)]));
    tensor.push(...delimited(rawField, [t.raw]));
    graphChunks.push(...delimited(initializerField, tensor));
  }
  const chunks = [
    modelType.encode(modelType.fromObject(model)).finish(),
    ...delimited(fieldId(modelType, 'graph'), graphChunks),
  ];
  return concatBytes(chunks);
}

export type Attr = number | string | number[] | { float: number };

export interface NodeSpec {
  readonly op: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly attrs?: Record<string, Attr>;
}

export function attribute(name: string, value: Attr): object {
  if (typeof value === 'number') return { name, type: ATTR_INT, i: value };
  if (typeof value === 'string') return { name, type: ATTR_STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) return { name, type: ATTR_INTS, ints: value };
  return { name, type: ATTR_FLOAT, f: value.float };
}

export function bytesOf(data: Float32Array | BigInt64Array): Uint8Array {
  // ONNX raw_data is little-endian; so is every platform covidct supports.
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Builds the graph: nodes, initializers, and the static shape of every Keras layer's output. */
export class GraphBuilder {
  readonly nodes: object[] = [];
  readonly initializers: Initializer[] = [];
  private counter = 0;

  node(spec: NodeSpec): void {
    this.nodes.push({
      name: `${spec.outputs[0]}_${spec.op}`,
      op_type: spec.op,
      input: [...spec.inputs],
      output: [...spec.outputs],
      attribute: Object.entries(spec.attrs ?? {}).map(([k, v]) => attribute(k, v)),
    });
  }

  /** A fresh intermediate name under a layer's. */
  temp(base: string, what: string): string {
    this.counter += 1;
    return `${base}/${what}_${this.counter}`;
  }

  float(name: string, dims: readonly number[], data: Float32Array): string {
    this.initializers.push({ name, dims: [...dims], dataType: FLOAT, raw: bytesOf(data) });
    return name;
  }

  int64(name: string, values: readonly number[]): string {
    const data = BigInt64Array.from(values.map((v) => BigInt(v)));
    this.initializers.push({ name, dims: [values.length], dataType: INT64, raw: bytesOf(data) });
    return name;
  }
}
