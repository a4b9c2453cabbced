/**
 * Hostile uploads against the local stack (issue 7, item 2): the real API, select and aggregate
 * handlers behind the local API Gateway and SQS event sources, the real SDK clients, the S3 event
 * router. Manifests with keys outside the hospital's prefix, path traversal, 10,000 slices, slices
 * over the size cap, mismatched hashes, a missing object, a manifest uploaded twice with different
 * content, non-UTF-8 and odd names; oversized API bodies; wrong or missing API keys. Every case
 * must end in a clear rejection (a one-line message naming the field) or a FAILED study with a
 * reason — never a stuck study, a crash or a silent drop. No worker runs: no case here gets past
 * selection except the one that checks a second manifest changes nothing.
 */
import { createHash } from 'node:crypto';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { GetQueueAttributesCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodePhantomSlice } from '../core/phantom/files.js';
import { createPhantom } from '../core/phantom/phantom.js';
import type { LocalStack } from '../local/stack.js';
import { makeS3EventBody, manifestKey } from '../pipeline/messages.js';
import { PIPELINE_DEFAULTS } from '../pipeline/resources.js';
import { type StudyRecord, StudyStore } from '../pipeline/store.js';
import { quietObservability } from './helpers/pipeline.js';
import { startStackWithSelect } from './helpers/select-stack.js';

const A = { hospital: 'hospital-a', apiKey: 'hostile-key-hospital-a-0123456789' };
const B = { hospital: 'hospital-b', apiKey: 'hostile-key-hospital-b-0123456789' };
const sha = (bytes: Uint8Array | string) => createHash('sha256').update(bytes).digest('hex');

let stack: LocalStack;
let store: StudyStore;
const observed = quietObservability('covidct-select');
let errors: string[] = [];

/** Four phantom slices with open lungs (the middle of a 9-slice series), so a valid study selects some. */
const phantom = createPhantom({ seed: 7, covid: false, slices: 9 });
const SLICES = [3, 4, 5, 6].map((i) => ({
  name: `s${i}.dcm`,
  bytes: encodePhantomSlice(phantom.info, phantom.slice(i), 'dicom'),
}));

beforeAll(async () => {
  ({ stack, errors } = await startStackWithSelect(
    {
      hospitals: [A, B],
      worker: false,
      pollWaitSeconds: 1,
      visibilityTimeoutSeconds: 5,
    },
    observed,
  ));
  store = new StudyStore(stack.clients.dynamo, stack.resources.tableName);
}, 60_000);

afterAll(async () => {
  await stack?.stop();
});

interface Created {
  studyId: string;
  uploads: { seriesId: string; key: string; url: string }[];
  manifest: { key: string; url: string; body: { series: { id: string; slices: { key: string }[] }[] } };
}

async function api(
  path: string,
  init: {
    method?: string;
    key?: string | null;
    body?: string | Uint8Array;
    headers?: Record<string, string>;
  } = {},
): Promise<{ status: number; body: { message?: string } & Record<string, unknown> }> {
  const headers: Record<string, string> = { 'content-type': 'application/json', ...init.headers };
  if (init.key !== null) headers['x-api-key'] = init.key ?? A.apiKey;
  const res = await fetch(`${stack.apiUrl}${path}`, {
    method: init.method ?? (init.body !== undefined ? 'POST' : 'GET'),
    headers,
    ...(init.body !== undefined ? { body: init.body } : {}),
  });
  const text = await res.text();
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    body = { raw: text };
  }
  return { status: res.status, body };
}

/** A one-line rejection naming the field. */
function expectRejection(
  res: { status: number; body: { message?: string } },
  status: number,
  field: RegExp,
): void {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(res.body.message).toMatch(field);
  expect(res.body.message).not.toMatch(/[\r\n]/);
}

/** Create a study of the phantom slices through the API. */
async function createStudy(slices = SLICES): Promise<Created> {
  const res = await api('/studies', {
    body: JSON.stringify({
      series: [
        {
          id: 'S1',
          slices: slices.map((s) => ({ name: s.name, sha256: sha(s.bytes), size: s.bytes.length })),
        },
      ],
    }),
  });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body as unknown as Created;
}

async function put(url: string, body: Uint8Array | string): Promise<void> {
  const res = await fetch(url, { method: 'PUT', body });
  expect(res.ok, await res.text()).toBe(true);
}

