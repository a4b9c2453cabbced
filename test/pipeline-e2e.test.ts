/**
 * The whole pipeline on the local stack with the real worker process: the real sample series
 * uploaded as a hospital's PACS would send it (DICOM headers with the patient's name and ID, not
 * de-identified) completes with its 12 selected slices counted once; a repeated manifest event and
 * a repeated inference message change nothing; a worker killed with SIGKILL in the middle of a
 * study and restarted still completes it with every slice counted once and one notification; and
 * no DynamoDB item, S3 result object, notification or log line carries the patient's identity.
 * The worker runs covidct's shipped default model (models/default: the paper's architecture at
 * 1/16 width, trained on phantoms), uploaded to the stack's S3 as `covidct model upload` would, so
 * held-out phantom COVID and normal studies also get the right decisions.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { ScanCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writePhantomSeries } from '../core/phantom/series.js';
import { type LocalStack, startLocalStack } from '../local/stack.js';
import { defaultModelDir } from '../models/default-model.js';
import { getStudy, uploadStudy, waitForStudy } from '../pipeline/api-client.js';
import {
  makeS3EventBody,
  manifestKey,
  reportKey,
  type StudyNotification,
  StudyStore,
  sliceKey,
} from '../pipeline/index.js';
import { subscribeHospitalQueue } from './helpers/pipeline.js';
import { collectStackErrors } from './helpers/stack-errors.js';
import { createAndUploadRaw, dlqDepths, receiveNotifications, settle } from './helpers/studies.js';
import { tempDir } from './helpers/tmp.js';

const B70F = join(import.meta.dirname, '../samples/lung-pet-ct-dx-A0002/B70f');
/** What the fixture's DICOM headers say of the patient (PatientName and PatientID). */
const PHI = ['Lung_Dx-A0002', 'Lung_Dx', 'A0002'];
const A = { hospital: 'hospital-a', apiKey: 'e2e-key-hospital-a-0123456789' };
const B = { hospital: 'hospital-b', apiKey: 'e2e-key-hospital-b-0123456789' };
/** The default model's manifest intendedUse, as every decision it takes must carry it. */
const DEMO_USE = { diagnostic: false, statement: 'demonstration on synthetic phantoms, not for diagnosis' };

const work = tempDir('covidct-e2e-');
let stack: LocalStack;
let store: StudyStore;
let notifications: string;
const logs: string[] = [];
const errors: string[] = [];
const restoreStdout = process.stdout.write.bind(process.stdout);

