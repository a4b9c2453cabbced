/**
 * The stuck-study sweeper against the real local DynamoDB and SNS: a study without progress for
 * longer than the timeout ends FAILED with a reason saying where it stopped and how far it got, and
 * is notified once; progress (a recorded vote) or completion meanwhile wins over the sweeper; a
 * finished study whose notification never went out is notified; notified studies leave the index.
 * The clock is injected, so no test waits.
 */
import { ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import { recordVotes } from '../lambdas/aggregate/aggregate.js';
import { makeSweeperHandler, sweeperConfigFromEnv } from '../lambdas/sweeper/handler.js';
import { formatIdle, neverUploadedReason, stalledReason, sweep } from '../lambdas/sweeper/sweeper.js';
import {
  ENV,
  PIPELINE_DEFAULTS,
  parseStudyNotification,
  QUEUES,
  type StoredSeries,
  StudyStore,
} from '../pipeline/index.js';
import { useLocalStack } from './helpers/local-stack.js';
import { quietObservability, subscribeHospitalQueue } from './helpers/pipeline.js';

const stack = useLocalStack();
const MODEL = { id: 'rule@000000000000', sha256: 'f'.repeat(64) };
const MINUTE = 60_000;
const STALLED = 30 * 60;

/**
 * A clock the store and the sweeper share; tests move it on. The tests share the table, so each
 * starts a year before the previous one: the earlier tests' studies are never idle to a later one.
 */
function clock(start: number) {
  let t = start;
  return { now: () => new Date(t), advance: (ms: number) => (t += ms) };
}

/** A series of `n` slices, all selected. */
function series(studyId: string, n: number): StoredSeries {
  return {
    id: 's1',
    status: 'SELECTED',
    threshold: 10,
    selectedCount: n,
    slices: Array.from({ length: n }, (_, i) => ({
      key: `incoming/h/${studyId}/s1/${String(i).padStart(3, '0')}.dcm`,
      darkPixels: 100 + i,
      selected: true,
    })),
  };
}

const vote = (key: string) => ({
  seriesId: 's1',
  key,
  probabilities: [0.9, 0.1] as const,
  label: 'covid' as const,
});

/** A study in CLASSIFYING with `n` selected slices, `votes` of them voted (through the aggregate stage). */
async function classifying(store: StudyStore, hospital: string, studyId: string, n: number, votes: number) {
  await store.createStudy({ hospital, studyId, threshold: 0.5 });
  expect(await store.beginSelecting(hospital, studyId)).toBe(true);
  const s = series(studyId, n);
  expect(await store.recordSelection(hospital, studyId, { series: [s], threshold: 0.5, selectMs: 5 })).toBe(
    true,
  );
  await store.markEnqueued(hospital, studyId);
  if (votes > 0) {
    const recorded = await recordVotes(
      { s3: stack.clients.s3, sns: stack.clients.sns, store, bucket: 'unused', topicArn: 'unused' },
      { hospital, studyId, model: MODEL, votes: s.slices.slice(0, votes).map((x) => vote(x.key)) },
    );
    expect(recorded.recorded).toBe(votes);
  }
}

async function receive(queueUrl: string): Promise<string[]> {
  const out = await stack.clients.sqs.send(
    new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }),
  );
  return (out.Messages ?? []).map((m) => (JSON.parse(m.Body!) as { Message: string }).Message);
}

describe('the stalled reason', () => {
  it('says how long, in which status, and how far the study got', () => {
    expect(formatIdle(45_000)).toBe('45 s');
    expect(formatIdle(61 * MINUTE + 5000)).toBe('61 min');
    expect(formatIdle(185 * MINUTE)).toBe('3 h 5 min');
    expect(stalledReason('CLASSIFYING', 31 * MINUTE, { done: 12, expected: 20 })).toBe(
      'no progress for 31 min in CLASSIFYING: 12 of 20 selected slices classified',
    );
    expect(stalledReason('SELECTING', 90 * MINUTE)).toBe(
      'no progress for 90 min in SELECTING: the selection of slices never finished',
    );
  });

  it('defaults to a timeout longer than a crashed select takes to be retried, and reads the override', () => {
    const ingest = QUEUES.ingest;
    expect(PIPELINE_DEFAULTS.stalledStudySeconds).toBeGreaterThan(
      ingest.visibilityTimeoutSeconds + ingest.consumer.timeoutSeconds,
    );
    const env = { [ENV.table]: 't', [ENV.topicArn]: 'arn:x' };
    expect(sweeperConfigFromEnv(env).stalledSeconds).toBe(PIPELINE_DEFAULTS.stalledStudySeconds);
    expect(sweeperConfigFromEnv({ ...env, [ENV.stalledSeconds]: '90' }).stalledSeconds).toBe(90);
    expect(() => sweeperConfigFromEnv({ ...env, [ENV.stalledSeconds]: '-1' })).toThrow(
      /COVIDCT_STALLED_SECONDS: expected a whole number of seconds/,
    );
  });
});