/** Upload the slices (all, or those `only` names) through their presigned URLs. */
async function uploadSlices(
  created: Created,
  slices = SLICES,
  only?: (name: string) => boolean,
): Promise<void> {
  for (const s of slices) {
    if (only && !only(s.name)) continue;
    const upload = created.uploads.find((u) => u.key.endsWith(`/${s.name}`))!;
    await put(upload.url, s.bytes);
  }
}

/** Wait until the study leaves RECEIVED/SELECTING (the select handler ran), up to 20 s. */
async function settled(studyId: string, hospital = A.hospital): Promise<StudyRecord> {
  for (let i = 0; i < 200; i++) {
    const study = await store.getStudy(hospital, studyId);
    if (study && study.status !== 'RECEIVED' && study.status !== 'SELECTING') return study;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`study ${studyId} is stuck in ${(await store.getStudy(hospital, studyId))?.status}`);
}

/** Upload a manifest text for a created study and wait for the outcome: FAILED with a reason matching `reason`. */
async function expectFailed(
  created: Created,
  manifest: string | Uint8Array,
  reason: RegExp,
): Promise<StudyRecord> {
  await put(created.manifest.url, manifest);
  let study = await settled(created.studyId);
  // A study already past selection (the resend case) fails when the event is handled.
  for (let i = 0; i < 100 && study.status !== 'FAILED'; i++) {
    await new Promise((r) => setTimeout(r, 100));
    study = (await store.getStudy(A.hospital, created.studyId))!;
  }
  expect(study.status).toBe('FAILED');
  expect(study.reason).toMatch(reason);
  expect(study.reason).not.toMatch(/[\r\n]/);
  // The API says the same to the hospital.
  const res = await api(`/studies/${created.studyId}`);
  expect(res.body).toMatchObject({ status: 'FAILED', reason: study.reason });
  return study;
}

/** The manifest the API handed out, with `edit` applied to its first series' slices. */
function editedManifest(
  created: Created,
  edit: (slices: { key: string; sha256: string; size: number }[]) => unknown[],
): string {
  const body = structuredClone(created.manifest.body) as unknown as {
    series: { slices: { key: string; sha256: string; size: number }[] }[];
  };
  body.series[0]!.slices = edit(body.series[0]!.slices) as (typeof body.series)[0]['slices'];
  return JSON.stringify(body);
}

/** Record of every case: what was sent, how it ended (for the reliability report). */
const outcomes: string[] = [];
afterAll(() => {
  console.info(`hostile uploads: ${outcomes.length} cases\n${outcomes.map((o) => `  ${o}`).join('\n')}`);
});
const record = (what: string, how: string) => outcomes.push(`${what} → ${how}`);

describe('API keys', () => {
  it('refuses a missing, empty or unknown key with 401/403 and the same one-line message for any route', async () => {
    for (const path of ['/studies', '/studies/x', '/studies/x/report']) {
      expectRejection(await api(path, { key: null }), 401, /^x-api-key header missing$/);
      expectRejection(await api(path, { key: '' }), 401, /^x-api-key header missing$/);
      expectRejection(await api(path, { key: 'not-a-key' }), 403, /^API key not recognised$/);
      expectRejection(await api(path, { key: `${A.apiKey}x` }), 403, /^API key not recognised$/);
      expectRejection(await api(path, { key: B.apiKey.slice(0, -1) }), 403, /^API key not recognised$/);
      expectRejection(await api(path, { key: 'é'.repeat(100) }), 403, /^API key not recognised$/);
    }
    const post = await api('/studies', { key: 'not-a-key', body: '{}' });
    expectRejection(post, 403, /^API key not recognised$/);
    record(
      'missing / empty / unknown / extended / truncated / non-ASCII API key, every route',
      '401 or 403, one line',
    );
  });
});