beforeAll(async () => {
  // The in-process Lambdas log to stdout: keep every line for the patient-data scan.
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    logs.push(String(chunk));
    return (restoreStdout as (c: string | Uint8Array, ...r: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stdout.write;
  stack = await startLocalStack({
    hospitals: [A, B],
    uploadModel: { dir: defaultModelDir(), name: 'default', version: '1' },
    workerEnv: { COVIDCT_POOL_SIZE: '1', COVIDCT_WORKER_BATCH_SLICES: '4', COVIDCT_WORKER_WAIT_SECONDS: '1' },
    onWorkerLine: (line) => logs.push(line),
    visibilityTimeoutSeconds: 5,
    pollWaitSeconds: 1,
    onError: collectStackErrors(errors),
  });
  store = new StudyStore(stack.clients.dynamo, stack.resources.tableName);
  notifications = await subscribeHospitalQueue(
    stack.clients,
    stack.resources.topicArn,
    'e2e-notify-a',
    A.hospital,
  );
}, 300_000);

afterAll(async () => {
  process.stdout.write = restoreStdout;
  await stack?.stop();
});

const api = (h: { apiKey: string }) => ({ api: stack.apiUrl, key: h.apiKey });

/** Upload a folder of (gzipped) DICOM slices as they are, headers and all, through the API's presigned URLs. */
async function uploadRaw(folder: string, seriesId: string): Promise<string> {
  const slices = readdirSync(folder)
    .filter((f) => f.endsWith('.dcm.gz'))
    .map((f) => ({ name: f.replace(/\.gz$/, ''), bytes: gunzipSync(readFileSync(join(folder, f))) }));
  return (await createAndUploadRaw(stack.apiUrl, A.apiKey, seriesId, slices)).studyId;
}

/** The sha256 of the fixture slice an object key names (`…/1-05.dcm` → B70f/1-05.dcm.gz, unzipped). */
function sha256OfFixture(key: string): string {
  const bytes = gunzipSync(readFileSync(join(B70F, `${key.split('/').pop()}.gz`)));
  return createHash('sha256').update(bytes).digest('hex');
}

/** Every notification on hospital A's filtered subscription so far (consumed), waiting up to `wait` s for each. */
const notified = (wait = 2) => receiveNotifications(stack.clients, notifications, wait);

/** Wait for hospital A's study to finish; it must be COMPLETE with every selected slice classified. */
async function waitComplete(studyId: string) {
  const { status, timedOut } = await waitForStudy({
    ...api(A),
    studyId,
    timeoutSeconds: 300,
    intervalSeconds: 0.5,
  });
  expect(timedOut).toBe(false);
  expect(status.status).toBe('COMPLETE');
  expect(status.classifiedCount).toBe(status.selectedCount);
  return status;
}

describe('the pipeline end to end with the real worker', () => {
  let realStudy: string;

  it('completes the real B70f series with its 12 selected slices counted once and notifies once', {
    timeout: 300_000,
  }, async () => {
    const t0 = performance.now();
    realStudy = await uploadRaw(B70F, 'B70f');
    const { status, timedOut } = await waitForStudy({
      ...api(A),
      studyId: realStudy,
      timeoutSeconds: 240,
      intervalSeconds: 0.5,
    });
    const seconds = (performance.now() - t0) / 1000;
    expect(timedOut).toBe(false);
    expect(status.status).toBe('COMPLETE');
    expect(status.selectedCount).toBe(12);
    expect(status.classifiedCount).toBe(12);
    expect(await store.countVotes(A.hospital, realStudy)).toBe(12);
    const sent = await notified();
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({
      studyId: realStudy,
      hospital: A.hospital,
      status: 'COMPLETE',
      intendedUse: DEMO_USE,
    });
    // The worker reported the model's intended use with its votes: the API and the report carry it.
    expect(status.intendedUse).toEqual(DEMO_USE);
    const report = JSON.parse(
      await (
        await stack.clients.s3.send(
          new GetObjectCommand({ Bucket: stack.resources.bucket, Key: reportKey(A.hospital, realStudy) }),
        )
      ).Body!.transformToString(),
    );
    expect(report.intendedUse).toEqual(DEMO_USE);
    expect(report.models).toEqual([
      expect.objectContaining({ id: 'default/1', intendedUse: DEMO_USE, votes: 12 }),
    ]);
    console.info(`real B70f series, upload → decision: ${seconds.toFixed(1)} s`);
  });

  it('changes nothing on a repeated manifest event or a repeated inference message', async () => {
    const before = await store.getStudy(A.hospital, realStudy);
    const bucket = stack.resources.bucket;
    await stack.clients.sqs.send(
      new SendMessageCommand({
        QueueUrl: stack.resources.queueUrls.ingest,
        MessageBody: makeS3EventBody({ bucket, key: manifestKey(A.hospital, realStudy), size: 100 }),
      }),
    );
    const selected = before!.series!.flatMap((s) =>
      s.slices.filter((x) => x.selected).map((x) => ({ seriesId: s.id, key: x.key })),
    );
    const first = selected[0]!;
    await stack.clients.sqs.send(
      new SendMessageCommand({
        QueueUrl: stack.resources.queueUrls.inference,
        MessageBody: JSON.stringify({
          hospital: A.hospital,
          studyId: realStudy,
          seriesId: first.seriesId,
          slices: [{ key: first.key, sha256: sha256OfFixture(first.key) }],
        }),
      }),
    );
    await new Promise((r) => setTimeout(r, 3000));
    await settle(stack.clients, stack.resources);
    const after = await store.getStudy(A.hospital, realStudy);
    expect(after).toEqual(before);
    expect(await store.countVotes(A.hospital, realStudy)).toBe(12);
    expect(await notified(1)).toEqual([]);
    expect(sliceKey(A.hospital, realStudy, 'B70f', '1-05.dcm')).toMatch(/^incoming\/hospital-a\//);
  });

  it('completes a study with every slice counted once after the worker is killed mid-study and restarted', {
    timeout: 400_000,
  }, async () => {
    const folder = join(work, 'phantom-kill', 'SR_2');
    await writePhantomSeries(folder, { covid: true, seed: 4242, slices: 60, format: 'dicom', force: false });
    const { studyId } = await uploadStudy({ ...api(A), path: join(folder, '..') });
    // Kill once the worker has sent the first votes of this study but not all of them.
    let midway = await getStudy(api(A), studyId);
    for (let i = 0; i < 1200 && (midway.classifiedCount ?? 0) === 0 && midway.status !== 'COMPLETE'; i++) {
      await new Promise((r) => setTimeout(r, 50));
      midway = await getStudy(api(A), studyId);
    }
    await stack.killWorker('SIGKILL');
    expect(midway.status).toBe('CLASSIFYING');
    expect(midway.classifiedCount ?? 0).toBeLessThan(midway.selectedCount ?? 0);
    await stack.restartWorker();
    const status = await waitComplete(studyId);
    expect(await store.countVotes(A.hospital, studyId)).toBe(status.selectedCount);
    const sent = await notified();
    expect(sent.filter((n) => n.studyId === studyId)).toHaveLength(1);
  });

  it('decides a phantom COVID study and a phantom normal study correctly, one notification each', {
    timeout: 400_000,
  }, async () => {
    // Held-out phantoms (seeds far from the default model's training and evaluation sets).
    const cases = [
      { covid: true, seed: 515151, expected: 'covid' },
      { covid: false, seed: 515152, expected: 'normal' },
    ] as const;
    const studies: string[] = [];
    for (const c of cases) {
      const folder = join(work, `phantom-${c.expected}`, 'SR_2');
      await writePhantomSeries(folder, {
        covid: c.covid,
        seed: c.seed,
        slices: 40,
        format: 'dicom',
        force: false,
      });
      studies.push((await uploadStudy({ ...api(A), path: join(folder, '..') })).studyId);
    }
    const sent: StudyNotification[] = [];
    for (const [i, studyId] of studies.entries()) {
      const status = await waitComplete(studyId);
      expect(status.decision, `phantom seed ${cases[i]!.seed}`).toBe(cases[i]!.expected);
    }
    for (let i = 0; i < 10 && sent.length < 2; i++) {
      sent.push(...(await notified()));
    }
    for (const [i, studyId] of studies.entries()) {
      const mine = sent.filter((n) => n.studyId === studyId);
      expect(mine).toHaveLength(1);
      expect(mine[0]).toMatchObject({
        hospital: A.hospital,
        status: 'COMPLETE',
        decision: cases[i]!.expected,
      });
    }
  });

  it('leaves every DLQ empty and no patient identity anywhere: DynamoDB, S3 results, notifications, logs', async () => {
    await settle(stack.clients, stack.resources);
    expect(await dlqDepths(stack.clients, stack.resources)).toEqual({ ingest: 0, inference: 0, votes: 0 });
    const items = await stack.clients.dynamo.send(new ScanCommand({ TableName: stack.resources.tableName }));
    const texts: string[] = [JSON.stringify(items.Items)];
    const listed = await stack.clients.s3.send(
      new ListObjectsV2Command({ Bucket: stack.resources.bucket, Prefix: 'results/' }),
    );
    expect(listed.Contents?.length ?? 0).toBeGreaterThan(0);
    for (const o of listed.Contents ?? []) {
      const got = await stack.clients.s3.send(
        new GetObjectCommand({ Bucket: stack.resources.bucket, Key: o.Key! }),
      );
      texts.push(Buffer.from(await got.Body!.transformToByteArray()).toString('latin1'));
    }
    texts.push(...logs);
    expect(logs.length).toBeGreaterThan(10);
    for (const text of texts) for (const phi of PHI) expect(text).not.toContain(phi);
    expect(errors).toEqual([]);
  });
});