describe('sweep', () => {
  it('fails a study without progress with its reason, notifies once, and leaves recent and finished ones', async () => {
    const c = clock(Date.parse('2032-01-01T00:00:00.000Z'));
    const store = new StudyStore(stack.clients.dynamo, stack.resources.tableName, c.now);
    const notes = await subscribeHospitalQueue(stack.clients, stack.resources.topicArn, 'sweep-a', 'sweep-a');
    await classifying(store, 'sweep-a', 'stuck', 20, 12);
    await store.createStudy({ hospital: 'sweep-a', studyId: 'selecting', threshold: 0.5 });
    await store.beginSelecting('sweep-a', 'selecting');
    await store.createStudy({ hospital: 'sweep-a', studyId: 'received', threshold: 0.5 });
    c.advance(20 * MINUTE);
    await classifying(store, 'sweep-a', 'recent', 10, 2);
    c.advance(11 * MINUTE);
    // 31 min after the stuck study's last vote, 11 min after the recent one's.
    const deps = {
      store,
      sns: stack.clients.sns,
      topicArn: stack.resources.topicArn,
      stalledSeconds: STALLED,
      now: c.now,
    };
    const result = await sweep(deps);
    expect(result.errors).toEqual([]);
    expect(result.failed).toEqual(
      [
        {
          hospital: 'sweep-a',
          studyId: 'selecting',
          reason: 'no progress for 31 min in SELECTING: the selection of slices never finished',
        },
        {
          hospital: 'sweep-a',
          studyId: 'stuck',
          reason: 'no progress for 31 min in CLASSIFYING: 12 of 20 selected slices classified',
        },
      ].sort(
        (a, b) =>
          result.failed.findIndex((f) => f.studyId === a.studyId) -
          result.failed.findIndex((f) => f.studyId === b.studyId),
      ),
    );
    expect(result.notified).toBe(2);
    const stuck = await store.getStudy('sweep-a', 'stuck');
    expect(stuck).toMatchObject({ status: 'FAILED', notified: true });
    expect(stuck?.reason).toBe('no progress for 31 min in CLASSIFYING: 12 of 20 selected slices classified');
    expect(stuck?.timings.failedAt).toBe(c.now().toISOString());
    expect((await store.getStudy('sweep-a', 'recent'))?.status).toBe('CLASSIFYING');
    expect((await store.getStudy('sweep-a', 'received'))?.status).toBe('RECEIVED');
    const sent = [...(await receive(notes)), ...(await receive(notes))].map((m) => parseStudyNotification(m));
    expect(sent.map((n) => `${n.studyId}:${n.status}`).sort()).toEqual(['selecting:FAILED', 'stuck:FAILED']);
    expect(sent.find((n) => n.studyId === 'stuck')?.reason).toBe(stuck?.reason);

    // The next sweep finds nothing: notified studies left the index; the recent one is not idle yet.
    const again = await sweep(deps);
    expect(again).toMatchObject({ examined: 0, failed: [], notified: 0 });
    expect(await receive(notes)).toEqual([]);
    // A late vote for the failed study is ignored, and does not revive it.
    const late = await recordVotes(
      { s3: stack.clients.s3, sns: stack.clients.sns, store, bucket: 'unused', topicArn: 'unused' },
      {
        hospital: 'sweep-a',
        studyId: 'stuck',
        model: MODEL,
        votes: [vote(series('stuck', 20).slices[19]!.key)],
      },
    );
    expect(late).toMatchObject({ recorded: 0, ignored: 1 });
    expect((await store.getStudy('sweep-a', 'stuck'))?.status).toBe('FAILED');
  });

  it('leaves a study that recorded a vote or completed between the sweeper reading it and failing it', async () => {
    const c = clock(Date.parse('2031-01-01T00:00:00.000Z'));
    const base = new StudyStore(stack.clients.dynamo, stack.resources.tableName, c.now);
    await classifying(base, 'sweep-b', 'voted', 4, 1);
    await classifying(base, 'sweep-b', 'completed', 4, 4);
    c.advance(40 * MINUTE);
    // countVotes runs between the sweeper's read and its conditional transition: the race happens there.
    class RacingStore extends StudyStore {
      override async countVotes(hospital: string, studyId: string): Promise<number> {
        const count = await super.countVotes(hospital, studyId);
        if (studyId === 'voted') {
          c.advance(1000);
          await base.putVote(hospital, studyId, vote(series('voted', 4).slices[1]!.key), MODEL);
          expect(await base.touchProgress(hospital, studyId)).toBe(true);
        } else {
          await base.completeStudy(hospital, studyId, {
            outcome: { decision: 'covid', covidFraction: 1, covidCount: 4, classifiedCount: 4 },
            reportKey: 'results/x',
          });
        }
        return count;
      }
    }
    const racing = new RacingStore(stack.clients.dynamo, stack.resources.tableName, c.now);
    const result = await sweep({
      store: racing,
      sns: stack.clients.sns,
      topicArn: stack.resources.topicArn,
      stalledSeconds: STALLED,
      now: c.now,
    });
    expect(result).toMatchObject({ examined: 2, failed: [], skipped: 2, errors: [] });
    expect((await base.getStudy('sweep-b', 'voted'))?.status).toBe('CLASSIFYING');
    expect(await base.countVotes('sweep-b', 'voted')).toBe(2);
    const completed = await base.getStudy('sweep-b', 'completed');
    expect(completed?.status).toBe('COMPLETE');
    expect(completed?.reason).toBeUndefined();
  });

  it('notifies a finished study whose notification never went out, through the handler', async () => {
    const c = clock(Date.parse('2030-01-01T00:00:00.000Z'));
    const store = new StudyStore(stack.clients.dynamo, stack.resources.tableName, c.now);
    const notes = await subscribeHospitalQueue(stack.clients, stack.resources.topicArn, 'sweep-c', 'sweep-c');
    await classifying(store, 'sweep-c', 'done', 3, 3);
    // Completed, then the aggregate Lambda died before publishing.
    await store.completeStudy('sweep-c', 'done', {
      outcome: { decision: 'covid', covidFraction: 1, covidCount: 3, classifiedCount: 3 },
      reportKey: 'results/sweep-c/done/report.json',
    });
    c.advance(STALLED * 1000 + 1000);
    const observability = quietObservability('covidct-sweeper');
    const handler = makeSweeperHandler(
      stack.clients,
      {
        tableName: stack.resources.tableName,
        topicArn: stack.resources.topicArn,
        stalledSeconds: STALLED,
        neverUploadedSeconds: PIPELINE_DEFAULTS.neverUploadedSeconds,
      },
      observability,
      c.now,
    );
    const result = await handler({});
    expect(result).toMatchObject({ examined: 1, failed: [], notified: 1 });
    const sent = (await receive(notes)).map((m) => parseStudyNotification(m));
    expect(sent).toMatchObject([{ studyId: 'done', status: 'COMPLETE', decision: 'covid' }]);
    expect((await store.getStudy('sweep-c', 'done'))?.notified).toBe(true);
    expect(await handler({})).toMatchObject({ examined: 0, notified: 0 });
    expect(observability.lines.some((l) => l.message === 'sweep')).toBe(true);
  });
});

