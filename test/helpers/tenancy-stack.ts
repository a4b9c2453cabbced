/**
 * The local stack the tenancy and patient-data suite runs against (issue 7, item 5): two
 * hospitals, the real handlers with their logs captured, the real worker process with the rule
 * model, each hospital's notifications on a queue; the fake patient identity planted in phantom
 * DICOM slices, calls to the API as either hospital, and the reads the patient-data scan makes
 * (every table item, bucket object, queued message; where planted values turn up).
 */
import { join } from 'node:path';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { ScanCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll } from 'vitest';
import { encodeDicomCt } from '../../core/dicom/encode.js';
import { phantomDicomMeta } from '../../core/phantom/files.js';
import { createPhantom } from '../../core/phantom/phantom.js';
import type { ApiHandler } from '../../local/api-server.js';
import type { SqsEventHandler } from '../../local/event-source.js';
import { type LocalStack, startLocalStack } from '../../local/stack.js';
import { quietObservability, subscribeHospitalQueue } from './pipeline.js';
import { collectStackErrors } from './stack-errors.js';
import { saveRuleModel } from './studies.js';
import { tempDir } from './tmp.js';

/** Hospital A (whose studies B must not reach) and its API key. */
export const A = { hospital: 'hospital-a', apiKey: 'tenancy-key-hospital-a-0123456789' };
/** Hospital B and its API key. */
export const B = { hospital: 'hospital-b', apiKey: 'tenancy-key-hospital-b-0123456789' };

/** Fake patient identity written into the DICOM headers: none of it may leave the uploads. */
export const PATIENT = { name: 'ZZPHI^WILHELMINA^TESTPERSON', id: 'ZZPHI-ID-938172', birthDate: '19230405' };
/** The hospital's folder name for the study sent with `covidct upload`: it must not leave either. */
export const PHI_FOLDER = 'ZZDOE_JOHN_MRN99887766';
/** Pieces of {@link PATIENT} and {@link PHI_FOLDER} (and the birth date as ISO) the scans look for. */
export const PHI_STRINGS = [
  'ZZDOE',
  'MRN99887766',
  'ZZPHI',
  'WILHELMINA',
  'TESTPERSON',
  'ZZPHI-ID-938172',
  '938172',
  '19230405',
  '1923-04-05',
];

/** The suite's temp folder (the model, the hospital's folders). */
export const work = tempDir('covidct-tenancy-');
/** The running stack (set in {@link useTenancyStack}'s `beforeAll`). */
export let stack: LocalStack;
/** Each handler's log lines and metrics, captured. */
export const observed = {
  select: quietObservability('covidct-select'),
  aggregate: quietObservability('covidct-aggregate'),
  api: quietObservability('covidct-api'),
};
/** Every line the worker process printed. */
export const workerLines: string[] = [];
/** Errors the stack reported. */
export const stackErrors: string[] = [];
const handlers: { select?: SqsEventHandler; aggregate?: SqsEventHandler; api?: ApiHandler } = {};
/** The queue receiving hospital A's notifications. */
export let notifyA: string;
/** The queue receiving hospital B's notifications. */
export let notifyB: string;

/** Write the birth date into the encoder's empty (0010,0030) DA element (explicit VR little endian). */
function withBirthDate(bytes: Uint8Array, date: string): Uint8Array {
  const empty = [0x10, 0x00, 0x30, 0x00, 0x44, 0x41, 0x00, 0x00];
  for (let i = 132; i + empty.length <= bytes.length; i++) {
    if (!empty.every((b, k) => bytes[i + k] === b)) continue;
    const out = new Uint8Array(bytes.length + date.length);
    out.set(bytes.subarray(0, i + 6));
    out.set([date.length, 0], i + 6);
    out.set(Buffer.from(date, 'latin1'), i + 8);
    out.set(bytes.subarray(i + 8), i + 8 + date.length);
    return out;
  }
  throw new Error('no empty PatientBirthDate element');
}

/** 12 phantom slices (COVID lesions in the middle) carrying {@link PATIENT} in their headers. */
export function phiSlices(): { name: string; bytes: Uint8Array }[] {
  const phantom = createPhantom({ seed: 31, covid: true, slices: 12 });
  return Array.from({ length: 12 }, (_, i) => {
    const slice = phantom.slice(i);
    const meta = {
      ...phantomDicomMeta(phantom.info, slice),
      patientName: PATIENT.name,
      patientId: PATIENT.id,
    };
    const bytes = withBirthDate(
      encodeDicomCt(slice.pixels, phantom.info.width, phantom.info.height, { ...meta, bitsStored: 16 }),
      PATIENT.birthDate,
    );
    return { name: `${String(i + 1).padStart(3, '0')}.dcm`, bytes };
  });
}

/**
 * Start the stack in `beforeAll` (into {@link stack}, with the handlers' logs in {@link observed},
 * the worker's lines in {@link workerLines}, notifications in {@link notifyA} and {@link notifyB})
 * and stop it in `afterAll`.
 */
