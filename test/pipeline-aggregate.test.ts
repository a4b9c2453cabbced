/**
 * The aggregate Lambda against the local servers through the real SDK: each vote counted once
 * under duplicate and concurrent deliveries, the decision taken from the stored votes, the report
 * written, the study completed once and exactly one SNS message received on a queue subscribed
 * with the hospital's filter policy (none on another hospital's); a publish that fails is
 * retried by the redelivery; a crashed claim goes stale.
 */
import { createHash } from 'node:crypto';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { beforeAll, describe, expect, it } from 'vitest';
import { UNDECLARED_INTENDED_USE } from '../core/intended-use.js';
import { makeAggregateHandler } from '../lambdas/aggregate/handler.js';
import {
  parseStudyNotification,
  reportKey,
  type SliceVote,
  type StoredSeries,
  StudyStore,
  sliceKey,
  TOPIC,
  type VotesMessage,
} from '../pipeline/index.js';
import { useLocalStack } from './helpers/local-stack.js';
import { quietObservability, sqsEvent, subscribeHospitalQueue, uploadStudy } from './helpers/pipeline.js';
import { body, MODEL, votesFor } from './helpers/votes.js';

const stack = useLocalStack();
let store: StudyStore;
let aggregate: ReturnType<typeof makeAggregateHandler>;
const subscribed: Record<string, string> = {};

beforeAll(async () => {
  store = new StudyStore(stack.clients.dynamo, stack.resources.tableName);
  aggregate = makeAggregateHandler(
    stack.clients,
    {
      bucket: stack.resources.bucket,
      tableName: stack.resources.tableName,
      topicArn: stack.resources.topicArn,
    },
    quietObservability(),
  );
  // Each hospital subscribes its own queue with a filter policy on the `hospital` attribute.
  for (const hospital of ['hospital-a', 'hospital-b']) {
    const url = await subscribeHospitalQueue(
      stack.clients,
      stack.resources.topicArn,
      `results-${hospital}`,
      hospital,
    );
    subscribed[hospital] = url;
  }
});

/** Receive everything that arrives on a queue within `ms`. */
async function receiveAll(url: string, ms = 400): Promise<string[]> {
  const bodies: string[] = [];
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const out = await stack.clients.sqs.send(
      new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }),
    );
    for (const m of out.Messages ?? []) bodies.push(m.Body ?? '');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return bodies;
}

/**
 * A study in CLASSIFYING: series of (selected flags), plus a failed series; recorded as the select
 * Lambda records it, with each slice's hash and length and the manifest's hash.
 */
async function classifyingStudy(
  hospital: string,
  studyId: string,
  flags: Record<string, boolean[]>,
  threshold = 0.3,
): Promise<StoredSeries[]> {
  const upload = Object.entries(flags).map(([id, f]) => ({
    id,
    slices: f.map((_, i) => ({ name: `${i + 1}.dcm`, bytes: new Uint8Array([i, 1, 2, 3]) })),
  }));
  const { manifest } = await uploadStudy(stack.clients, stack.resources.bucket, hospital, studyId, upload);
  const inputs = {
    manifestSha256: createHash('sha256').update(JSON.stringify(manifest)).digest('hex'),
    slices: upload.reduce((sum, s) => sum + s.slices.length, 0),
  };
  const bytesOf = new Map(upload.flatMap((s) => s.slices.map((sl) => [`${s.id}/${sl.name}`, sl.bytes])));
  await store.createStudy({ hospital, studyId, threshold });
  expect(await store.beginSelecting(hospital, studyId)).toBe(true);
  const series: StoredSeries[] = Object.entries(flags).map(([id, f]) => ({
    id,
    status: 'SELECTED',
    threshold: 1000,
    selectedCount: f.filter(Boolean).length,
    slices: f.map((selected, i) => {
      const bytes = bytesOf.get(`${id}/${i + 1}.dcm`)!;
      return {
        key: sliceKey(hospital, studyId, id, `${i + 1}.dcm`),
        darkPixels: 100 * i,
        selected,
        sha256: createHash('sha256').update(bytes).digest('hex'),
        size: bytes.length,
      };
    }),
  }));
  series.push({
    id: 'bad',
    status: 'FAILED',
    reason: 'incoming/x: not a TIFF',
    threshold: null,
    selectedCount: 0,
    slices: [],
  });
  expect(await store.recordSelection(hospital, studyId, { series, threshold, selectMs: 12, inputs })).toBe(
    true,
  );
  await store.markEnqueued(hospital, studyId);
  return series;
}