describe('never uploaded', () => {
  it('fails a study still RECEIVED after its upload URLs expired plus the grace, notifies once', async () => {
    expect(PIPELINE_DEFAULTS.neverUploadedSeconds).toBeGreaterThan(PIPELINE_DEFAULTS.presignSeconds);
    const c = clock(Date.parse('2029-01-01T00:00:00.000Z'));
    const store = new StudyStore(stack.clients.dynamo, stack.resources.tableName, c.now);
    const notes = await subscribeHospitalQueue(stack.clients, stack.resources.topicArn, 'sweep-d', 'sweep-d');
    await store.createStudy({ hospital: 'sweep-d', studyId: 'never', threshold: 0.5 });
    await store.createStudy({ hospital: 'sweep-d', studyId: 'uploaded', threshold: 0.5 });
    const limitMs = PIPELINE_DEFAULTS.neverUploadedSeconds * 1000;
    // Uploaded just before the deadline: its manifest started it (SELECTING, then CLASSIFYING).
    c.advance(limitMs - MINUTE);
    await store.beginSelecting('sweep-d', 'uploaded');
    const deps = {
      store,
      sns: stack.clients.sns,
      topicArn: stack.resources.topicArn,
      // Longer than the never-uploaded deadline here, so only that deadline can fail a study.
      stalledSeconds: PIPELINE_DEFAULTS.neverUploadedSeconds * 2,
      now: c.now,
    };
    // Within the deadline: nothing happens.
    expect(await sweep(deps)).toMatchObject({ examined: 0, failed: [], notified: 0 });
    expect((await store.getStudy('sweep-d', 'never'))?.status).toBe('RECEIVED');

    c.advance(2 * MINUTE);
    const result = await sweep(deps);
    expect(result.errors).toEqual([]);
    expect(result.failed).toEqual([
      {
        hospital: 'sweep-d',
        studyId: 'never',
        reason: neverUploadedReason(limitMs + MINUTE),
      },
    ]);
    expect(result.failed[0]?.reason).toMatch(/^never uploaded: no manifest arrived in the 76 min since/);
    expect(result.notified).toBe(1);
    const never = await store.getStudy('sweep-d', 'never');
    expect(never).toMatchObject({ status: 'FAILED', notified: true, reason: result.failed[0]?.reason });
    expect((await store.getStudy('sweep-d', 'uploaded'))?.status).toBe('SELECTING');
    const sent = (await receive(notes)).map((m) => parseStudyNotification(m));
    expect(sent).toMatchObject([{ studyId: 'never', status: 'FAILED', reason: never?.reason }]);

    // Once: the next sweep finds nothing to fail or notify, and a manifest arriving now changes nothing.
    c.advance(10 * MINUTE);
    expect(await sweep(deps)).toMatchObject({ failed: [], notified: 0 });
    expect(await store.beginSelecting('sweep-d', 'never')).toBe(false);
    expect(await receive(notes)).toEqual([]);
  });

  it('reads its deadline from COVIDCT_NEVER_UPLOADED_SECONDS, through the handler', async () => {
    const env = { [ENV.table]: 't', [ENV.topicArn]: 'arn:x' };
    expect(sweeperConfigFromEnv(env).neverUploadedSeconds).toBe(PIPELINE_DEFAULTS.neverUploadedSeconds);
    expect(sweeperConfigFromEnv({ ...env, [ENV.neverUploadedSeconds]: '60' }).neverUploadedSeconds).toBe(60);
    expect(() => sweeperConfigFromEnv({ ...env, [ENV.neverUploadedSeconds]: '0' })).toThrow(
      /COVIDCT_NEVER_UPLOADED_SECONDS: expected a whole number of seconds/,
    );
    const c = clock(Date.parse('2028-01-01T00:00:00.000Z'));
    const store = new StudyStore(stack.clients.dynamo, stack.resources.tableName, c.now);
    await store.createStudy({ hospital: 'sweep-e', studyId: 'short', threshold: 0.5 });
    c.advance(61_000);
    const handler = makeSweeperHandler(
      stack.clients,
      sweeperConfigFromEnv({
        [ENV.table]: stack.resources.tableName,
        [ENV.topicArn]: stack.resources.topicArn,
        [ENV.neverUploadedSeconds]: '60',
      }),
      quietObservability('covidct-sweeper'),
      c.now,
    );
    const result = await handler({});
    expect(result.failed.map((f) => f.studyId)).toEqual(['short']);
    expect((await store.getStudy('sweep-e', 'short'))?.reason).toBe(neverUploadedReason(61_000));
  });
});
