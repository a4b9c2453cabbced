/**
 * `covidct upload`, `status` and `wait` (the built command line) against a small fake of the
 * pipeline's API that hands out real presigned PUT URLs of the local S3 server: slices arrive
 * de-identified under neutral names with the hashes the manifest lists, the manifest last; status and wait follow the
 * API; a FAILED study, a timeout, a wrong key and a bad file exit 1 with one line.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deidentifyStudy } from '../core/deidentify.js';
import { decodeDicom } from '../core/dicom/decode.js';
import { encodeDicomCt } from '../core/dicom/encode.js';
import { decodeSlice } from '../core/read.js';
import { uploadStudy } from '../pipeline/api-client.js';
import { type Manifest, manifestFor, manifestKey } from '../pipeline/index.js';
import { CLI, runCliAsync } from './helpers/cli.js';
import { useLocalStack } from './helpers/local-stack.js';
import { tempDir } from './helpers/tmp.js';

const stack = useLocalStack();
const work = tempDir('covidct-client-');
const study = join(work, 'study');
const PATIENT = 'CLIENT^SECRET';
const PATIENT_ID = 'MRN-778899';
const KEYS: Record<string, string> = { 'key-h1': 'h1' };

/** Scripted statuses per study id: each GET returns the next (the last repeats). */
const scripts = new Map<string, Record<string, unknown>[]>();
let posts = 0;
let server: Server;
let api = '';