describe('POST /studies bodies', () => {
  it('refuses a body over the 1 MiB request bound (413) and over API Gateway’s 10 MiB (413)', async () => {
    const big = JSON.stringify({ series: [{ id: 'S1', slices: [] }], pad: 'x'.repeat(1024 * 1024) });
    expectRejection(await api('/studies', { body: big }), 413, /^body: larger than 1048576 bytes$/);
    const huge = 'x'.repeat(11 * 1024 * 1024);
    const res = await api('/studies', { body: huge });
    expect(res.status).toBe(413);
    record('POST /studies body of 1 MiB + padding', '413 "body: larger than 1048576 bytes"');
    record('POST /studies body of 11 MiB', '413 from the API Gateway emulation (10 MiB limit)');
  });

  it('refuses 10,000 slices, a slice over the size cap, traversal and odd names, each naming the field', async () => {
    const slice = (name: string, size = 100) => ({ name, sha256: 'a'.repeat(64), size });
    const tenThousand = {
      series: Array.from({ length: 5 }, (_, s) => ({
        id: `S${s}`,
        slices: Array.from({ length: 2000 }, (_, i) => slice(`${i}.dcm`)),
      })),
    };
    // 10,000 slices do not fit in the 1 MiB body; 2,250 do, and break the per-study bound.
    const tenThousandRes = await api('/studies', { body: JSON.stringify(tenThousand) });
    expectRejection(tenThousandRes, 413, /^body: larger than 1048576 bytes$/);
    record('POST /studies: 10,000 slices', `413 "${tenThousandRes.body.message}"`);
    const spread = {
      series: Array.from({ length: 5 }, (_, s) => ({
        id: `S${s}`,
        slices: Array.from({ length: 450 }, (_, i) => slice(`${i}.dcm`)),
      })),
    };
    const cases: [string, unknown, RegExp][] = [
      ['2,250 slices in 5 series', spread, /^body\.series: 2250 slices in all, expected at most 2000$/],
      [
        '2,001 slices in one series',
        { series: [{ id: 'S1', slices: Array.from({ length: 2001 }, (_, i) => slice(`${i}.dcm`)) }] },
        /^body\.series\[0\]\.slices: expected at most 2000 slices$/,
      ],
      [
        'a slice over the size cap',
        { series: [{ id: 'S1', slices: [slice('a.dcm', PIPELINE_DEFAULTS.maxSliceBytes + 1)] }] },
        /^body\.series\[0\]\.slices\[0\]\.size: expected at most 4194304 bytes$/,
      ],
      [
        'name ..',
        { series: [{ id: 'S1', slices: [slice('..')] }] },
        /^body\.series\[0\]\.slices\[0\]\.name: /,
      ],
      [
        'name ../../x',
        { series: [{ id: 'S1', slices: [slice('../../x')] }] },
        /^body\.series\[0\]\.slices\[0\]\.name: /,
      ],
      [
        'name %2e%2e',
        { series: [{ id: 'S1', slices: [slice('%2e%2e')] }] },
        /^body\.series\[0\]\.slices\[0\]\.name: /,
      ],
      [
        'name a/b',
        { series: [{ id: 'S1', slices: [slice('a/b.dcm')] }] },
        /^body\.series\[0\]\.slices\[0\]\.name: /,
      ],
      [
        'name é.dcm',
        { series: [{ id: 'S1', slices: [slice('é.dcm')] }] },
        /^body\.series\[0\]\.slices\[0\]\.name: /,
      ],
      [
        'name with a line break',
        { series: [{ id: 'S1', slices: [slice('a\nb')] }] },
        /^body\.series\[0\]\.slices\[0\]\.name: /,
      ],
      [
        'series id ../hospital-b',
        { series: [{ id: '../hospital-b', slices: [slice('a')] }] },
        /^body\.series\[0\]\.id: /,
      ],
      [
        'duplicate names',
        { series: [{ id: 'S1', slices: [slice('a'), slice('a')] }] },
        /^body\.series\[0\]\.slices\[1\]\.name: duplicate/,
      ],
      [
        'an unknown field',
        { series: [{ id: 'S1', slices: [slice('a')] }], hospital: 'hospital-b' },
        /^body\.hospital: unknown field$/,
      ],
    ];
    for (const [what, body, field] of cases) {
      const res = await api('/studies', { body: JSON.stringify(body) });
      expectRejection(res, 400, field);
      record(`POST /studies: ${what}`, `400 "${res.body.message}"`);
    }
    // Bytes that are not UTF-8: decoded with replacement characters, then not JSON.
    const res = await api('/studies', { body: Uint8Array.from([0x7b, 0xff, 0xfe, 0x22, 0x7d]) });
    expectRejection(res, 400, /^body: is not JSON/);
    record('POST /studies: non-UTF-8 bytes', `400 "${res.body.message}"`);
  });

  it('answers a study id with traversal or odd characters like a missing study', async () => {
    for (const id of ['..%2F..%2Fhospital-b', '%2e%2e', 'x%00y', '%E9', 'a'.repeat(200), '%ZZ']) {
      for (const path of [`/studies/${id}`, `/studies/${id}/report`]) {
        const res = await api(path);
        expect([404, 403], `${path}: ${JSON.stringify(res.body)}`).toContain(res.status);
        if (res.status === 404 && res.body.message !== undefined)
          expect(res.body.message).not.toMatch(/[\r\n]/);
      }
    }
    record('GET /studies/{id}[/report] with ../, %00, %E9, %ZZ, 200 characters', '404 like a missing study');
  });
});

