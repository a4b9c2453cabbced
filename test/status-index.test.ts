/**
 * The status index (TABLE.byStatusIndex) against the real local DynamoDB (dynalite) through the
 * real SDK: every transition moves the index key with the status, pages and cursors keep to one
 * hospital and one status, studies written before the index are backfilled.
 */
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { describe, expect, it } from 'vitest';
import { httpStatusOf } from '../lambdas/api/handler.js';
import { CursorError, type StudyStatus, StudyStore, TABLE } from '../pipeline/index.js';
import { useLocalStack } from './helpers/local-stack.js';
import { storeKit, studyIn } from './helpers/status-listing.js';

const stack = useLocalStack();

const { rawStudy } = storeKit(stack);

describe('the status index', () => {
  it('moves with every transition, pages with a cursor for one hospital and one status only', async () => {
    let t = Date.parse('2021-01-01T00:00:00Z');
    const tick = () => {
      t += 1000; // each write a second after the last: a well-defined newest-first order
      return new Date(t);
    };
    const store = new StudyStore(stack.clients.dynamo, TABLE.name, tick);
    const h = 'paging-hospital';
    const ids = async (status: StudyStatus, limit = 100, cursor?: string) => {
      const page = await store.listStudies(h, { status, limit, ...(cursor ? { cursor } : {}) });
      return { ids: page.studies.map((s) => s.studyId), cursor: page.cursor };
    };
    // One study through every status: it is listed under its current status only.
    await store.createStudy({ hospital: h, studyId: 'walk', threshold: 0.3 });
    expect((await ids('RECEIVED')).ids).toEqual(['walk']);
    await store.beginSelecting(h, 'walk');
    expect((await ids('RECEIVED')).ids).toEqual([]);
    expect((await ids('SELECTING')).ids).toEqual(['walk']);
    const series = [
      {
        id: 's1',
        status: 'SELECTED' as const,
        threshold: 1,
        selectedCount: 1,
        slices: [{ key: `incoming/${h}/walk/s1/a.dcm`, darkPixels: 9, selected: true }],
      },
    ];
    await store.recordSelection(h, 'walk', { series, threshold: 0.3, selectMs: 1 });
    expect((await ids('SELECTING')).ids).toEqual([]);
    expect((await ids('CLASSIFYING')).ids).toEqual(['walk']);
    const outcome = { decision: 'covid' as const, covidFraction: 1, covidCount: 1, classifiedCount: 1 };
    await store.completeStudy(h, 'walk', { outcome, reportKey: 'results/x' });
    expect((await ids('CLASSIFYING')).ids).toEqual([]);
    expect((await ids('COMPLETE')).ids).toEqual(['walk']);
    // The sweeper's transition too.
    await store.createStudy({ hospital: h, studyId: 'stalled', threshold: 0.3 });
    const seen = (await store.getStudy(h, 'stalled'))!;
    expect(await store.failStalledStudy(h, 'stalled', seen, 'stalled: test')).toBe(true);
    expect((await ids('RECEIVED')).ids).toEqual([]);
    expect((await ids('FAILED')).ids).toEqual(['stalled']);

    // Five more COMPLETE studies; pages of two, newest first, then the last page has no cursor.
    for (let i = 1; i <= 5; i++) await studyIn(store, h, `done-${i}`, 'COMPLETE');
    const first = await ids('COMPLETE', 2);
    expect(first.ids).toEqual(['done-5', 'done-4']);
    const second = await ids('COMPLETE', 2, first.cursor);
    expect(second.ids).toEqual(['done-3', 'done-2']);
    const third = await ids('COMPLETE', 2, second.cursor);
    expect(third.ids).toEqual(['done-1', 'walk']);
    const last = await ids('COMPLETE', 2, third.cursor);
    expect(last).toEqual({ ids: [], cursor: undefined });

    // A cursor is for its hospital and its listing: not another hospital's, not another status's,
    // not the unfiltered listing's (and the unfiltered listing's cursor is not a status cursor).
    const refuse = async (p: Promise<unknown>) => {
      const error = await p.then(
        () => undefined,
        (e: unknown) => e,
      );
      // The store throws its domain error; the api Lambda answers it with a 400.
      expect(error).toBeInstanceOf(CursorError);
      expect(httpStatusOf(error)).toBe(400);
    };
    await refuse(
      store.listStudies('other-hospital', { status: 'COMPLETE', limit: 2, cursor: first.cursor! }),
    );
    await refuse(store.listStudies(h, { status: 'FAILED', limit: 2, cursor: first.cursor! }));
    await refuse(store.listStudies(h, { limit: 2, cursor: first.cursor! }));
    const unfiltered = await store.listStudies(h, { limit: 1 });
    await refuse(store.listStudies(h, { status: 'COMPLETE', limit: 2, cursor: unfiltered.cursor! }));
  });

  it('backfills studies written before the index; a transition meanwhile keeps its own key', async () => {
    const store = new StudyStore(stack.clients.dynamo, TABLE.name);
    const h = 'legacy-hospital';
    await studyIn(store, h, 'old-complete', 'COMPLETE');
    await studyIn(store, h, 'old-received', 'RECEIVED');
    // As written before the index existed: no gsi3pk.
    for (const id of ['old-complete', 'old-received']) {
      await stack.clients.dynamo.send(
        new UpdateCommand({
          TableName: TABLE.name,
          Key: { pk: `STUDY#${h}#${id}`, sk: 'STUDY' },
          UpdateExpression: 'REMOVE gsi3pk',
        }),
      );
    }
    const listed = async (status: StudyStatus) =>
      (await store.listStudies(h, { status, limit: 10 })).studies.map((s) => s.studyId);
    expect(await listed('COMPLETE')).toEqual([]);
    // The RECEIVED one moves on before the backfill: its transition writes the key itself.
    expect(await store.beginSelecting(h, 'old-received')).toBe(true);
    expect(await store.backfillStatusIndex()).toBe(1);
    expect(await listed('COMPLETE')).toEqual(['old-complete']);
    expect(await listed('SELECTING')).toEqual(['old-received']);
    expect(await listed('RECEIVED')).toEqual([]);
    expect(await store.backfillStatusIndex()).toBe(0);
    expect((await rawStudy(h, 'old-complete')).gsi3pk).toBe(`HOSPITAL#${h}#COMPLETE`);
  });
});
