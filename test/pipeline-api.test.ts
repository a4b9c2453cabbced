/**
 * The api Lambda against the local servers through the real SDK: API keys (hashed) → hospital,
 * POST /studies with presigned PUT URLs under the hospital's prefix that really upload, status
 * with partial counts, listing with filter and cursor, the report with presigned heatmap links,
 * and tenancy: another hospital's study is a 404 indistinguishable from a missing one.
 */
import { createHash } from 'node:crypto';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { DeleteCommand, ScanCommand } from '@aws-sdk/lib-dynamodb';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { beforeAll, describe, expect, it } from 'vitest';
import { makeApiHandler } from '../lambdas/api/handler.js';
import { ApiKeyStore, hashApiKey, heatmapKey, reportKey, StudyStore, sliceKey } from '../pipeline/index.js';
import { useLocalStack } from './helpers/local-stack.js';
import { quietObservability } from './helpers/pipeline.js';

const stack = useLocalStack();
let store: StudyStore;
let api: ReturnType<typeof makeApiHandler>;
const KEY_A = 'key-of-hospital-a-0123456789';
const KEY_B = 'key-of-hospital-b-0123456789';

beforeAll(async () => {
  store = new StudyStore(stack.clients.dynamo, stack.resources.tableName);
  api = makeApiHandler(
    stack.clients,
    {
      bucket: stack.resources.bucket,
      tableName: stack.resources.tableName,
      apiKeyTableName: stack.resources.apiKeyTableName,
    },
    quietObservability(),
  );
  const keys = new ApiKeyStore(stack.clients.dynamo, stack.resources.apiKeyTableName);
  await keys.put(KEY_A, 'hospital-a');
  await keys.put(KEY_B, 'hospital-b');
});

/** A REST API proxy event as API Gateway sends it (only the fields the handler reads are real). */
function event(
  method: string,
  path: string,
  options: { key?: string; body?: string; query?: Record<string, string> } = {},
): APIGatewayProxyEvent {
  const id = /^\/studies\/([^/]+)/.exec(path)?.[1];
  const resource = path.endsWith('/report') ? '/studies/{id}/report' : id ? '/studies/{id}' : '/studies';
  return {
    resource,
    path,
    httpMethod: method,
    // Clients spell headers as they like; API Gateway passes the spelling on.
    headers: options.key ? { 'X-Api-Key': options.key } : {},
    multiValueHeaders: {},
    queryStringParameters: options.query ?? null,
    multiValueQueryStringParameters: null,
    pathParameters: id ? { id } : null,
    stageVariables: null,
    body: options.body ?? null,
    isBase64Encoded: false,
    requestContext: {} as APIGatewayProxyEvent['requestContext'],
  };
}

async function call(method: string, path: string, options: Parameters<typeof event>[2] = {}) {
  const result = await api(event(method, path, options));
  expect(result.body).not.toContain('\n');
  return { status: result.statusCode, body: JSON.parse(result.body) };
}

const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

async function create(key: string, names = ['1.dcm', '2.dcm']) {
  const slices = names.map((name) => ({ name, sha256: 'a'.repeat(64), size: 10 }));
  return call('POST', '/studies', { key, body: JSON.stringify({ series: [{ id: 'ser', slices }] }) });
}

