/** The body of `covidct demo`, loaded only when it runs (it pulls in the local stack and TensorFlow.js). */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { writePhantomSeries } from '../../core/phantom/series.js';
import { startLocalStack } from '../../local/stack.js';
import { defaultModelDir, resolveModelDir } from '../../models/default-model.js';
import { formatStatus, uploadStudy, waitForStudy } from '../../pipeline/api-client.js';
import { reportKey, resultsPrefix } from '../../pipeline/index.js';
import { warn } from '../io.js';
import type { DemoOptions, DemoResult } from './demo.js';

/** The bundled real study (two series of Lung-PET-CT-Dx patient A0002). */
const SAMPLE = fileURLToPath(new URL('../../../samples/lung-pet-ct-dx-A0002', import.meta.url));

interface PlannedStudy {
  readonly hospital: string;
  readonly name: string;
  readonly path: string;
}

/** Run the demo; resolves with every study's outcome. */
export async function runDemo(options: DemoOptions): Promise<DemoResult[]> {
  const say = (line: string) => {
    if (!options.json) process.stdout.write(`${line}\n`);
  };
  const modelDir = resolveModelDir(options.modelDir, defaultModelDir());
  const work = await mkdtemp(join(tmpdir(), 'covidct-demo-'));
  const hospitals = [
    { hospital: 'hospital-a', apiKey: randomBytes(18).toString('base64url') },
    { hospital: 'hospital-b', apiKey: randomBytes(18).toString('base64url') },
  ];
  const plan: PlannedStudy[] = [
    { hospital: 'hospital-a', name: 'real CT, Lung-PET-CT-Dx A0002 (lung cancer, not COVID)', path: SAMPLE },
  ];
  for (const [name, covid, seed] of [
    ['phantom COVID', true, 9001],
    ['phantom normal', false, 9002],
  ] as const) {
    const path = join(work, name.replace(/ /g, '-'), 'SR_2');
    await writePhantomSeries(path, { covid, seed, slices: options.slices, format: 'dicom', force: false });
    plan.push({
      hospital: 'hospital-b',
      name: `${name} (seed ${seed}, ${options.slices} slices)`,
      path: join(path, '..'),
    });
  }

  // The Lambdas' and the worker's JSON logs would bury the results: warnings and errors only, unless --verbose.
  const quiet: Record<string, string> = options.verbose
    ? {}
    : { POWERTOOLS_LOG_LEVEL: 'WARN', POWERTOOLS_METRICS_DISABLED: 'true' };
  Object.assign(process.env, quiet);
  say('starting the local stack (S3, SQS, SNS, DynamoDB, the Lambdas, the worker) …');
  const stack = await startLocalStack({
    hospitals,
    uploadModel: { dir: modelDir, name: 'default', version: '1' },
    workerEnv: quiet,
  });
  const results: DemoResult[] = [];
  try {
    say(`API ${stack.apiUrl}; model ${stack.model}`);
    const started = await Promise.all(
      plan.map(async (p) => {
        const key = hospitals.find((h) => h.hospital === p.hospital)!.apiKey;
        const target = { api: stack.apiUrl, key };
        const t0 = performance.now();
        const upload = await uploadStudy({ ...target, path: p.path });
        say(`${p.hospital}: uploaded ${p.name}: study ${upload.studyId}, ${upload.slices} slices`);
        return { p, target, upload, t0 };
      }),
    );
    for (const { p, target, upload, t0 } of started) {
      const { status, timedOut } = await waitForStudy({
        ...target,
        studyId: upload.studyId,
        timeoutSeconds: options.timeout,
      });
      const seconds = (performance.now() - t0) / 1000;
      const result: DemoResult = {
        hospital: p.hospital,
        study: p.name,
        studyId: upload.studyId,
        status: timedOut ? `TIMED OUT (${status.status})` : status.status,
        ...(status.reason ? { reason: status.reason } : {}),
        decision: status.decision ?? null,
        covidFraction: typeof status.covidFraction === 'number' ? status.covidFraction : null,
        selectedCount: status.selectedCount ?? 0,
        classifiedCount: status.classifiedCount ?? 0,
        covidCount: status.covidCount ?? 0,
        report: join(options.out, reportKey(p.hospital, upload.studyId)),
        heatmaps: join(options.out, resultsPrefix(p.hospital, upload.studyId), 'heatmaps'),
        seconds,
      };
      // The local stack's S3 lives in memory: copy the study's results out before it stops.
      const copied = await downloadPrefix(
        stack.clients.s3,
        stack.resources.bucket,
        resultsPrefix(p.hospital, upload.studyId),
        options.out,
      );
      results.push(result);
      say(`\n${p.hospital}: ${p.name} (${seconds.toFixed(1)} s from upload to result)`);
      say(formatStatus(status).trimEnd());
      say(`  report:   ${relative(process.cwd(), result.report)}`);
      say(
        `  heatmaps: ${relative(process.cwd(), result.heatmaps)}/ (${copied - 1} Grad-CAM PNGs of COVID slices)`,
      );
    }
    if (options.modelDir === undefined) {
      say(
        '\nThe default model is trained on synthetic phantoms only (models/default/MODEL_CARD.md): it tells' +
          ' phantom COVID from phantom normal patients, and its decisions on real scans mean nothing.' +
          " Import the authors' checkpoints (covidct import-keras) or train on real data, then --model-dir.",
      );
    }
    if (options.keep) {
      say(`\nthe local stack keeps running: API ${stack.apiUrl}`);
      for (const h of hospitals) say(`  ${h.hospital}: x-api-key ${h.apiKey}`);
      say('Ctrl-C stops it.');
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
    }
  } catch (error) {
    warn('the demo stopped early; the local stack is being shut down');
    throw error;
  } finally {
    await stack.stop();
    await rm(work, { recursive: true, force: true });
  }
  return results;
}

/** Copy every object under `prefix` into `out/{key}`; resolves to the number of objects. */
async function downloadPrefix(s3: S3Client, bucket: string, prefix: string, out: string): Promise<number> {
  let count = 0;
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const object of page.Contents ?? []) {
      const target = resolve(out, object.Key!);
      const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: object.Key! }));
      await mkdir(dirname(target), { recursive: true });
      await writeFile(target, await got.Body!.transformToByteArray());
      count++;
    }
    token = page.NextContinuationToken;
  } while (token);
  return count;
}
