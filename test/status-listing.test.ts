/**
 * `GET /studies?status=…` reads the status index (TABLE.byStatusIndex), not the hospital's whole
 * history through a filter (issue 14, section 4): against the real local DynamoDB (dynalite) through
 * the real SDK. A hospital whose only COMPLETE study is its oldest, under thousands of newer FAILED
 * ones, is listed with `status=COMPLETE&limit=1` reading one item, in the same time at 100 studies
 * as at 10,000 (the filter paged through all of them: 1.2 s at 460 studies, past API Gateway's 29 s
 * around 10,000). Also: every transition moves the index key with the status, pages and cursors
 * keep to one hospital and one status, studies written before the index are backfilled, and a
 * local data folder from before the index is rebuilt around its items.
 *
 * The studies beyond the first few are copies of an item the store itself wrote, put with
 * BatchWriteItem for speed (10,000 in a few seconds). For contrast the test also runs the query the
 * listing made before the index (a status filter over the hospital's listing, one item per request):
 * at 100 studies in `npm test`, at 10,000 too under COVIDCT_LONG=1 (it takes tens of seconds).
 */
import { QueryCommand } from '@aws-sdk/lib-dynamodb';
import { describe, expect, it } from 'vitest';
import { UNDECLARED_INTENDED_USE } from '../core/intended-use.js';
import { listStudies as listStudiesRoute } from '../lambdas/api/api.js';
import { StudyStore, TABLE } from '../pipeline/index.js';
import { useLocalStack } from './helpers/local-stack.js';
import { copies, counting, medianMs, storeKit, studyIn } from './helpers/status-listing.js';

const stack = useLocalStack();

const LONG = process.env.COVIDCT_LONG === '1';
const SMALL = 100;
const LARGE = 10_000;

const { rawStudy, batchPut } = storeKit(stack);

describe('GET /studies?status=COMPLETE&limit=1', () => {
  it(`reads one item and takes the same time at ${SMALL} and at ${LARGE.toLocaleString('en')} studies`, {
    timeout: LONG ? 300_000 : 90_000,
  }, async () => {
    const hospital = 'big-hospital';
    const t0 = Date.parse('2020-01-01T00:00:00Z');
    let t = t0;
    const store = new StudyStore(stack.clients.dynamo, TABLE.name, () => new Date(t));
    // The oldest study is the only COMPLETE one; a FAILED study (written by the store) is the template.
    await studyIn(store, hospital, 'study-000000', 'COMPLETE');
    t += 1000;
    await studyIn(store, hospital, 'study-000001', 'FAILED');
    const template = await rawStudy(hospital, 'study-000001');
    expect(template.status).toBe('FAILED');
    // Another hospital's COMPLETE studies are in the same table and never in this listing.
    await studyIn(store, 'other-hospital', 'other-1', 'COMPLETE');

    const counted = counting(stack.clients.dynamo);
    const deps = {
      s3: stack.clients.s3,
      presigner: stack.clients.s3,
      store: new StudyStore(counted.client, TABLE.name),
      bucket: stack.resources.bucket,
      defaultThreshold: 0.3,
    };
    const list = () => listStudiesRoute(deps, hospital, { status: 'COMPLETE', limit: '1' });
    const check = async () => {
      const before = counted.scanned();
      const res = await list();
      const body = res.body as { studies: { studyId: string; status: string }[]; cursor?: string };
      expect(body.studies).toEqual([
        expect.objectContaining({ studyId: 'study-000000', status: 'COMPLETE' }),
      ]);
      return counted.scanned() - before;
    };

    await batchPut(copies(template, hospital, 2, SMALL, t0));
    expect(await check()).toBeLessThanOrEqual(1);
    await list(); // warm
    const small = await medianMs(15, list);
    const contrastSmall = await filteredListing(hospital);

    const writeStart = performance.now();
    await batchPut(copies(template, hospital, SMALL, LARGE, t0));
    const writeMs = performance.now() - writeStart;
    expect(await check()).toBeLessThanOrEqual(1);
    await list();
    const large = await medianMs(15, list);

    const contrastLarge = LONG ? await filteredListing(hospital) : undefined;

    console.info(
      `status listing: status=COMPLETE&limit=1, median of 15: ${small.toFixed(1)} ms at ${SMALL} studies, ` +
        `${large.toFixed(1)} ms at ${LARGE} (ratio ${(large / small).toFixed(2)}), 1 item read each; ` +
        `the filtered listing it replaces: ${contrastSmall.items} items read in ${contrastSmall.ms.toFixed(0)} ms at ${SMALL}` +
        (contrastLarge
          ? `, ${contrastLarge.items} in ${contrastLarge.ms.toFixed(0)} ms at ${LARGE}`
          : ` (at ${LARGE}: COVIDCT_LONG=1)`) +
        `; ${LARGE - SMALL} items written in ${(writeMs / 1000).toFixed(1)} s`,
    );
    // The contrast is real: the old way reads the whole history.
    expect(contrastSmall.items).toBe(SMALL);
    if (contrastLarge) expect(contrastLarge.items).toBe(LARGE);
    // Flat: a 100× longer history costs no more than noise; 3× leaves room for a loaded machine.
    expect(large / small).toBeLessThan(3);
  });
});

/**
 * What the listing did before the index: the hospital's listing index with a status filter, paging
 * until the page is full, i.e. through every study newer than the one COMPLETE study.
 */
async function filteredListing(hospital: string): Promise<{ items: number; ms: number }> {
  const filterStart = performance.now();
  let filtered = 0;
  let start: Record<string, unknown> | undefined;
  do {
    const out = await stack.clients.dynamo.send(
      new QueryCommand({
        TableName: TABLE.name,
        IndexName: TABLE.byHospitalIndex.name,
        KeyConditionExpression: 'gsi1pk = :h',
        FilterExpression: '#s = :s',
        ExpressionAttributeNames: { '#s': 'status' },
        ExpressionAttributeValues: { ':h': `HOSPITAL#${hospital}`, ':s': 'COMPLETE' },
        ScanIndexForward: false,
        Limit: 1,
        ExclusiveStartKey: start,
      }),
    );
    filtered += out.ScannedCount ?? 0;
    if ((out.Items ?? []).length > 0) break;
    start = out.LastEvaluatedKey;
  } while (start);
  return { items: filtered, ms: performance.now() - filterStart };
}

describe('a listing', () => {
  it("shows each COMPLETE study's intended use, filtered by status or not, as GET /studies/{id} does", async () => {
    const store = new StudyStore(stack.clients.dynamo, TABLE.name);
    const h = 'use-hospital';
    const deps = {
      s3: stack.clients.s3,
      presigner: stack.clients.s3,
      store,
      bucket: stack.resources.bucket,
      defaultThreshold: 0.3,
    };
    const clinical = { diagnostic: true, statement: 'validated on a test set, for diagnostic support' };
    await studyIn(store, h, 'declared', 'COMPLETE', clinical);
    await studyIn(store, h, 'undeclared', 'COMPLETE');
    for (const query of [{ status: 'COMPLETE' }, {}]) {
      const body = (await listStudiesRoute(deps, h, query)).body as {
        studies: { studyId: string; intendedUse?: unknown }[];
      };
      const uses = Object.fromEntries(body.studies.map((s) => [s.studyId, s.intendedUse]));
      expect(uses).toEqual({ declared: clinical, undeclared: UNDECLARED_INTENDED_USE });
    }
  });
});
