/**
 * Hostile uploads against the local stack (issue 7, item 2): the real API, select and aggregate
 * handlers behind the local API Gateway and SQS event sources, the real SDK clients, the S3 event
 * router. Manifests with keys outside the hospital's prefix, path traversal, 10,000 slices, slices
 * over the size cap, mismatched hashes, a missing object, a manifest uploaded twice with different
 * content, non-UTF-8; ingest messages that are not S3 events. Every case must end in a FAILED
 * study with a reason or a logged rejection — never a stuck study, a crash or a silent drop. No
 * worker runs: no case here gets past selection except the one that checks a second manifest
 * changes nothing. Hostile API calls: test/hostile-api.test.ts.
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { GetQueueAttributesCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import { makeS3EventBody, manifestKey, PIPELINE_DEFAULTS } from '../pipeline/index.js';
import {
  A,
  type Created,
  createStudy,
  editedManifest,
  errors,
  expectFailed,
  observed,
  put,
  record,
  SLICES,
  settled,
  stack,
  store,
  uploadSlices,
  useHostileStack,
} from './helpers/hostile.js';

useHostileStack();

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
