/**
 * After selection the pipeline works from what the select Lambda recorded in DynamoDB, never from
 * the manifest again (issue 14, section 4): the real select and aggregate stages against the local
 * servers. A second manifest uploaded after selection (other hashes and sizes, a slice dropped)
 * changes neither the report (per-slice hashes and sizes, the manifest's hash, the input count) nor
 * what a select retried after a crash sends to the workers; the aggregate stage reads nothing
 * from the bucket.
 */
import { createHash } from 'node:crypto';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { describe, expect, it } from 'vitest';
import { encodePhantomSlice } from '../core/phantom/files.js';
import { createPhantom } from '../core/phantom/phantom.js';
import { finishStudy, recordVotes } from '../lambdas/aggregate/aggregate.js';
import type { StudyReport } from '../lambdas/aggregate/report.js';
import { type SelectDeps, selectManifest } from '../lambdas/select/select.js';
import { manifestKey, parseInferenceMessage, reportKey, StudyStore, TABLE } from '../pipeline/index.js';
import { useLocalStack } from './helpers/local-stack.js';
import { drainQueue, uploadStudy } from './helpers/pipeline.js';

const stack = useLocalStack();
const H = 'hospital-a';
const MODEL = { id: 'rule@000000000000', sha256: 'f'.repeat(64) };
const sha = (bytes: Uint8Array | string) => createHash('sha256').update(bytes).digest('hex');

/** Four phantom slices with open lungs (the middle of a 9-slice series): a valid study selects some. */
const phantom = createPhantom({ seed: 7, covid: false, slices: 9 });
const SLICES = [3, 4, 5, 6].map((i) => ({
  name: `s${i}.dcm`,
  bytes: encodePhantomSlice(phantom.info, phantom.slice(i), 'dicom'),
}));

function selectDeps(store: StudyStore): SelectDeps {
  return {
    s3: stack.clients.s3,
    sqs: stack.clients.sqs,
    sns: stack.clients.sns,
    store,
    bucket: stack.resources.bucket,
    inferenceQueueUrl: stack.resources.queueUrls.inference,
    topicArn: stack.resources.topicArn,
  };
}

/** A study created, uploaded and selected by the real select stage; returns its first manifest's text. */
async function selected(store: StudyStore, studyId: string): Promise<{ manifestText: string }> {
  await store.createStudy({ hospital: H, studyId, threshold: 0.3 });
  const { manifest } = await uploadStudy(stack.clients, stack.resources.bucket, H, studyId, [
    { id: 'S1', slices: SLICES },
  ]);
  const outcome = await selectManifest(selectDeps(store), {
    eventName: 'ObjectCreated:Put',
    bucket: stack.resources.bucket,
    key: manifestKey(H, studyId),
  });
  expect(outcome.kind).toBe('classifying');
  return { manifestText: JSON.stringify(manifest) };
}

/** Upload a second manifest over the first: every hash and size changed, the last slice dropped. */
async function secondManifest(studyId: string, first: string): Promise<void> {
  const m = JSON.parse(first) as { series: { slices: { key: string; sha256: string; size: number }[] }[] };
  const slices = m.series[0]!.slices;
  m.series[0]!.slices = slices.slice(0, -1).map((s) => ({ ...s, sha256: 'e'.repeat(64), size: s.size + 1 }));
  await stack.clients.s3.send(
    new PutObjectCommand({
      Bucket: stack.resources.bucket,
      Key: manifestKey(H, studyId),
      Body: JSON.stringify(m),
    }),
  );
}

