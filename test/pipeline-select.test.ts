/**
 * The select Lambda against the local servers through the real SDK: a real series (A0002 B40f
 * TIFF) is selected exactly as core selects it and exactly its selected slices are queued; a
 * duplicate manifest event changes nothing; bad manifests and corrupt slices end the study FAILED
 * with a one-line reason, consume the message (no retry, DLQ empty) and notify once; transient
 * errors fail the record and the retry finishes the job.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectStudy } from '../core/study.js';
import { makeSelectHandler, type SelectConfig } from '../lambdas/select/handler.js';
import { parseInferenceMessage, StudyStore } from '../pipeline/index.js';
import { useLocalStack } from './helpers/local-stack.js';
import {
  drainQueue,
  queueDepth,
  quietObservability,
  sqsEvent,
  type UploadSlice,
  uploadStudy,
} from './helpers/pipeline.js';

const B40F = join(import.meta.dirname, 'fixtures/lung-pet-ct-dx-A0002-tiff/B40f');
const HOSPITAL = 'hospital-a';

const stack = useLocalStack();
let store: StudyStore;
let config: SelectConfig;
let handler: ReturnType<typeof makeSelectHandler>;
let b40f: UploadSlice[];

beforeAll(() => {
  store = new StudyStore(stack.clients.dynamo, stack.resources.tableName);
  config = {
    bucket: stack.resources.bucket,
    tableName: stack.resources.tableName,
    inferenceQueueUrl: stack.resources.queueUrls.inference,
    topicArn: stack.resources.topicArn,
  };
  handler = makeSelectHandler(stack.clients, config, quietObservability());
  b40f = readdirSync(B40F)
    .filter((f) => f.endsWith('.tif'))
    .map((name) => ({ name, bytes: readFileSync(join(B40F, name)) }));
});

async function newStudy(studyId: string): Promise<void> {
  await store.createStudy({ hospital: HOSPITAL, studyId, threshold: 0.3 });
}

describe('select Lambda', () => {
  it('records the real series with core dark counts and queues exactly the selected slices', async () => {
    await newStudy('real-1');
    // Shuffled upload order: the handler must order slices itself.
    const shuffled = [...b40f].reverse();
    const { eventBody } = await uploadStudy(stack.clients, config.bucket, HOSPITAL, 'real-1', [
      { id: 'B40f', slices: shuffled },
    ]);
    const response = await handler(sqsEvent([eventBody]));
    expect(response.batchItemFailures).toEqual([]);

    const study = await store.getStudy(HOSPITAL, 'real-1');
    expect(study?.status).toBe('CLASSIFYING');
    expect(study?.enqueued).toBe(true);
    const core = await selectStudy(B40F);
    const coreSeries = core.series[0]!;
    const series = study?.series?.[0];
    expect(series?.status).toBe('SELECTED');
    expect(series?.slices.map((s) => s.key.split('/').pop())).toEqual(coreSeries.slices.map((s) => s.file));
    expect(series?.slices.map((s) => s.darkPixels)).toEqual(coreSeries.slices.map((s) => s.darkPixels));
    expect(series?.slices.map((s) => s.selected)).toEqual(coreSeries.slices.map((s) => s.selected));
    expect(study?.selectedCount).toBe(coreSeries.selectedCount);
    expect(study?.expectedVotes).toBe(coreSeries.selectedCount);
    expect(coreSeries.selectedCount).toBeGreaterThan(0);

    const messages = (await drainQueue(stack.clients.sqs, config.inferenceQueueUrl)).map(
      parseInferenceMessage,
    );
    const queued = messages.flatMap((m) => m.slices.map((s) => s.key)).sort();
    const selected = series!.slices
      .filter((s) => s.selected)
      .map((s) => s.key)
      .sort();
    expect(queued).toEqual(selected);
    expect(messages.every((m) => m.slices.length <= 8 && m.seriesId === 'B40f' && m.threshold === 0.3)).toBe(
      true,
    );

    // The same manifest event again (S3 and SQS both repeat): nothing changes, nothing is queued.
    const again = await handler(sqsEvent([eventBody, eventBody]));
    expect(again.batchItemFailures).toEqual([]);
    expect(await store.getStudy(HOSPITAL, 'real-1')).toEqual(study);
    expect(await drainQueue(stack.clients.sqs, config.inferenceQueueUrl)).toEqual([]);
  });

  it('ends an invalid manifest FAILED with a one-line reason naming the field, without retry', async () => {
    await newStudy('bad-manifest');
    const other = {
      version: 1,
      studyId: 'bad-manifest',
      series: [
        { id: 's', slices: [{ key: 'incoming/hospital-b/x/s/1.tif', sha256: 'a'.repeat(64), size: 10 }] },
      ],
    };
    const { eventBody } = await uploadStudy(stack.clients, config.bucket, HOSPITAL, 'bad-manifest', [], {
      manifest: other,
    });
    const response = await handler(sqsEvent([eventBody]));
    expect(response.batchItemFailures).toEqual([]);
    const study = await store.getStudy(HOSPITAL, 'bad-manifest');
    expect(study?.status).toBe('FAILED');
    expect(study?.reason).toBe(
      "manifest.series[0].slices[0].key: 'incoming/hospital-b/x/s/1.tif' is not an object under incoming/hospital-a/bad-manifest/",
    );
    expect(study?.notified).toBe(true);

    await newStudy('not-json');
    const notJson = await uploadStudy(stack.clients, config.bucket, HOSPITAL, 'not-json', [], {
      manifest: 'nope',
    });
    await handler(sqsEvent([notJson.eventBody]));
    expect((await store.getStudy(HOSPITAL, 'not-json'))?.reason).toBe(
      'manifest: expected { version: 1, studyId, series, settings? }',
    );
  });

  it('fails a series with a corrupt or altered slice, and the study when nothing is left', async () => {
    const good = b40f.slice(10, 14);
    const corrupt = { name: '1-99.tif', bytes: new Uint8Array(2000).fill(7) };
    await newStudy('corrupt');
    const { eventBody } = await uploadStudy(stack.clients, config.bucket, HOSPITAL, 'corrupt', [
      { id: 'ok', slices: good },
      { id: 'broken', slices: [...good, corrupt] },
    ]);
    expect((await handler(sqsEvent([eventBody]))).batchItemFailures).toEqual([]);
    const study = await store.getStudy(HOSPITAL, 'corrupt');
    expect(study?.status).toBe('CLASSIFYING');
    const broken = study?.series?.find((s) => s.id === 'broken');
    expect(broken?.status).toBe('FAILED');
    expect(broken?.reason).toMatch(
      /^incoming\/hospital-a\/corrupt\/broken\/1-99\.tif: not a TIFF or DICOM file/,
    );
    const queued = (await drainQueue(stack.clients.sqs, config.inferenceQueueUrl)).map(parseInferenceMessage);
    expect(new Set(queued.map((m) => m.seriesId))).toEqual(new Set(['ok']));

    await newStudy('all-corrupt');
    const only = await uploadStudy(stack.clients, config.bucket, HOSPITAL, 'all-corrupt', [
      { id: 'broken', slices: [corrupt] },
    ]);
    expect((await handler(sqsEvent([only.eventBody]))).batchItemFailures).toEqual([]);
    const failed = await store.getStudy(HOSPITAL, 'all-corrupt');
    expect(failed?.status).toBe('FAILED');
    expect(failed?.reason).toMatch(
      /^nothing to classify: incoming\/hospital-a\/all-corrupt\/broken\/1-99\.tif: not a TIFF/,
    );

    // Bytes that differ from the manifest's hash or size.
    await newStudy('altered');
    const altered = await uploadStudy(stack.clients, config.bucket, HOSPITAL, 'altered', [
      { id: 's', slices: good },
    ]);
    const manifest = altered.manifest as { series: { slices: { sha256: string; size: number }[] }[] };
    manifest.series[0]!.slices[1]!.sha256 = 'b'.repeat(64);
    const reup = await uploadStudy(stack.clients, config.bucket, HOSPITAL, 'altered', [], { manifest });
    await handler(sqsEvent([reup.eventBody]));
    expect((await store.getStudy(HOSPITAL, 'altered'))?.reason).toBe(
      'nothing to classify: incoming/hospital-a/altered/s/1-12.tif: content does not match the manifest sha256',
    );
    expect(await queueDepth(stack.clients.sqs, stack.resources.queueUrls.ingestDlq)).toBe(0);
  });

  it('ignores test events, foreign keys and studies the API did not create', async () => {
    const logs = quietObservability();
    const quiet = makeSelectHandler(stack.clients, config, logs);
    const test = JSON.stringify({ Service: 'Amazon S3', Event: 's3:TestEvent', Bucket: config.bucket });
    const { eventBody } = await uploadStudy(stack.clients, config.bucket, HOSPITAL, 'never-created', [
      { id: 's', slices: b40f.slice(0, 1) },
    ]);
    const response = await quiet(sqsEvent([test, eventBody, 'not json']));
    expect(response.batchItemFailures).toEqual([]);
    expect(await store.getStudy(HOSPITAL, 'never-created')).toBeUndefined();
    expect(
      logs.lines.some((l) => l.message === 'manifest event ignored' && l.study === 'never-created'),
    ).toBe(true);
  });

  it('fails the record on a transient error and finishes on the retry', async () => {
    await newStudy('retry');
    const { eventBody } = await uploadStudy(stack.clients, config.bucket, HOSPITAL, 'retry', [
      { id: 's', slices: b40f.slice(8, 16) },
    ]);
    const broken = makeSelectHandler(
      stack.clients,
      { ...config, inferenceQueueUrl: `${config.inferenceQueueUrl}-missing` },
      quietObservability(),
    );
    const event = sqsEvent([eventBody]);
    expect((await broken(event)).batchItemFailures).toEqual([
      { itemIdentifier: event.Records[0]!.messageId },
    ]);
    const midway = await store.getStudy(HOSPITAL, 'retry');
    expect(midway?.status).toBe('CLASSIFYING');
    expect(midway?.enqueued).toBe(false);

    expect((await handler(event)).batchItemFailures).toEqual([]);
    const done = await store.getStudy(HOSPITAL, 'retry');
    expect(done?.enqueued).toBe(true);
    const queued = (await drainQueue(stack.clients.sqs, config.inferenceQueueUrl)).map(parseInferenceMessage);
    expect(queued.flatMap((m) => m.slices).length).toBe(done?.selectedCount);
  });
});