describe('api Lambda', () => {
  it('answers 401 without a key and 403 with an unknown one; stores only hashes', async () => {
    expect(await call('GET', '/studies')).toEqual({
      status: 401,
      body: { message: 'x-api-key header missing' },
    });
    expect(await call('GET', '/studies', { key: 'wrong' })).toEqual({
      status: 403,
      body: { message: 'API key not recognised' },
    });
    const scan = async (TableName: string) =>
      JSON.stringify((await stack.clients.dynamo.send(new ScanCommand({ TableName }))).Items ?? []);
    const keyItems = await scan(stack.resources.apiKeyTableName);
    expect(keyItems).not.toContain(KEY_A);
    expect(keyItems).toContain(hashApiKey(KEY_A));
    // Keys live only in their own table (the one only the authorizer and the api Lambda may read).
    expect(await scan(stack.resources.tableName)).not.toContain(hashApiKey(KEY_A));
  });

  it('refuses a revoked key on its next call (its own lookup, whatever the authorizer cached)', async () => {
    const keys = new ApiKeyStore(stack.clients.dynamo, stack.resources.apiKeyTableName);
    await keys.put('key-soon-revoked', 'hospital-r');
    expect((await call('GET', '/studies', { key: 'key-soon-revoked' })).status).toBe(200);
    await stack.clients.dynamo.send(
      new DeleteCommand({
        TableName: stack.resources.apiKeyTableName,
        Key: { pk: `APIKEY#${hashApiKey('key-soon-revoked')}`, sk: 'APIKEY' },
      }),
    );
    expect(await call('GET', '/studies', { key: 'key-soon-revoked' })).toEqual({
      status: 403,
      body: { message: 'API key not recognised' },
    });
  });

  it('creates a study with presigned PUT URLs under the hospital prefix that upload', async () => {
    const bytes = new Uint8Array([1, 2, 3, 4, 5]);
    const body = {
      series: [{ id: 'ser', slices: [{ name: '1.dcm', sha256: sha(bytes), size: bytes.length }] }],
      settings: { voteThreshold: 0.1 },
    };
    const created = await call('POST', '/studies', { key: KEY_A, body: JSON.stringify(body) });
    expect(created.status).toBe(201);
    const { studyId, uploads, manifest, expiresIn } = created.body;
    expect(expiresIn).toBe(900);
    const prefix = `incoming/hospital-a/${studyId}/`;
    expect(uploads).toEqual([
      {
        seriesId: 'ser',
        key: `${prefix}ser/1.dcm`,
        url: expect.any(String),
        headers: { 'x-amz-checksum-sha256': createHash('sha256').update(bytes).digest('base64') },
      },
    ]);
    expect(manifest.key).toBe(`${prefix}manifest.json`);
    expect(manifest.body).toEqual({
      version: 1,
      studyId,
      series: [{ id: 'ser', slices: [{ key: `${prefix}ser/1.dcm`, sha256: sha(bytes), size: 5 }] }],
      settings: { voteThreshold: 0.1 },
    });
    for (const { url } of [...uploads, manifest]) {
      const u = new URL(url);
      expect(decodeURIComponent(u.pathname)).toMatch(new RegExp(`^/${stack.resources.bucket}/${prefix}`));
      expect(u.searchParams.get('X-Amz-Expires')).toBe('900');
      // No flexible-checksum parameters: with them real S3 rejects the upload (empty-body CRC32).
      expect(u.searchParams.has('x-amz-checksum-crc32')).toBe(false);
    }
    const put = await fetch(uploads[0].url, { method: 'PUT', body: bytes, headers: uploads[0].headers });
    expect(put.status).toBe(200);
    const stored = await stack.clients.s3.send(
      new GetObjectCommand({ Bucket: stack.resources.bucket, Key: uploads[0].key }),
    );
    expect([...(await stored.Body!.transformToByteArray())]).toEqual([1, 2, 3, 4, 5]);

    const status = await call('GET', `/studies/${studyId}`, { key: KEY_A });
    expect(status.body).toMatchObject({
      studyId,
      status: 'RECEIVED',
      selectedCount: 0,
      classifiedCount: 0,
      covidCount: 0,
      covidFraction: null,
      decision: null,
      threshold: 0.1,
      series: [],
    });
  });

  it('rejects bad bodies with one line naming the field', async () => {
    const bad = async (body: string) => (await call('POST', '/studies', { key: KEY_A, body })).body.message;
    expect(await bad('{"series":[]}')).toBe('body.series: expected at least one series');
    expect(await bad('{"series":[{"id":"s","slices":[{"name":"../x","sha256":"aa","size":1}]}]}')).toBe(
      "body.series[0].slices[0].name: expected a file name of 1-128 letters, digits, '.', '_' or '-'",
    );
    const dup = {
      series: [{ id: 's', slices: [1, 2].map(() => ({ name: 'a', sha256: 'a'.repeat(64), size: 1 })) }],
    };
    expect(await bad(JSON.stringify(dup))).toBe("body.series[0].slices[1].name: duplicate slice name 'a'");
    expect(await bad('{"series":[{"id":"s","slices":[]}],"settings":{"voteThreshold":0}}')).toBe(
      'body.series[0].slices: expected at least one slice',
    );
    const huge = await call('POST', '/studies', { key: KEY_A, body: ' '.repeat(1024 * 1024 + 1) });
    expect(huge.status).toBe(413);
  });

  it("keeps each hospital to its own studies: B gets A's study as a 404 like a missing one", async () => {
    const a = (await create(KEY_A)).body.studyId as string;
    const b = (await create(KEY_B)).body.studyId as string;
    const missing = await call('GET', '/studies/00000000-0000-0000-0000-000000000000', { key: KEY_B });
    expect(missing).toEqual({ status: 404, body: { message: 'study not found' } });
    expect(await call('GET', `/studies/${a}`, { key: KEY_B })).toEqual(missing);
    expect(await call('GET', `/studies/${a}/report`, { key: KEY_B })).toEqual(missing);
    expect(await call('GET', '/studies/..%2F', { key: KEY_B })).toEqual(missing);
    expect((await call('GET', `/studies/${a}`, { key: KEY_A })).status).toBe(200);

    const listB = (await call('GET', '/studies', { key: KEY_B, query: { limit: '100' } })).body;
    expect(listB.studies.map((s: { studyId: string }) => s.studyId)).toEqual([b]);
    const listA = (await call('GET', '/studies', { key: KEY_A, query: { limit: '100' } })).body;
    expect(listA.studies.map((s: { studyId: string }) => s.studyId)).toContain(a);
    expect(listA.studies.map((s: { studyId: string }) => s.studyId)).not.toContain(b);
  });

  it('lists newest first with a status filter and a cursor only valid for its hospital', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      ids.push((await create(KEY_B)).body.studyId);
      await new Promise((resolve) => setTimeout(resolve, 5)); // distinct createdAt: the listing's order
    }
    await store.failStudy('hospital-b', ids[1]!, 'manifest: bad');
    const first = (await call('GET', '/studies', { key: KEY_B, query: { limit: '2' } })).body;
    expect(first.studies).toHaveLength(2);
    expect(first.studies[0].studyId).toBe(ids[2]);
    expect(first.cursor).toEqual(expect.any(String));
    const second = (
      await call('GET', '/studies', { key: KEY_B, query: { limit: '2', cursor: first.cursor } })
    ).body;
    const all = [...first.studies, ...second.studies].map((s: { studyId: string }) => s.studyId);
    expect(new Set(all).size).toBe(all.length);
    expect(all.slice(0, 3)).toEqual([ids[2], ids[1], ids[0]]);

    const failed = (await call('GET', '/studies', { key: KEY_B, query: { status: 'FAILED' } })).body;
    expect(failed.studies).toEqual([
      expect.objectContaining({ studyId: ids[1], status: 'FAILED', reason: 'manifest: bad' }),
    ]);

    expect(await call('GET', '/studies', { key: KEY_A, query: { cursor: first.cursor } })).toEqual({
      status: 400,
      body: { message: 'cursor: not a cursor this listing returned' },
    });
    expect((await call('GET', '/studies', { key: KEY_B, query: { status: 'DONE' } })).status).toBe(400);
    expect((await call('GET', '/studies', { key: KEY_B, query: { limit: '0' } })).status).toBe(400);
  });

  it('shows partial counts while classifying and the report with heatmap links once complete', async () => {
    const h = 'hospital-a';
    const studyId = (await create(KEY_A, ['1.dcm', '2.dcm', '3.dcm'])).body.studyId as string;
    const keys = ['1.dcm', '2.dcm', '3.dcm'].map((n) => sliceKey(h, studyId, 'ser', n));
    await store.beginSelecting(h, studyId);
    await store.recordSelection(h, studyId, {
      threshold: 0.3,
      selectMs: 5,
      series: [
        {
          id: 'ser',
          status: 'SELECTED',
          threshold: 10,
          selectedCount: 2,
          slices: keys.map((key, i) => ({ key, darkPixels: i * 20, selected: i > 0 })),
        },
      ],
    });
    expect((await call('GET', `/studies/${studyId}/report`, { key: KEY_A })).status).toBe(409);
    const model = { id: 'm', sha256: 'd'.repeat(64) };
    const heat = heatmapKey(h, studyId, 'ser', keys[1]!);
    await store.putVote(
      h,
      studyId,
      { seriesId: 'ser', key: keys[1]!, probabilities: [0.9, 0.1], label: 'covid', heatmapKey: heat },
      model,
    );
    const partial = (await call('GET', `/studies/${studyId}`, { key: KEY_A })).body;
    expect(partial).toMatchObject({
      status: 'CLASSIFYING',
      selectedCount: 2,
      classifiedCount: 1,
      covidCount: 1,
      decision: null,
    });
    expect(partial.series[0]).toMatchObject({
      id: 'ser',
      sliceCount: 3,
      selectedCount: 2,
      classifiedCount: 1,
      decision: null,
    });

    await store.putVote(
      h,
      studyId,
      { seriesId: 'ser', key: keys[2]!, probabilities: [0.1, 0.9], label: 'normal' },
      model,
    );
    const report = {
      version: 1,
      studyId,
      decision: 'covid',
      series: [
        {
          id: 'ser',
          slices: [
            { key: keys[1], vote: { label: 'covid', heatmapKey: heat } },
            { key: keys[2], vote: { label: 'normal' } },
          ],
        },
      ],
    };
    await stack.clients.s3.send(
      new PutObjectCommand({
        Bucket: stack.resources.bucket,
        Key: reportKey(h, studyId),
        Body: JSON.stringify(report),
      }),
    );
    await stack.clients.s3.send(
      new PutObjectCommand({
        Bucket: stack.resources.bucket,
        Key: heat,
        Body: new Uint8Array([137, 80, 78, 71]),
      }),
    );
    await store.completeStudy(h, studyId, {
      outcome: { decision: 'covid', covidFraction: 0.5, covidCount: 1, classifiedCount: 2 },
      model,
      reportKey: reportKey(h, studyId),
    });
    const done = (await call('GET', `/studies/${studyId}`, { key: KEY_A })).body;
    expect(done).toMatchObject({
      status: 'COMPLETE',
      classifiedCount: 2,
      covidFraction: 0.5,
      decision: 'covid',
      model,
    });
    const got = await call('GET', `/studies/${studyId}/report`, { key: KEY_A });
    expect(got.status).toBe(200);
    const url = got.body.series[0].slices[0].vote.heatmapUrl as string;
    expect(got.body.series[0].slices[1].vote.heatmapUrl).toBeUndefined();
    const png = await fetch(url);
    expect(png.status).toBe(200);
    expect([...new Uint8Array(await png.arrayBuffer())]).toEqual([137, 80, 78, 71]);
    expect((await call('GET', `/studies/${studyId}/report`, { key: KEY_B })).status).toBe(404);
  });
});