export function useTenancyStack(): void {
  beforeAll(async () => {
    await saveRuleModel(join(work, 'model'));
    stack = await startLocalStack({
      hospitals: [A, B],
      uploadModel: { dir: join(work, 'model'), name: 'tenancy', version: '1' },
      workerEnv: { COVIDCT_POOL_SIZE: '1', COVIDCT_WORKER_WAIT_SECONDS: '1' },
      onWorkerLine: (line) => workerLines.push(line),
      pollWaitSeconds: 1,
      visibilityTimeoutSeconds: 10,
      // The handlers are made once the stack's clients exist, each with its logs captured.
      handlers: {
        select: (event, context) => handlers.select!(event, context),
        aggregate: (event, context) => handlers.aggregate!(event, context),
        api: (event, context) => handlers.api!(event, context),
      },
      onError: collectStackErrors(stackErrors),
    });
    const env = { ...process.env, ...stack.env };
    const s = await import('../../lambdas/select/handler.js');
    const g = await import('../../lambdas/aggregate/handler.js');
    const p = await import('../../lambdas/api/handler.js');
    handlers.select = s.makeSelectHandler(stack.clients, s.selectConfigFromEnv(env), observed.select);
    handlers.aggregate = g.makeAggregateHandler(
      stack.clients,
      g.aggregateConfigFromEnv(env),
      observed.aggregate,
    );
    handlers.api = p.makeApiHandler(stack.clients, p.apiConfigFromEnv(env), observed.api);
    notifyA = await subscribeHospitalQueue(
      stack.clients,
      stack.resources.topicArn,
      'tenancy-notify-a',
      A.hospital,
    );
    notifyB = await subscribeHospitalQueue(
      stack.clients,
      stack.resources.topicArn,
      'tenancy-notify-b',
      B.hospital,
    );
  }, 180_000);

  afterAll(async () => {
    await stack?.stop();
  });
}

/** Call the API at `path` with `key`; the status, parsed body and text. */
export async function call(
  path: string,
  key: string,
  init: { method?: string; body?: string } = {},
): Promise<{ status: number; body: unknown; text: string }> {
  const res = await fetch(`${stack.apiUrl}${path}`, {
    method: init.method ?? (init.body !== undefined ? 'POST' : 'GET'),
    headers: { 'x-api-key': key, 'content-type': 'application/json' },
    ...(init.body !== undefined ? { body: init.body } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text) as unknown, text };
}

/** Poll the study with `key` until it is in one of `statuses`, up to `seconds`. */
export async function waitFor(
  studyId: string,
  key: string,
  statuses: string[],
  seconds = 120,
): Promise<{ status: string }> {
  let body: { status: string } = { status: 'unknown' };
  for (let i = 0; i < seconds * 4; i++) {
    body = (await call(`/studies/${studyId}`, key)).body as { status: string };
    if (statuses.includes(body.status)) return body;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`study ${studyId} is ${body.status} after ${seconds} s`);
}

/** A place the patient-data scan read, and its text. */
export interface Scanned {
  readonly where: string;
  readonly text: string;
}

/** Every item of the stack's DynamoDB table (all pages), as JSON named by its keys. */
export async function dynamoItems(): Promise<Scanned[]> {
  const out: Scanned[] = [];
  let start: Record<string, unknown> | undefined;
  do {
    const page = await stack.clients.dynamo.send(
      new ScanCommand({
        TableName: stack.resources.tableName,
        ...(start ? { ExclusiveStartKey: start } : {}),
      }),
    );
    for (const item of page.Items ?? [])
      out.push({ where: `dynamodb ${item.pk}/${item.sk}`, text: JSON.stringify(item) });
    start = page.LastEvaluatedKey;
  } while (start);
  return out;
}

/** Every object key in the stack's bucket under `prefix` (the whole bucket without one), all pages. */
export async function listKeys(prefix?: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const listed = await stack.clients.s3.send(
      new ListObjectsV2Command({ Bucket: stack.resources.bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const o of listed.Contents ?? []) keys.push(o.Key!);
    token = listed.NextContinuationToken;
  } while (token);
  return keys;
}

/** The bytes of the object at `key` in the stack's bucket. */
export async function objectBytes(key: string): Promise<Buffer> {
  const got = await stack.clients.s3.send(new GetObjectCommand({ Bucket: stack.resources.bucket, Key: key }));
  return Buffer.from(await got.Body!.transformToByteArray());
}

/** Every message waiting on `queue`: receives until one comes back empty. */
export async function receiveAll(queue: string): Promise<string[]> {
  const out: string[] = [];
  for (;;) {
    const got = await stack.clients.sqs.send(
      new ReceiveMessageCommand({ QueueUrl: queue, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }),
    );
    if (!got.Messages?.length) return out;
    for (const m of got.Messages) out.push(m.Body ?? '');
  }
}

/** Per planted value (or name) found in `places`, where it was found. */
export function findPlanted(values: readonly string[], places: readonly Scanned[]): Map<string, string[]> {
  const found = new Map<string, string[]>();
  const anyPlanted = new RegExp(
    [...values]
      .sort((a, b) => b.length - a.length)
      .map((v) => v.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
      .join('|'),
    'g',
  );
  // The UIDs covidct made (2.25 + a 128-bit HMAC, 30 to 39 digits) are random digits: a short
  // numeric planted value (a US or IS value such as 60118) turns up in one now and then by chance.
  // Planted UIDs (2.25.4242 + 6 digits) are far shorter and still found.
  const newUids = /2\.25\.\d{30,}/g;
  for (const { where, text: raw } of places) {
    const text = raw.replace(newUids, '2.25.(new)');
    for (const v of new Set([...text.matchAll(anyPlanted)].map((m) => m[0]))) {
      found.set(v, [...(found.get(v) ?? []), where]);
    }
  }
  return found;
}
