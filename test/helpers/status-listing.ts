/**
 * What the status-listing suites share: studies taken through the store to a status, copies of a
 * study item put in bulk, the raw items, a counting document client, and a median timing.
 */
import { BatchWriteCommand, type DynamoDBDocumentClient, GetCommand } from '@aws-sdk/lib-dynamodb';
import { expect } from 'vitest';
import type { IntendedUse } from '../../core/intended-use.js';
import type { StudyStatus, StudyStore } from '../../pipeline/index.js';
import { TABLE } from '../../pipeline/index.js';
import type { LocalTestStack } from './local-stack.js';

/** A document client that counts the items its queries read (ScannedCount, before any filter). */
export function counting(dynamo: DynamoDBDocumentClient): {
  client: DynamoDBDocumentClient;
  scanned: () => number;
} {
  let scanned = 0;
  const client = {
    async send(command: Parameters<DynamoDBDocumentClient['send']>[0]) {
      const out = (await dynamo.send(command)) as { ScannedCount?: number };
      scanned += out.ScannedCount ?? 0;
      return out;
    },
  };
  // Only `send` is used by StudyStore; the rest of the client's surface is not needed here.
  return { client: client as unknown as DynamoDBDocumentClient, scanned: () => scanned };
}

/** Raw access to `stack`'s table: a study item as the store wrote it, and items put in bulk. */
export function storeKit(stack: LocalTestStack) {
  /** The raw study item as the store wrote it. */
  async function rawStudy(hospital: string, studyId: string): Promise<Record<string, unknown>> {
    const out = await stack.clients.dynamo.send(
      new GetCommand({ TableName: TABLE.name, Key: { pk: `STUDY#${hospital}#${studyId}`, sk: 'STUDY' } }),
    );
    return out.Item!;
  }

  /** Put `items` with BatchWriteItem, 25 at a time, retrying what the server leaves unprocessed. */
  async function batchPut(items: readonly Record<string, unknown>[]): Promise<void> {
    const batches: Record<string, unknown>[][] = [];
    for (let i = 0; i < items.length; i += 25)
      batches.push(items.slice(i, i + 25) as Record<string, unknown>[]);
    // A few batches in flight: dynalite is single-threaded, more only queue up.
    let next = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < batches.length) {
          let requests = batches[next++]!.map((Item) => ({ PutRequest: { Item } }));
          while (requests.length > 0) {
            const out = await stack.clients.dynamo.send(
              new BatchWriteCommand({ RequestItems: { [TABLE.name]: requests } }),
            );
            requests = (out.UnprocessedItems?.[TABLE.name] ?? []) as typeof requests;
          }
        }
      }),
    );
  }

  return { rawStudy, batchPut };
}

/**
 * Copies of `template` (a study item the store wrote) as studies `from`…`to - 1` of `hospital`,
 * each a second newer than the last; keys and ids rewritten, everything else as the store wrote it.
 */
export function copies(
  template: Record<string, unknown>,
  hospital: string,
  from: number,
  to: number,
  t0: number,
) {
  const items: Record<string, unknown>[] = [];
  for (let n = from; n < to; n++) {
    const studyId = `study-${String(n).padStart(6, '0')}`;
    const at = new Date(t0 + n * 1000).toISOString();
    items.push({
      ...template,
      pk: `STUDY#${hospital}#${studyId}`,
      gsi1sk: `${at}#${studyId}`,
      studyId,
      createdAt: at,
      updatedAt: at,
    });
  }
  return items;
}

/** Median of `runs` timings of `f`, in milliseconds. */
export async function medianMs(runs: number, f: () => Promise<unknown>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await f();
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

/** A study taken through the store to `status` (RECEIVED, FAILED or COMPLETE). */
export async function studyIn(
  store: StudyStore,
  hospital: string,
  studyId: string,
  status: StudyStatus,
  intendedUse?: IntendedUse,
) {
  await store.createStudy({ hospital, studyId, threshold: 0.3 });
  if (status === 'FAILED') {
    expect(await store.failStudy(hospital, studyId, 'nothing to classify: test')).toBe(true);
  } else if (status === 'COMPLETE') {
    expect(await store.beginSelecting(hospital, studyId)).toBe(true);
    const series = [
      {
        id: 's1',
        status: 'SELECTED' as const,
        threshold: 1,
        selectedCount: 1,
        slices: [{ key: `incoming/${hospital}/${studyId}/s1/a.dcm`, darkPixels: 9, selected: true }],
      },
    ];
    expect(await store.recordSelection(hospital, studyId, { series, threshold: 0.3, selectMs: 1 })).toBe(
      true,
    );
    const outcome = { decision: 'normal' as const, covidFraction: 0, covidCount: 0, classifiedCount: 1 };
    expect(
      await store.completeStudy(hospital, studyId, {
        outcome,
        reportKey: `results/${hospital}/${studyId}/r`,
        ...(intendedUse ? { intendedUse } : {}),
      }),
    ).toBe(true);
  }
}
