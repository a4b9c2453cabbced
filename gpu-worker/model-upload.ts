/**
 * `covidct model upload DIR --name N --version V [--endpoint URL] [--bucket B]`: put a model folder
 * (model.json, its weight files, manifest.json) under `models/{name}/{version}/`, where the GPU
 * worker loads it from (`COVIDCT_MODEL={name}/{version}`). A version is immutable: votes carry its
 * hash, so uploading different files under an existing version is refused; the same files again
 * are a no-op. model.json goes last, so a worker never finds it without its weights.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import type { Command } from 'commander';
import { fileSystemError, InputError } from '../../core/errors.js';
import { printJson } from '../io.js';

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

async function readLocal(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    throw fileSystemError(path, error);
  }
}

/** Upload a model folder to `models/{name}/{version}/` (see the module comment). */
export async function uploadModel(options: ModelUploadOptions): Promise<ModelUploadResult> {
  const { GetObjectCommand, PutObjectCommand } = await import('@aws-sdk/client-s3');
  const { checkModelSegment, modelId, modelPrefix, modelSha256, weightPaths } = await import(
    '../../gpu-worker/model-store.js'
  );
  const { MANIFEST_JSON, MODEL_JSON, readManifest } = await import('../../models/io.js');
  const ref = {
    name: checkModelSegment(options.name, '--name'),
    version: checkModelSegment(options.version, '--version'),
  };
  const jsonPath = join(options.dir, MODEL_JSON);
  const json = await readLocal(jsonPath);
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
  const weights = await Promise.all(paths.map((p) => readLocal(join(options.dir, p))));
  // Checks classes and shape of covidct's manifest; a plain tfjs model may have none.
  const manifest = await readManifest(options.dir);
  const manifestBytes =
    manifest === undefined ? undefined : await readLocal(join(options.dir, MANIFEST_JSON));
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

/** The options `model upload` takes. */
interface UploadCliOptions {
  readonly name: string;
  readonly version: string;
  readonly endpoint?: string;
  readonly bucket?: string;
  readonly json?: boolean;
}

/** Register `model upload` under the `model` command. */
export function registerModelUpload(model: Command): void {
  model
    .command('upload')
    .description(
      'upload a model folder to the pipeline bucket as models/{name}/{version}/ (the worker loads COVIDCT_MODEL={name}/{version})',
    )
    .argument('<dir>', 'a model folder (model.json, weights, manifest.json)')
    .requiredOption('--name <name>', 'model name, e.g. resnet50v2-fpn')
    .requiredOption('--version <version>', 'model version, e.g. fold1 (immutable once uploaded)')
    .option('--endpoint <url>', 'S3 endpoint of the local stack (default: AWS, or COVIDCT_ENDPOINT)')
    .option('--bucket <name>', 'bucket (default: COVIDCT_BUCKET, else the local stack’s)')
    .option('--json', 'print JSON: { id, sha256, bucket, keys, bytes, unchanged }')
    .action(async (dir: string, options: UploadCliOptions) => {
      const [{ createClients, endpointsFromEnv }, { BUCKET }, { ENV }] = await Promise.all([
        import('../../pipeline/clients.js'),
        import('../../pipeline/resources.js'),
        import('../../pipeline/config.js'),
      ]);
      const endpoints = options.endpoint === undefined ? endpointsFromEnv() : { endpoint: options.endpoint };
      const { s3 } = createClients(endpoints);
      const bucket = options.bucket ?? process.env[ENV.bucket] ?? BUCKET.name;
      const result = await uploadModel({ dir, name: options.name, version: options.version, bucket, s3 });
      if (options.json) {
        printJson(result);
        return;
      }
      process.stdout.write(
        result.unchanged
          ? `${result.id}: already uploaded (sha256 ${result.sha256})\n`
          : `${result.id}: uploaded ${result.keys.length} files, ${result.bytes} bytes, to s3://${bucket}/${result.keys[0]!.slice(0, result.keys[0]!.lastIndexOf('/') + 1)} (sha256 ${result.sha256})\n`,
      );
    });
}