describe('manifests', () => {
  it('fails a study whose manifest lists a key under another hospital’s prefix', async () => {
    const created = await createStudy();
    await uploadSlices(created);
    const manifest = editedManifest(created, (slices) =>
      slices.map((s, i) => (i === 1 ? { ...s, key: s.key.replace('hospital-a', 'hospital-b') } : s)),
    );
    const study = await expectFailed(
      created,
      manifest,
      /^manifest\.series\[0\]\.slices\[1\]\.key: 'incoming\/hospital-b\//,
    );
    record('manifest key under another hospital’s prefix', `FAILED "${study.reason}"`);
  });

  it('fails a study whose manifest keys climb out of its folder, plainly or URL-encoded', async () => {
    for (const traversal of [
      'S1/../../other-study/S1/s3.dcm',
      'S1/%2e%2e/s3.dcm',
      'S1//s3.dcm',
      'S1/./s3.dcm',
    ]) {
      const created = await createStudy();
      await uploadSlices(created);
      const prefix = `incoming/${A.hospital}/${created.studyId}/`;
      const manifest = editedManifest(created, (slices) => [
        ...slices.slice(1),
        { ...slices[0]!, key: `${prefix}${traversal}` },
      ]);
      const study = await expectFailed(
        created,
        manifest,
        /^manifest\.series\[0\]\.slices\[3\]\.key: '.*' is not an object under incoming\/hospital-a\//,
      );
      record(`manifest key ${traversal}`, `FAILED "${study.reason}"`);
    }
  });

  it('fails a study whose manifest lists 10,000 slices (over the manifest size bound) or 2,001 (over the slice bound)', async () => {
    const created = await createStudy();
    const many = (n: number) =>
      editedManifest(created, (slices) =>
        Array.from({ length: n }, (_, i) => ({
          ...slices[0]!,
          key: slices[0]!.key.replace(/s3\.dcm$/, `${i}`),
        })),
      );
    const big = many(10_000);
    expect(big.length).toBeGreaterThan(1024 * 1024);
    let study = await expectFailed(created, big, /manifest\.json: \d+ bytes, expected at most 1048576$/);
    record('manifest with 10,000 slices', `FAILED "${study.reason}"`);
    const second = await createStudy();
    const prefix = `incoming/${A.hospital}/${second.studyId}/S1/`;
    const manifest = JSON.stringify({
      version: 1,
      studyId: second.studyId,
      series: [
        {
          id: 'S1',
          slices: Array.from({ length: 2001 }, (_, i) => ({
            key: `${prefix}${i}`,
            sha256: 'a'.repeat(64),
            size: 1,
          })),
        },
      ],
    });
    expect(manifest.length).toBeLessThan(1024 * 1024);
    study = await expectFailed(
      second,
      manifest,
      /^manifest\.series\[0\]\.slices: expected at most 2000 slices$/,
    );
    record('manifest with 2,001 slices', `FAILED "${study.reason}"`);
  });

  it('fails a study with a slice over the size cap, a mismatched hash, a missing object or a size that differs', async () => {
    // Over the cap: AWS S3 refuses it (the URL signs the length and SHA-256; presigned-uploads.test.ts),
    // the local S3 stores it, and the select Lambda, the second line, refuses it unread.
    const big = { name: 's9.dcm', bytes: new Uint8Array(PIPELINE_DEFAULTS.maxSliceBytes + 1) };
    const cases: [string, (c: Created) => Promise<string>, RegExp][] = [
      [
        'a slice over the 4 MiB cap (uploaded bigger than declared)',
        async (c) => {
          await uploadSlices(c, SLICES, (n) => n !== 's4.dcm');
          const upload = c.uploads.find((u) => u.key.endsWith('/s4.dcm'))!;
          await put(upload.url, big.bytes);
          return JSON.stringify(c.manifest.body);
        },
        /\/s4\.dcm: 4194305 bytes, expected at most 4194304$/,
      ],
      [
        'a mismatched hash',
        async (c) => {
          await uploadSlices(c, SLICES, (n) => n !== 's5.dcm');
          const upload = c.uploads.find((u) => u.key.endsWith('/s5.dcm'))!;
          const other = SLICES.find((s) => s.name === 's5.dcm')!.bytes.slice();
          other[other.length - 1] = other[other.length - 1]! ^ 1; // same size, one bit off
          await put(upload.url, other);
          return JSON.stringify(c.manifest.body);
        },
        /\/s5\.dcm: content does not match the manifest sha256$/,
      ],
      [
        'a missing object',
        async (c) => {
          await uploadSlices(c, SLICES, (n) => n !== 's6.dcm');
          return JSON.stringify(c.manifest.body);
        },
        /\/s6\.dcm: not found in the bucket, expected it uploaded before the manifest$/,
      ],
      [
        'a size that differs from the object',
        async (c) => {
          await uploadSlices(c);
          return editedManifest(c, (slices) =>
            slices.map((s, i) => (i === 0 ? { ...s, size: s.size + 1 } : s)),
          );
        },
        /\/s3\.dcm: \d+ bytes, the manifest says \d+$/,
      ],
    ];
    for (const [what, prepare, reason] of cases) {
      const created = await createStudy();
      const manifest = await prepare(created);
      const study = await expectFailed(
        created,
        manifest,
        new RegExp(`^nothing to classify: .*${reason.source}`),
      );
      expect(study.series?.[0]).toMatchObject({ status: 'FAILED' });
      record(what, `FAILED "${study.reason}"`);
    }
  });

  it('fails a study whose manifest is not UTF-8, not JSON, or for another study', async () => {
    const cases: [string, (c: Created) => string | Uint8Array, RegExp][] = [
      [
        'manifest bytes that are not UTF-8',
        () => Uint8Array.from([0x7b, 0xff, 0xfe, 0x7d]),
        /manifest\.json: not UTF-8 text/,
      ],
      ['manifest that is not JSON', () => '{"version": 1,', /^manifest: is not JSON/],
      [
        'manifest naming another study',
        (c) => JSON.stringify({ ...c.manifest.body, studyId: 'other-study' }),
        /^manifest\.studyId: 'other-study' does not match the manifest's folder/,
      ],
      ['an empty manifest', () => '', /^manifest: is not JSON/],
    ];
    for (const [what, manifest, reason] of cases) {
      const created = await createStudy();
      await uploadSlices(created);
      const study = await expectFailed(created, manifest(created), reason);
      record(what, `FAILED "${study.reason}"`);
    }
  });

  it('changes nothing when the manifest is uploaded again with different content after selection', async () => {
    const created = await createStudy();
    await uploadSlices(created);
    await put(created.manifest.url, JSON.stringify(created.manifest.body));
    let first = await settled(created.studyId);
    expect(first.status).toBe('CLASSIFYING');
    // The selection is recorded, then the inference messages sent and the study marked `enqueued`.
    for (let i = 0; i < 100 && !first.enqueued; i++) {
      await new Promise((r) => setTimeout(r, 100));
      first = (await store.getStudy(A.hospital, created.studyId))!;
    }
    expect(first.enqueued).toBe(true);
    const logged = observed.lines.length;
    // The second manifest drops a slice and lists another hospital's key: too late, and ignored.
    const second = editedManifest(created, (slices) => [
      { ...slices[0]!, key: slices[0]!.key.replace('hospital-a', 'hospital-b') },
    ]);
    await put(created.manifest.url, second);
    for (
      let i = 0;
      i < 100 && !observed.lines.slice(logged).some((l) => l.message === 'duplicate manifest event');
      i++
    ) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const line = observed.lines.slice(logged).find((l) => l.message === 'duplicate manifest event');
    expect(line).toMatchObject({ hospital: A.hospital, study: created.studyId, status: 'CLASSIFYING' });
    expect(await store.getStudy(A.hospital, created.studyId)).toEqual(first);
    record(
      'manifest uploaded twice, different content, after selection',
      'second one logged as a duplicate; study and selection unchanged',
    );
  });

  it('fails (not retries forever) a study whose manifest lost a selected slice between a crash and the resend', async () => {
    const created = await createStudy();
    await uploadSlices(created);
    // A select Lambda that recorded the selection (slice s3 selected) and died before queueing it.
    const s3Key = created.uploads.find((u) => u.key.endsWith('/s3.dcm'))!.key;
    expect(await store.beginSelecting(A.hospital, created.studyId)).toBe(true);
    const series = [
      {
        id: 'S1',
        status: 'SELECTED' as const,
        threshold: 1,
        selectedCount: 1,
        slices: [{ key: s3Key, darkPixels: 9, selected: true }],
      },
    ];
    expect(
      await store.recordSelection(A.hospital, created.studyId, { series, threshold: 0.3, selectMs: 1 }),
    ).toBe(true);
    // The hospital uploads the manifest again, without s3: the redelivered event finds nothing to resend.
    const manifest = editedManifest(created, (slices) => slices.filter((sl) => sl.key !== s3Key));
    const study = await expectFailed(
      created,
      manifest,
      /^manifest changed after selection: incoming\/hospital-a\/[^/]+\/S1\/s3\.dcm: selected, but no longer in the manifest$/,
    );
    record(
      'manifest uploaded again without a selected slice, after a crash before queueing',
      `FAILED "${study.reason}"`,
    );
  });

  it('logs (does not silently drop) manifests of studies not created through the API and events that are not S3 events', async () => {
    const logged = observed.lines.length;
    const bucket = stack.resources.bucket;
    // A manifest for a study id the API never created, and one under an odd (non-id) folder name.
    await stack.clients.s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: manifestKey(A.hospital, 'never-created'), Body: '{}' }),
    );
    await stack.clients.s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: `incoming/${A.hospital}/é x+%/manifest.json`, Body: '{}' }),
    );
    // Raw messages on the ingest queue: not JSON, and a key that is not valid URL encoding.
    const ingest = stack.resources.queueUrls.ingest;
    await stack.clients.sqs.send(new SendMessageCommand({ QueueUrl: ingest, MessageBody: 'not json' }));
    await stack.clients.sqs.send(
      new SendMessageCommand({
        QueueUrl: ingest,
        MessageBody: makeS3EventBody({ bucket, key: 'x', size: 1 }).replace('"key":"x"', '"key":"%E0%A4%A"'),
      }),
    );
    const want = [
      (l: Record<string, unknown>) =>
        l.message === 'manifest event ignored' && l.why === 'no such study (not created through the API)',
      (l: Record<string, unknown>) =>
        l.message === 'manifest event ignored' && l.why === 'not a study manifest key',
      (l: Record<string, unknown>) =>
        l.message === 'ingest message is not an S3 event' && /is not JSON/.test(String(l.error)),
      (l: Record<string, unknown>) =>
        l.message === 'ingest message is not an S3 event' &&
        /s3Event\.Records\[0\]\.s3\.object\.key: is not a valid URL-encoded key/.test(String(l.error)),
    ];
    for (let i = 0; i < 100 && !want.every((w) => observed.lines.slice(logged).some(w)); i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const w of want) expect(observed.lines.slice(logged).some(w)).toBe(true);
    record(
      'manifest of a study never created / under an odd folder name',
      'consumed, logged "manifest event ignored" with why',
    );
    record(
      'ingest message not JSON / key not URL-encoded',
      'consumed, logged "ingest message is not an S3 event" naming the field',
    );
  });

  it('leaves no study stuck, the ingest queue empty and its DLQ empty, and no handler error', async () => {
    const attrs = async (url: string) =>
      (
        await stack.clients.sqs.send(
          new GetQueueAttributesCommand({
            QueueUrl: url,
            AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
          }),
        )
      ).Attributes!;
    for (let i = 0; i < 100; i++) {
      const a = await attrs(stack.resources.queueUrls.ingest);
      if (Number(a.ApproximateNumberOfMessages) + Number(a.ApproximateNumberOfMessagesNotVisible) === 0)
        break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const ingest = await attrs(stack.resources.queueUrls.ingest);
    expect(
      Number(ingest.ApproximateNumberOfMessages) + Number(ingest.ApproximateNumberOfMessagesNotVisible),
    ).toBe(0);
    expect(Number((await attrs(stack.resources.queueUrls.ingestDlq)).ApproximateNumberOfMessages)).toBe(0);
    const page = await store.listStudies(A.hospital, { limit: 100 });
    const stuck = page.studies.filter((s) => s.status === 'RECEIVED' || s.status === 'SELECTING');
    expect(stuck).toEqual([]);
    expect(errors).toEqual([]);
    expect(
      observed.lines.filter((l) => l.level === 'ERROR' && l.message !== 'ingest message is not an S3 event'),
    ).toEqual([]);
  });
});