describe('a manifest uploaded again after selection', () => {
  it('changes nothing in the report: the aggregate works from the recorded selection and reads no object', async () => {
    const store = new StudyStore(stack.clients.dynamo, TABLE.name);
    const studyId = 'recorded-1';
    const { manifestText } = await selected(store, studyId);
    await drainQueue(stack.clients.sqs, stack.resources.queueUrls.inference);
    const study = (await store.getStudy(H, studyId))!;
    expect(study.status).toBe('CLASSIFYING');
    // What select recorded: every slice's checked hash and length, the manifest's hash and size.
    expect(study.inputs).toEqual({ manifestSha256: sha(manifestText), slices: SLICES.length });
    for (const slice of study.series![0]!.slices) {
      const bytes = SLICES.find((s) => slice.key.endsWith(`/${s.name}`))!.bytes;
      expect(slice).toMatchObject({ sha256: sha(bytes), size: bytes.length });
    }

    await secondManifest(studyId, manifestText);

    // The aggregate stage with an S3 client that logs every command it is given.
    const commands: string[] = [];
    const s3 = {
      send(command: { constructor: { name: string } }) {
        commands.push(command.constructor.name);
        return stack.clients.s3.send(command as Parameters<S3Client['send']>[0]);
      },
    } as unknown as S3Client; // only send() is used by the aggregate stage
    const deps = {
      s3,
      sns: stack.clients.sns,
      store,
      bucket: stack.resources.bucket,
      topicArn: stack.resources.topicArn,
    };
    const votes = study
      .series![0]!.slices.filter((s) => s.selected)
      .map((s) => ({
        seriesId: 'S1',
        key: s.key,
        probabilities: [0.9, 0.1] as const,
        label: 'covid' as const,
      }));
    expect((await recordVotes(deps, { hospital: H, studyId, model: MODEL, votes })).recorded).toBe(
      votes.length,
    );
    expect((await finishStudy(deps, H, studyId)).kind).toBe('completed');

    const out = await stack.clients.s3.send(
      new GetObjectCommand({
        Bucket: stack.resources.bucket,
        Key: reportKey(H, studyId),
      }),
    );
    const report = JSON.parse(await out.Body!.transformToString()) as StudyReport;
    expect(report.inputs).toEqual({
      manifestKey: manifestKey(H, studyId),
      manifestSha256: sha(manifestText),
      slices: SLICES.length,
    });
    const reported = report.series[0]!.slices.map((s) => [s.key.split('/').pop(), s.sha256, s.size]);
    expect(reported.sort()).toEqual(SLICES.map((s) => [s.name, sha(s.bytes), s.bytes.length]).sort());
    expect(commands).toEqual(['PutObjectCommand']); // the report; no GetObject of the manifest
  });

  it('changes nothing in what a select retried after a crash sends to the workers', async () => {
    const store = new StudyStore(stack.clients.dynamo, TABLE.name);
    const studyId = 'recorded-2';
    const { manifestText } = await selected(store, studyId);
    const first = (await drainQueue(stack.clients.sqs, stack.resources.queueUrls.inference)).map(
      parseInferenceMessage,
    );
    // As if the select Lambda died after recording the selection and before queueing it.
    await stack.clients.dynamo.send(
      new UpdateCommand({
        TableName: TABLE.name,
        Key: { pk: `STUDY#${H}#${studyId}`, sk: 'STUDY' },
        UpdateExpression: 'SET enqueued = :f',
        ExpressionAttributeValues: { ':f': false },
      }),
    );
    await secondManifest(studyId, manifestText);
    const outcome = await selectManifest(selectDeps(store), {
      eventName: 'ObjectCreated:Put',
      bucket: stack.resources.bucket,
      key: manifestKey(H, studyId),
    });
    expect(outcome).toMatchObject({ kind: 'classifying', resent: true });
    const resent = (await drainQueue(stack.clients.sqs, stack.resources.queueUrls.inference)).map(
      parseInferenceMessage,
    );
    const slicesOf = (ms: typeof first) =>
      ms.flatMap((m) => m.slices).sort((a, b) => a.key.localeCompare(b.key));
    expect(slicesOf(resent)).toEqual(slicesOf(first));
    for (const s of slicesOf(resent)) {
      expect(s.sha256).toBe(sha(SLICES.find((x) => s.key.endsWith(`/${x.name}`))!.bytes));
    }
    expect((await store.getStudy(H, studyId))?.status).toBe('CLASSIFYING');
  });
});
