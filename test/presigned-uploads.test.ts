/**
 * Presigned PUT URLs bind the bytes (issue 14, section 4): `POST /studies` signs each slice's and
 * the manifest's SHA-256 (`x-amz-checksum-sha256`, base64) and length (`content-length`) into its
 * URL as signed headers, so S3 itself refuses other bytes, a longer body or a second manifest; and
 * `covidct upload` sends the matching header.
 *
 * The local S3 (fauxqs 1.9.2) checks neither signatures nor checksums (it stores whatever a PUT
 * brings, with or without the header), so what S3 does with these URLs is checked against
 * test/helpers/strict-s3.ts: a server that verifies SigV4 query signatures and the checksum header
 * as S3 documents, written independently of the SDK's signer. The URLs come from the real api
 * route (lambdas/api/api.ts) with its real presigner pointed at that server.
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodePhantomSlice } from '../core/phantom/files.js';
import { createPhantom } from '../core/phantom/phantom.js';
import { type ApiDeps, createStudy, presignClientFor } from '../lambdas/api/api.js';
import { CHECKSUM_HEADER, StudyStore, TABLE } from '../pipeline/index.js';
import { runCliAsync } from './helpers/cli.js';
import { useLocalStack } from './helpers/local-stack.js';
import { type StrictS3, startStrictS3 } from './helpers/strict-s3.js';
import { tempDir } from './helpers/tmp.js';

const stack = useLocalStack();
const work = tempDir('covidct-presign-');
const SECRET = 'test'; // the local stack's credentials (pipeline/clients.ts)
const sha = (bytes: Uint8Array | string) => createHash('sha256').update(bytes).digest('hex');
const b64 = (bytes: Uint8Array | string) => createHash('sha256').update(bytes).digest('base64');

let strict: StrictS3;
let deps: ApiDeps;

beforeAll(async () => {
  strict = await startStrictS3(SECRET);
  const s3 = new S3Client({
    region: 'us-east-1',
    endpoint: strict.endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: 'test', secretAccessKey: SECRET },
  });
  deps = {
    s3,
    presigner: presignClientFor(s3),
    store: new StudyStore(stack.clients.dynamo, TABLE.name),
    bucket: stack.resources.bucket,
    defaultThreshold: 0.3,
  };
});
afterAll(async () => {
  await strict?.stop();
});

interface Created {
  studyId: string;
  uploads: { seriesId: string; key: string; url: string; headers: Record<string, string> }[];
  manifest: { key: string; url: string; headers: Record<string, string>; body: unknown };
}

const SLICES = [
  { name: 'a.dcm', bytes: new Uint8Array(1000).fill(7) },
  { name: 'b.dcm', bytes: new Uint8Array(2345).fill(9) },
];

async function created(): Promise<Created> {
  const res = await createStudy(
    deps,
    'hospital-a',
    JSON.stringify({
      series: [
        {
          id: 'S1',
          slices: SLICES.map((s) => ({ name: s.name, sha256: sha(s.bytes), size: s.bytes.length })),
        },
      ],
    }),
  );
  expect(res.statusCode).toBe(201);
  return res.body as Created;
}

async function put(url: string, body: Uint8Array | string, headers: Record<string, string> = {}) {
  const res = await fetch(url, { method: 'PUT', body, headers });
  const text = await res.text();
  return { status: res.status, code: /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ?? '' };
}

describe('POST /studies upload URLs', () => {
  it('sign each slice’s and the manifest’s SHA-256 and length as headers, not as an unchecked query parameter', async () => {
    const c = await created();
    const manifestText = JSON.stringify(c.manifest.body);
    const expected = [
      ...SLICES.map((s) => ({ url: c.uploads.find((u) => u.key.endsWith(`/${s.name}`))!, bytes: s.bytes })),
      { url: c.manifest, bytes: Buffer.from(manifestText) },
    ];
    for (const { url: entry, bytes } of expected) {
      const u = new URL(entry.url);
      expect(u.searchParams.get('X-Amz-SignedHeaders')).toBe('content-length;host;x-amz-checksum-sha256');
      // Hoisted into the query, S3 would sign the checksum but never compare it with the body.
      expect([...u.searchParams.keys()].filter((k) => /checksum/i.test(k))).toEqual([]);
      expect(entry.headers).toEqual({ [CHECKSUM_HEADER]: b64(bytes) });
    }
  });

  it('are refused, as S3 checks them, for other bytes, a 5 MiB body, a missing checksum and a second manifest', async () => {
    const c = await created();
    const a = c.uploads.find((u) => u.key.endsWith('/a.dcm'))!;
    const good = SLICES[0]!.bytes;
    const other = good.slice();
    other[0] = 8; // same length, one byte off
    const results: Record<string, { status: number; code: string }> = {
      'other bytes with their own checksum': await put(a.url, other, { [CHECKSUM_HEADER]: b64(other) }),
      'other bytes with the signed checksum': await put(a.url, other, a.headers),
      'no checksum header': await put(a.url, good),
      '5 MiB body': await put(a.url, new Uint8Array(5 * 1024 * 1024), a.headers),
      'second manifest with its own checksum': await put(
        c.manifest.url,
        JSON.stringify({ ...(c.manifest.body as object), studyId: 'another' }),
        { [CHECKSUM_HEADER]: b64(JSON.stringify({ ...(c.manifest.body as object), studyId: 'another' })) },
      ),
      'second manifest with the signed checksum': await put(
        c.manifest.url,
        JSON.stringify({ ...(c.manifest.body as object), studyId: 'another' }),
        c.manifest.headers,
      ),
    };
    console.info(
      `presigned PUTs, as S3 checks them: ${Object.entries(results)
        .map(([what, r]) => `${what} → ${r.status} ${r.code}`)
        .join('; ')}`,
    );
    for (const [what, r] of Object.entries(results)) expect(r.status, what).toBeGreaterThanOrEqual(400);
    expect(results['other bytes with the signed checksum']!.code).toBe('BadDigest');
    expect(results['no checksum header']!.code).toBe('SignatureDoesNotMatch');
    // Nothing refused was stored; the declared bytes are accepted.
    expect(strict.objects.size).toBe(0);
    expect(await put(a.url, good, a.headers)).toEqual({ status: 200, code: 'OK' });
    expect(await put(c.manifest.url, JSON.stringify(c.manifest.body), c.manifest.headers)).toEqual({
      status: 200,
      code: 'OK',
    });
  });
});

describe('covidct upload', () => {
  let server: Server;
  let api = '';
  beforeAll(async () => {
    // The real api route behind a plain HTTP server: URLs signed against the strict S3.
    server = createServer((req, res) => {
      let text = '';
      req.on('data', (c) => {
        text += c;
      });
      req.on('end', async () => {
        const out =
          req.method === 'POST' && req.url === '/studies'
            ? await createStudy(deps, 'hospital-a', text)
            : { statusCode: 404, body: { message: 'no such route' } };
        res.writeHead(out.statusCode, { 'content-type': 'application/json' }).end(JSON.stringify(out.body));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    api = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('sends each object with the checksum header its URL signs: S3 accepts every slice and the manifest', {
    timeout: 60_000,
  }, async () => {
    const phantom = createPhantom({ seed: 3, covid: false, slices: 3 });
    const dir = join(work, 'study', 'series-1');
    await mkdir(dir, { recursive: true });
    for (let i = 0; i < 3; i++) {
      await writeFile(join(dir, `${i + 1}.dcm`), encodePhantomSlice(phantom.info, phantom.slice(i), 'dicom'));
    }
    await writeFile(join(dir, '4.tif'), encodePhantomSlice(phantom.info, phantom.slice(1), 'tiff'));
    const before = strict.puts.length;
    // Asynchronously: the strict S3 server answers from this process.
    const run = await runCliAsync(['upload', join(work, 'study'), '--api', api, '--key', 'k']);
    const puts = strict.puts.slice(before);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(puts.map((p) => `${p.status} ${p.code}`)).toEqual(Array(5).fill('200 OK'));
    expect(puts.at(-1)!.path).toMatch(/\/manifest\.json$/);
    for (const p of puts) {
      const body = strict.objects.get(p.path)!;
      expect(p.headers[CHECKSUM_HEADER]).toBe(b64(body));
    }
  });
});
