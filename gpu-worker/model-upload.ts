/**
 * Uploading a model folder (model.json, its weight files, manifest.json) under
 * `models/{name}/{version}/`, where the worker's model store (model-store.ts) loads it from
 * (`COVIDCT_MODEL={name}/{version}`); `covidct model upload` and the local stack use it. A version is immutable: votes carry its
 * hash, so uploading different files under an existing version is refused; the same files again
 * are a no-op. model.json goes last, so a worker never finds it without its weights.
 */
import { join } from 'node:path';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { InputError } from '../core/errors.js';
import { readLocalFile } from '../core/read-file.js';
import { MANIFEST_JSON, MODEL_JSON, readManifest } from '../models/io.js';
import { checkModelSegment, modelId, modelPrefix, modelSha256, weightPaths } from './model-store.js';

/** What {@link uploadModel} did. */
export interface ModelUploadResult {
  /** `{name}/{version}`: the `COVIDCT_MODEL` value. */
  readonly id: string;
  /** SHA-256 over model.json and its weight files (what every vote will carry). */
  readonly sha256: string;
  readonly bucket: string;
  /** Keys written (empty when the same model was already there). */
  readonly keys: readonly string[];
  readonly bytes: number;
  /** True when this exact model was already uploaded under the version. */
  readonly unchanged: boolean;
}

/** Options of {@link uploadModel}. */
export interface ModelUploadOptions {
  readonly dir: string;
  readonly name: string;
  readonly version: string;
  readonly bucket: string;
  readonly s3: S3Client;
}

/** Upload a model folder to `models/{name}/{version}/` (see the module comment). */
export async function uploadModel(options: ModelUploadOptions): Promise<ModelUploadResult> {
  const ref = {
    name: checkModelSegment(options.name, '--name'),
    version: checkModelSegment(options.version, '--version'),
  };
  const jsonPath = join(options.dir, MODEL_JSON);
  const json = await readLocalFile(jsonPath);
  let parsed: { modelTopology?: unknown; weightsManifest?: { paths: string[]; weights: unknown[] }[] };
  try {
    parsed = JSON.parse(json.toString('utf8'));
  } catch (error) {
    throw new InputError(jsonPath, `not valid JSON (${(error as Error).message})`);
  }
  if (parsed === null || typeof parsed !== 'object' || parsed.modelTopology === undefined) {
    throw new InputError(jsonPath, 'not a tfjs layers model (no modelTopology)');
  }
  const paths = weightPaths(parsed as never, jsonPath);
  const weights = await Promise.all(paths.map((p) => readLocalFile(join(options.dir, p))));
  // Checks classes and shape of covidct's manifest; a plain tfjs model may have none.
  const manifest = await readManifest(options.dir);
  const manifestBytes =
    manifest === undefined ? undefined : await readLocalFile(join(options.dir, MANIFEST_JSON));
  const sha256 = modelSha256(json, weights);
  const prefix = modelPrefix(ref);
  const result = { id: modelId(ref), sha256, bucket: options.bucket };

  // An existing version: the same bytes are fine, different ones are refused.
  try {
    const out = await options.s3.send(
      new GetObjectCommand({ Bucket: options.bucket, Key: `${prefix}${MODEL_JSON}` }),
    );
    const existingJson = await out.Body!.transformToByteArray();
    const existingPaths = weightPaths(JSON.parse(Buffer.from(existingJson).toString('utf8')), prefix);
    const existingWeights = await Promise.all(
      existingPaths.map(async (p) => {
        const w = await options.s3.send(
          new GetObjectCommand({ Bucket: options.bucket, Key: `${prefix}${p}` }),
        );
        return w.Body!.transformToByteArray();
      }),
    );
    const existing = modelSha256(existingJson, existingWeights);
    if (existing !== sha256) {
      throw new InputError(
        `${result.id}`,
        `already uploaded with different files (sha256 ${existing.slice(0, 12)}…, these are ${sha256.slice(0, 12)}…): choose a new --version`,
      );
    }
    return { ...result, keys: [], bytes: 0, unchanged: true };
  } catch (error) {
    const name = (error as { name?: string }).name;
    if (error instanceof InputError) throw error;
    if (name !== 'NoSuchKey' && name !== 'NotFound') throw error;
  }

  const files: [string, Uint8Array, string][] = [
    ...paths.map((p, i): [string, Uint8Array, string] => [p, weights[i]!, 'application/octet-stream']),
    ...(manifestBytes === undefined
      ? []
      : [[MANIFEST_JSON, manifestBytes, 'application/json'] as [string, Uint8Array, string]]),
    [MODEL_JSON, json, 'application/json'],
  ];
  const keys: string[] = [];
  let bytes = 0;
  for (const [file, body, type] of files) {
    const key = `${prefix}${file}`;
    await options.s3.send(
      new PutObjectCommand({ Bucket: options.bucket, Key: key, Body: body, ContentType: type }),
    );
    keys.push(key);
    bytes += body.length;
  }
  return { ...result, keys, bytes, unchanged: false };
}
