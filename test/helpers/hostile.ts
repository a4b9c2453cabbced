/**
 * The local stack the hostile-upload suites attack (issue 7, item 2): the real API, select and
 * aggregate handlers behind the local API Gateway and SQS event sources, two hospitals, no worker;
 * four phantom slices that select; and the moves of a hostile sender (API calls, studies created
 * and uploaded, manifests edited) with the outcome each case must reach.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, expect } from 'vitest';
import { encodePhantomSlice } from '../../core/phantom/files.js';
import { createPhantom } from '../../core/phantom/phantom.js';
import type { LocalStack } from '../../local/stack.js';
import { type StudyRecord, StudyStore } from '../../pipeline/index.js';
import { quietObservability } from './pipeline.js';
import { startStackWithSelect } from './select-stack.js';

/** Hospital A and its API key (the sender in most cases). */
export const A = { hospital: 'hospital-a', apiKey: 'hostile-key-hospital-a-0123456789' };
/** Hospital B and its API key (the other tenant). */
export const B = { hospital: 'hospital-b', apiKey: 'hostile-key-hospital-b-0123456789' };
/** SHA-256 (hex) of bytes or text. */
export const sha = (bytes: Uint8Array | string) => createHash('sha256').update(bytes).digest('hex');

/** The running stack (set in {@link useHostileStack}'s `beforeAll`). */
export let stack: LocalStack;
/** The study table of {@link stack}. */
export let store: StudyStore;
/** The select handler's log lines and metrics, kept quiet. */
export const observed = quietObservability('covidct-select');
/** Errors the event sources reported from a handler. */
export let errors: string[] = [];

/** Four phantom slices with open lungs (the middle of a 9-slice series), so a valid study selects some. */
export const phantom = createPhantom({ seed: 7, covid: false, slices: 9 });
export const SLICES = [3, 4, 5, 6].map((i) => ({
  name: `s${i}.dcm`,
  bytes: encodePhantomSlice(phantom.info, phantom.slice(i), 'dicom'),
}));

/**
 * Start the stack in `beforeAll` (into {@link stack}, {@link store}, {@link errors}) and stop it in
 * `afterAll`, then print every {@link record}ed case (for the reliability report).
 */
export function useHostileStack(): void {
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

  afterAll(() => {
    console.info(`hostile uploads: ${outcomes.length} cases\n${outcomes.map((o) => `  ${o}`).join('\n')}`);
  });
}

/** A study created through the API: its id, the presigned slice uploads and the manifest. */
export interface Created {
  studyId: string;
  uploads: { seriesId: string; key: string; url: string }[];
  manifest: { key: string; url: string; body: { series: { id: string; slices: { key: string }[] }[] } };
}

/** Call the local API at `path` with hospital A's key (another, or none with `null`); the status and JSON body. */
export async function api(
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
export function expectRejection(
  res: { status: number; body: { message?: string } },
  status: number,
  field: RegExp,
): void {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(res.body.message).toMatch(field);
  expect(res.body.message).not.toMatch(/[\r\n]/);
}

/** Create a study of the phantom slices through the API. */
export async function createStudy(slices = SLICES): Promise<Created> {
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

/** PUT bytes to a presigned URL, expecting 200. */
export async function put(url: string, body: Uint8Array | string): Promise<void> {
  const res = await fetch(url, { method: 'PUT', body });
  expect(res.ok, await res.text()).toBe(true);
}

/** Upload the slices (all, or those `only` names) through their presigned URLs. */
export async function uploadSlices(
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
export async function settled(studyId: string, hospital = A.hospital): Promise<StudyRecord> {
  for (let i = 0; i < 200; i++) {
    const study = await store.getStudy(hospital, studyId);
    if (study && study.status !== 'RECEIVED' && study.status !== 'SELECTING') return study;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`study ${studyId} is stuck in ${(await store.getStudy(hospital, studyId))?.status}`);
}

/** Upload a manifest text for a created study and wait for the outcome: FAILED with a reason matching `reason`. */
export async function expectFailed(
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
export function editedManifest(
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

/** Record a case (what was sent, how it ended) for the report {@link useHostileStack} prints. */
export const record = (what: string, how: string) => outcomes.push(`${what} → ${how}`);