function json(res: import('node:http').ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

/** The fake API: POST /studies with presigned URLs of the local S3, GET /studies/{id} from a script. */
function startFakeApi(): Promise<void> {
  server = createServer((req, res) => {
    let text = '';
    req.on('data', (c) => {
      text += c;
    });
    req.on('end', async () => {
      // A blocked API: the request is never answered (the upload test interrupts the client).
      if (req.headers['x-api-key'] === 'key-hang') return;
      const hospital = KEYS[String(req.headers['x-api-key'])];
      if (hospital === undefined) return json(res, 403, { message: 'Forbidden' });
      if (req.method === 'POST' && req.url === '/studies') {
        posts++;
        const body = JSON.parse(text) as {
          series: { id: string; slices: { name: string; sha256: string; size: number }[] }[];
          settings?: { voteThreshold?: number };
        };
        const studyId = `st-${posts}`;
        const { s3 } = stack.clients;
        const Bucket = stack.resources.bucket;
        const manifest: Manifest = manifestFor(hospital, studyId, body);
        const uploads = await Promise.all(
          manifest.series.flatMap((s) =>
            s.slices.map(async (x) => ({
              key: x.key,
              url: await getSignedUrl(s3, new PutObjectCommand({ Bucket, Key: x.key }), { expiresIn: 900 }),
            })),
          ),
        );
        const mKey = manifestKey(hospital, studyId);
        return json(res, 201, {
          studyId,
          uploads,
          manifest: {
            key: mKey,
            url: await getSignedUrl(s3, new PutObjectCommand({ Bucket, Key: mKey }), { expiresIn: 900 }),
            body: JSON.stringify(manifest),
          },
        });
      }
      const m = /^\/studies\/([^/]+)$/.exec(req.url ?? '');
      if (req.method === 'GET' && m) {
        const script = scripts.get(decodeURIComponent(m[1]!));
        if (script === undefined) return json(res, 404, { message: 'study not found' });
        const next = script.length > 1 ? script.shift()! : script[0]!;
        return json(res, 200, next);
      }
      json(res, 404, { message: 'no such route' });
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      api = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      resolve();
    }),
  );
}

function slice(n: number): { bytes: Uint8Array; pixels: Uint16Array } {
  const pixels = new Uint16Array(64 * 64).map((_, i) => (i * (n + 3)) % 3000);
  const bytes = encodeDicomCt(pixels, 64, 64, {
    studyInstanceUid: '1.2.3',
    seriesInstanceUid: '1.2.3.9',
    sopInstanceUid: `1.2.3.9.${n}`,
    patientName: PATIENT,
    patientId: PATIENT_ID,
    instanceNumber: n,
    sliceLocation: n,
    imagePositionPatient: [0, 0, n],
    pixelSpacing: [0.7, 0.7],
  });
  return { bytes, pixels };
}

const originals = new Map<string, Uint16Array>();

beforeAll(async () => {
  await startFakeApi();
  const a = join(study, 'series A');
  const b = join(study, 'tiff');
  await mkdir(a, { recursive: true });
  await mkdir(b, { recursive: true });
  for (const n of [1, 2]) {
    const s = slice(n);
    await writeFile(join(a, `${n}.dcm`), s.bytes);
    originals.set(`series-1/slice-000${n}.dcm`, s.pixels);
  }
  const s3 = slice(3);
  await writeFile(join(a, '3.dcm.gz'), gzipSync(s3.bytes));
  originals.set('series-1/slice-0003.dcm', s3.pixels);
  await writeFile(join(a, 'notes.txt'), `patient ${PATIENT}`); // a sidecar: never uploaded
  await copyFile(
    join(import.meta.dirname, 'fixtures', 'lung-pet-ct-dx-A0002-tiff', 'B40f', '1-01.tif'),
    join(b, 'slice.tif'),
  );
});

afterAll(
  () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
);

describe.skipIf(!existsSync(CLI))('covidct upload, status, wait', () => {
  let studyId = '';

  it('uploads de-identified slices with the hashes the manifest lists, the manifest last', async () => {
    const run = await runCliAsync(['upload', study, '--api', api, '--key', 'key-h1', '--threshold', '0.1']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    studyId = run.stdout.trim();
    expect(studyId).toBe('st-1');
    const { s3 } = stack.clients;
    const Bucket = stack.resources.bucket;
    const listed = await s3.send(new ListObjectsV2Command({ Bucket, Prefix: `incoming/h1/${studyId}/` }));
    const keys = (listed.Contents ?? []).map((o) => o.Key!).sort();
    expect(keys).toEqual(
      [
        'incoming/h1/st-1/manifest.json',
        'incoming/h1/st-1/series-1/slice-0001.dcm',
        'incoming/h1/st-1/series-1/slice-0002.dcm',
        'incoming/h1/st-1/series-1/slice-0003.dcm',
        'incoming/h1/st-1/series-2/slice-0001.tif',
      ].sort(),
    );
    // Neutral names only: no folder or file name of the hospital's reaches the bucket.
    for (const key of keys) expect(key).not.toMatch(/series_A|series A|\/\d\.dcm|slice\.tif|tiff/);
    const get = async (Key: string) =>
      (await s3.send(new GetObjectCommand({ Bucket, Key }))).Body!.transformToByteArray();
    const manifest = JSON.parse(
      Buffer.from(await get(`incoming/h1/${studyId}/manifest.json`)).toString(),
    ) as Manifest;
    expect(manifest.settings).toEqual({ voteThreshold: 0.1 });
    for (const series of manifest.series) {
      for (const entry of series.slices) {
        const bytes = await get(entry.key);
        expect(createHash('sha256').update(bytes).digest('hex')).toBe(entry.sha256);
        expect(bytes.length).toBe(entry.size);
        const text = Buffer.from(bytes).toString('latin1');
        expect(text).not.toContain(PATIENT);
        expect(text).not.toContain(PATIENT_ID);
        const name = entry.key.split('/').slice(-2).join('/');
        if (name.endsWith('.dcm')) {
          expect((await decodeDicom(bytes, name)).pixels).toEqual(originals.get(name));
        } else {
          expect((await decodeSlice(bytes, name)).header.width).toBe(512);
        }
      }
    }
    // The manifest was the last object of the study to land.
    const events = stack.servers.fauxqs.spy
      .getAllMessages()
      .filter(
        (e) => e.service === 's3' && e.status === 'uploaded' && e.key.startsWith(`incoming/h1/${studyId}/`),
      );
    expect(events.length).toBe(5);
    expect((events.at(-1) as { key: string }).key).toBe(`incoming/h1/${studyId}/manifest.json`);
  });

  it('status prints the API status; wait follows it to COMPLETE (exit 0) or FAILED (exit 1)', async () => {
    const classifying = {
      studyId: 'st-1',
      status: 'CLASSIFYING',
      selectedCount: 3,
      classifiedCount: 1,
      covidCount: 0,
    };
    const complete = {
      studyId: 'st-1',
      status: 'COMPLETE',
      selectedCount: 3,
      classifiedCount: 3,
      covidCount: 2,
      covidFraction: 2 / 3,
      decision: 'covid',
    };
    scripts.set('st-1', [classifying, classifying, complete]);
    const status = await runCliAsync(['status', 'st-1', '--api', api, '--key', 'key-h1', '--json']);
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout)).toEqual(classifying);

    const wait = await runCliAsync(['wait', 'st-1', '--api', api, '--key', 'key-h1', '--interval', '1']);
    expect(wait.code).toBe(0);
    expect(wait.stdout).toBe(
      'st-1: COMPLETE\n  classified 3 of 3 selected slices, 2 COVID\n  decision: covid (66.7 % COVID slices)\n',
    );

    scripts.set('bad', [{ studyId: 'bad', status: 'FAILED', reason: 'series A: no slice selected' }]);
    const failed = await runCliAsync(['wait', 'bad', '--api', api, '--key', 'key-h1', '--json']);
    expect(failed.code).toBe(1);
    expect(JSON.parse(failed.stdout)).toMatchObject({
      status: 'FAILED',
      reason: 'series A: no slice selected',
    });

    scripts.set('slow', [{ studyId: 'slow', status: 'SELECTING' }]);
    const slow = await runCliAsync([
      'wait',
      'slow',
      '--api',
      api,
      '--key',
      'key-h1',
      '--timeout',
      '1',
      '--interval',
      '1',
    ]);
    expect(slow.code).toBe(1);
    expect(slow.stderr).toBe('covidct: slow: still SELECTING after 1 s\n');
  });

  it('a wrong key, a missing study and a file that is not a slice are one-line errors; nothing is uploaded for a bad file', async () => {
    const forbidden = await runCliAsync(['status', 'st-1', '--api', api, '--key', 'nope']);
    expect(forbidden.code).toBe(1);
    expect(forbidden.stderr).toBe('covidct: GET /studies/st-1: 403 Forbidden\n');
    const missing = await runCliAsync(['status', 'zzz', '--api', api, '--key', 'key-h1']);
    expect(missing.stderr).toBe('covidct: GET /studies/zzz: 404 study not found\n');

    const bad = join(work, 'bad-study');
    await mkdir(bad, { recursive: true });
    await writeFile(join(bad, '1.dcm'), slice(1).bytes);
    await writeFile(join(bad, '2.dcm'), Buffer.from('%PDF-1.4 not a slice'));
    const before = posts;
    const run = await runCliAsync(['upload', bad, '--api', api, '--key', 'key-h1']);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(
      `covidct: ${join(bad, '2.dcm')}: not a TIFF or DICOM file, expected a CT slice\n`,
    );
    expect(posts).toBe(before);
  });
});

describe('uploadStudy', () => {
  it('de-identifies once into a private spool (0700), uploads what it hashed, removes the spool, also on failure', async () => {
    const spools: { out: string; mode: number }[] = [];
    const once: typeof deidentifyStudy = async (src, out, options) => {
      const result = await deidentifyStudy(src, out, options);
      spools.push({ out, mode: statSync(dirname(out)).mode & 0o777 });
      return result;
    };
    const result = await uploadStudy({ api, key: 'key-h1', path: study, deidentify: once });
    expect(result).toMatchObject({ series: 2, slices: 4, skipped: 0 });
    expect(spools).toHaveLength(1);
    expect(spools[0]!.mode).toBe(0o700);
    expect(existsSync(dirname(spools[0]!.out))).toBe(false);
    // The bytes in S3 are the spooled bytes the manifest hashed (checked object by object above);
    // a wrong key fails after the spool was written: it is removed all the same.
    await expect(uploadStudy({ api, key: 'nope', path: study, deidentify: once })).rejects.toThrow(
      /POST \/studies: 403/,
    );
    expect(spools).toHaveLength(2);
    expect(existsSync(dirname(spools[1]!.out))).toBe(false);
  });
});

describe('uploadStudy --map', () => {
  it('writes the map once the study exists: the study id, the API, the series ids and slice names sent', async () => {
    const mapFile = join(work, 'upload-map.json');
    let sent: { id: string; slices: { name: string }[] }[] = [];
    const result = await uploadStudy({
      api,
      key: 'key-h1',
      path: study,
      mapFile,
      deidentify: async (src, out, options) => {
        const done = await deidentifyStudy(src, out, options);
        sent = done.series.map((s) => ({
          id: s.id,
          slices: s.slices.map((x) => ({ name: x.output.split('/')[1]! })),
        }));
        return done;
      },
    });
    expect(statSync(mapFile).mode & 0o777).toBe(0o600);
    const map = JSON.parse(readFileSync(mapFile, 'utf8')) as {
      upload?: { api: string; studyId: string };
      output?: string;
      source: string;
      series: { id: string; slices: { output: string; source: string }[] }[];
    };
    expect(map.upload).toEqual({ api, studyId: result.studyId });
    // No folder that no longer exists (the spool is deleted).
    expect(map.output).toBeUndefined();
    expect(
      map.series.map((s) => ({ id: s.id, slices: s.slices.map((x) => ({ name: x.output.split('/')[1] })) })),
    ).toEqual(sent);
    expect(map.series.flatMap((s) => s.slices.map((x) => x.output.startsWith(`${s.id}/`)))).not.toContain(
      false,
    );
    expect(map.series[0]!.slices.map((x) => x.source)).toEqual([
      'series A/1.dcm',
      'series A/2.dcm',
      'series A/3.dcm.gz',
    ]);
    // A study the API refuses leaves no map (there is no study to go back from).
    const refused = join(work, 'refused-map.json');
    await expect(uploadStudy({ api, key: 'nope', path: study, mapFile: refused })).rejects.toThrow(/403/);
    expect(existsSync(refused)).toBe(false);
  });
});

describe.skipIf(!existsSync(CLI))('covidct upload interrupted', () => {
  it('SIGTERM while the API does not answer: the spool is removed, exit 143', async () => {
    const tmp = join(work, 'tmp-sigterm');
    await mkdir(tmp, { recursive: true });
    const child = spawn(process.execPath, [CLI, 'upload', study, '--api', api, '--key', 'key-hang'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, TMPDIR: tmp },
    });
    let stderr = '';
    child.stderr.on('data', (c) => {
      stderr += c;
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    // Wait until the spool holds the de-identified study (the POST is then pending).
    const spooled = () =>
      readdirSync(tmp)
        .filter((f) => f.startsWith('covidct-upload-'))
        .some((f) => existsSync(join(tmp, f, 'study', 'series-2')));
    for (let i = 0; i < 600 && !spooled(); i++) await new Promise((r) => setTimeout(r, 50));
    expect(spooled(), stderr).toBe(true);
    await new Promise((r) => setTimeout(r, 200));
    child.kill('SIGTERM');
    const { code, signal } = await exited;
    expect({ code, signal }).toEqual({ code: 143, signal: null });
    expect(readdirSync(tmp)).toEqual([]);
  }, 60_000);
});