describe('aggregate Lambda', () => {
  it('counts each vote once, completes once and publishes one filtered notification', async () => {
    const h = 'hospital-a';
    const series = await classifyingStudy(h, 'agg-1', {
      s1: [false, true, true, true, true, true, false],
      s2: [true, true, true, false],
    });
    const votes = votesFor(h, 'agg-1', series, (i) => i % 2 === 0); // 4 COVID of 8
    const first = body(h, 'agg-1', votes.slice(0, 5));
    const second = body(h, 'agg-1', votes.slice(5));
    const stray = body(h, 'agg-1', [{ ...votes[0]!, key: sliceKey(h, 'agg-1', 's1', '1.dcm') }]); // not selected

    expect((await aggregate(sqsEvent([first, first, stray]))).batchItemFailures).toEqual([]);
    expect(await store.countVotes(h, 'agg-1')).toBe(5);
    expect((await store.getStudy(h, 'agg-1'))?.status).toBe('CLASSIFYING');

    // The last votes arrive twice at once, in two concurrent invocations, with a repeat of the first.
    const results = await Promise.all([aggregate(sqsEvent([second, first])), aggregate(sqsEvent([second]))]);
    expect(results.flatMap((r) => r.batchItemFailures)).toEqual([]);
    expect(await store.countVotes(h, 'agg-1')).toBe(8);
    const study = await store.getStudy(h, 'agg-1');
    expect(study?.status).toBe('COMPLETE');
    expect(study?.notified).toBe(true);
    expect(study?.outcome).toEqual({
      decision: 'covid',
      covidFraction: 0.5,
      covidCount: 4,
      classifiedCount: 8,
    });
    expect(study?.model).toEqual(MODEL);
    // Votes from a worker that reported no intended use: the decision counts as not diagnostic.
    expect(study?.intendedUse).toEqual(UNDECLARED_INTENDED_USE);

    const report = JSON.parse(
      await (
        await stack.clients.s3.send(
          new GetObjectCommand({ Bucket: stack.resources.bucket, Key: reportKey(h, 'agg-1') }),
        )
      ).Body!.transformToString(),
    );
    expect(report).toMatchObject({
      decision: 'covid',
      covidCount: 4,
      classifiedCount: 8,
      selectedCount: 8,
      threshold: 0.3,
    });
    expect(report.model).toEqual({ ...MODEL, intendedUse: UNDECLARED_INTENDED_USE, votes: 8 });
    expect(report.intendedUse).toEqual(UNDECLARED_INTENDED_USE);
    expect(report.series.map((s: { id: string; status: string }) => `${s.id}:${s.status}`)).toEqual([
      's1:SELECTED',
      's2:SELECTED',
      'bad:FAILED',
    ]);
    expect(report.series[1].decision).toBe('covid'); // s2's votes are indices 5..7: covid, normal, covid
    expect(report.series[0].slices[0]).toMatchObject({ darkPixels: 0, selected: false, size: 4 });
    expect(report.series[0].slices[0].sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(report.series[0].slices[1].vote).toMatchObject({ label: 'covid', modelId: MODEL.id });
    expect(report.inputs.slices).toBe(11);
    expect(report.timings.selectMs).toBe(12);
    expect(report.timings.totalMs).toBeGreaterThanOrEqual(0);

    const received = await receiveAll(subscribed[h]!);
    expect(received).toHaveLength(1);
    const envelope = JSON.parse(received[0]!);
    expect(envelope.MessageAttributes?.[TOPIC.hospitalAttribute]?.Value).toBe(h);
    expect(parseStudyNotification(envelope.Message)).toMatchObject({
      hospital: h,
      studyId: 'agg-1',
      status: 'COMPLETE',
      decision: 'covid',
      covidFraction: 0.5,
      reportKey: reportKey(h, 'agg-1'),
      intendedUse: UNDECLARED_INTENDED_USE,
      model: MODEL,
    });
    expect(await receiveAll(subscribed['hospital-b']!)).toEqual([]);

    // Everything again after completion: nothing changes, nothing is published.
    expect((await aggregate(sqsEvent([first, second]))).batchItemFailures).toEqual([]);
    expect(await store.countVotes(h, 'agg-1')).toBe(8);
    expect(await receiveAll(subscribed[h]!)).toEqual([]);
  });

  it('decides normal from the stored votes and notifies only its own hospital', async () => {
    const h = 'hospital-b';
    const series = await classifyingStudy(h, 'agg-2', { s: [true, true, true, true] });
    const votes = votesFor(h, 'agg-2', series, (i) => i === 0); // 1 of 4 = 0.25 < 0.3
    expect((await aggregate(sqsEvent([body(h, 'agg-2', votes)]))).batchItemFailures).toEqual([]);
    expect((await store.getStudy(h, 'agg-2'))?.outcome?.decision).toBe('normal');
    const received = await receiveAll(subscribed[h]!);
    expect(received.map((r) => parseStudyNotification(JSON.parse(r).Message).decision)).toEqual(['normal']);
    expect(await receiveAll(subscribed['hospital-a']!)).toEqual([]);
  });

  it('publishes on the redelivery when the publish failed after COMPLETE', async () => {
    const h = 'hospital-a';
    const series = await classifyingStudy(h, 'agg-3', { s: [true, true] });
    const message = body(
      h,
      'agg-3',
      votesFor(h, 'agg-3', series, () => true),
    );
    const broken = makeAggregateHandler(
      stack.clients,
      {
        bucket: stack.resources.bucket,
        tableName: stack.resources.tableName,
        topicArn: `${stack.resources.topicArn}-missing`,
      },
      quietObservability(),
    );
    const event = sqsEvent([message]);
    expect((await broken(event)).batchItemFailures).toEqual([
      { itemIdentifier: event.Records[0]!.messageId },
    ]);
    const midway = await store.getStudy(h, 'agg-3');
    expect(midway?.status).toBe('COMPLETE');
    expect(midway?.notified).toBe(false);

    expect((await aggregate(event)).batchItemFailures).toEqual([]);
    expect((await store.getStudy(h, 'agg-3'))?.notified).toBe(true);
    expect(await receiveAll(subscribed[h]!)).toHaveLength(1);
  });

  it('lets only a stale notification claim be taken over', async () => {
    const h = 'hospital-a';
    const series = await classifyingStudy(h, 'agg-4', { s: [true] });
    await store.putVote(h, 'agg-4', votesFor(h, 'agg-4', series, () => false)[0]!, MODEL);
    await store.completeStudy(h, 'agg-4', {
      outcome: { decision: 'normal', covidFraction: 0, covidCount: 0, classifiedCount: 1 },
      reportKey: reportKey(h, 'agg-4'),
    });
    expect(await store.claimNotification(h, 'agg-4', 360)).toBe(true); // then the claimant "crashes"
    expect(await store.claimNotification(h, 'agg-4', 360)).toBe(false);
    const later = new StudyStore(
      stack.clients.dynamo,
      stack.resources.tableName,
      () => new Date(Date.now() + 400_000),
    );
    expect(await later.claimNotification(h, 'agg-4', 360)).toBe(true);
    await later.markNotified(h, 'agg-4');
    const muchLater = new StudyStore(
      stack.clients.dynamo,
      stack.resources.tableName,
      () => new Date(Date.now() + 9e6),
    );
    expect(await muchLater.claimNotification(h, 'agg-4', 360)).toBe(false);
  });

  it('completes from the voted slices when one slice failed, and lists the failure in the report', async () => {
    const h = 'hospital-a';
    const series = await classifyingStudy(h, 'agg-part', { s: [true, true, true, true] });
    const votes = votesFor(h, 'agg-part', series, (i) => i === 0);
    const failed = votes[3]!;
    const failure = {
      seriesId: failed.seriesId,
      key: failed.key,
      reason: `${failed.key}: sha256 does not match the manifest`,
    };
    const message: VotesMessage = {
      hospital: h,
      studyId: 'agg-part',
      model: MODEL,
      votes: votes.slice(0, 3),
      failures: [failure],
    };
    expect((await aggregate(sqsEvent([JSON.stringify(message)]))).batchItemFailures).toEqual([]);
    expect(await store.countVotes(h, 'agg-part')).toBe(4);
    expect(await store.listVotes(h, 'agg-part')).toHaveLength(3);
    const study = await store.getStudy(h, 'agg-part');
    expect(study?.status).toBe('COMPLETE');
    // 1 COVID of the 3 classified = 0.33 ≥ 0.3: the failed slice is not in the vote.
    expect(study?.outcome).toEqual({
      decision: 'covid',
      covidFraction: 1 / 3,
      covidCount: 1,
      classifiedCount: 3,
    });
    const report = JSON.parse(
      await (
        await stack.clients.s3.send(
          new GetObjectCommand({ Bucket: stack.resources.bucket, Key: reportKey(h, 'agg-part') }),
        )
      ).Body!.transformToString(),
    );
    expect(report).toMatchObject({ classifiedCount: 3, selectedCount: 4, failedCount: 1 });
    expect(report.failures).toEqual([failure]);
    expect(report.series[0].slices[3]).toMatchObject({ failure: { reason: failure.reason } });
    expect(report.series[0].slices[3].vote).toBeUndefined();
    const received = await receiveAll(subscribed[h]!);
    expect(received.map((r) => parseStudyNotification(JSON.parse(r).Message))).toMatchObject([
      { status: 'COMPLETE', decision: 'covid', classifiedCount: 3, selectedCount: 4 },
    ]);
  });

  it('fails a study none of whose slices could be classified; a repeated failure is a no-op', async () => {
    const h = 'hospital-a';
    const series = await classifyingStudy(h, 'agg-none', { s: [true, true] });
    const failures = series[0]!.slices.map((sl, i) => ({
      seriesId: 's',
      key: sl.key,
      reason: `${sl.key}: not decodable (${i})`,
    }));
    const first: VotesMessage = {
      hospital: h,
      studyId: 'agg-none',
      model: MODEL,
      votes: [],
      failures: [failures[0]!],
    };
    const second: VotesMessage = { ...first, failures: [failures[1]!] };
    expect(
      (await aggregate(sqsEvent([JSON.stringify(first), JSON.stringify(first)]))).batchItemFailures,
    ).toEqual([]);
    expect(await store.countVotes(h, 'agg-none')).toBe(1);
    expect((await store.getStudy(h, 'agg-none'))?.status).toBe('CLASSIFYING');
    // A vote for an already failed slice is a duplicate too: a slice is voted or failed, once.
    const lateVote = votesFor(h, 'agg-none', series, () => true)[0]!;
    expect((await aggregate(sqsEvent([body(h, 'agg-none', [lateVote])]))).batchItemFailures).toEqual([]);
    expect(await store.countVotes(h, 'agg-none')).toBe(1);
    expect(await store.listVotes(h, 'agg-none')).toEqual([]);

    expect((await aggregate(sqsEvent([JSON.stringify(second)]))).batchItemFailures).toEqual([]);
    const study = await store.getStudy(h, 'agg-none');
    expect(study?.status).toBe('FAILED');
    expect(study?.reason).toBe(`no slice could be classified: ${failures[0]!.reason}`);
    expect(study?.notified).toBe(true);
    const received = await receiveAll(subscribed[h]!);
    expect(received.map((r) => parseStudyNotification(JSON.parse(r).Message))).toMatchObject([
      { status: 'FAILED', reason: study?.reason, decision: null, classifiedCount: 0 },
    ]);
    // Redelivered after FAILED: nothing recorded, nothing published.
    expect(
      (await aggregate(sqsEvent([JSON.stringify(second), JSON.stringify(first)]))).batchItemFailures,
    ).toEqual([]);
    expect(await store.countVotes(h, 'agg-none')).toBe(2);
    expect(await receiveAll(subscribed[h]!)).toEqual([]);
  });

  it('consumes malformed messages and ignores votes of unknown or failed studies', async () => {
    const logs = quietObservability();
    const quiet = makeAggregateHandler(
      stack.clients,
      {
        bucket: stack.resources.bucket,
        tableName: stack.resources.tableName,
        topicArn: stack.resources.topicArn,
      },
      logs,
    );
    await store.createStudy({ hospital: 'hospital-a', studyId: 'agg-failed', threshold: 0.3 });
    await store.failStudy('hospital-a', 'agg-failed', 'manifest: bad');
    const vote: SliceVote = {
      seriesId: 's',
      key: sliceKey('hospital-a', 'agg-failed', 's', '1.dcm'),
      probabilities: [0.9, 0.1],
      label: 'covid',
    };
    const response = await quiet(
      sqsEvent(['{', JSON.stringify({ hospital: 'hospital-a' }), body('hospital-a', 'agg-failed', [vote])]),
    );
    expect(response.batchItemFailures).toEqual([]);
    expect(await store.countVotes('hospital-a', 'agg-failed')).toBe(0);
    const errors = logs.lines
      .filter((l) => l.message === 'votes message rejected')
      .map((l) => String(l.error));
    expect(errors).toHaveLength(2);
    expect(errors[0]).toMatch(/^votes: is not JSON \(/);
    expect(errors[1]).toBe('votes.studyId: is missing');
  });
});
