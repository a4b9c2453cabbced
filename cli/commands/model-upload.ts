/**
 * `covidct model upload DIR --name N --version V [--endpoint URL] [--bucket B]`: parse the options,
 * upload with gpu-worker/model-upload.ts (where the worker's model store is), print what it did.
 */
import type { Command } from 'commander';
import { printJson } from '../io.js';

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
      const [{ uploadModel }, { createClients, endpointsFromEnv }, { BUCKET }, { ENV }] = await Promise.all([
        import('../../gpu-worker/model-upload.js'),
        import('../../pipeline/index.js'),
        import('../../pipeline/index.js'),
        import('../../pipeline/index.js'),
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
