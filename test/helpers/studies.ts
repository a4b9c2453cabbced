/**
 * Whole studies on the local stack for the reliability tests (faults, load): the rule model
 * uploaded for the worker, phantom and real series written to folders, uploads through the API as
 * a hospital's client sends them (presigned URLs, manifest last), and the checks that must hold
 * after every run: each study COMPLETE or FAILED with a reason, each selected slice counted exactly
 * once (read from the per-slice vote items), dead-letter queues empty, nothing left in the queues.
 */
import { createHash } from 'node:crypto';
import { cp, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
} from '@aws-sdk/client-sqs';
import { writePhantomSeries } from '../../core/phantom/series.js';
import type { LocalResources } from '../../local/resources.js';
import { initBackend } from '../../models/backend.js';
import { CLASS_NAMES } from '../../models/classes.js';
import { saveModel } from '../../models/io.js';
import type { AwsClients, StudyRecord, StudyStore } from '../../pipeline/index.js';
import { parseStudyNotification, type StudyNotification } from '../../pipeline/index.js';
import { buildRuleModel } from './rule-model.js';

/** The real sample series (B70f of Lung-PET-CT-Dx A0002, 12 selected slices), as .dcm.gz files. */
export const REAL_SERIES = join(import.meta.dirname, '..', '..', 'samples', 'lung-pet-ct-dx-A0002', 'B70f');

/** Save the rule model (tiny, labels known) into `dir` for `startLocalStack({ uploadModel })`. */
export async function saveRuleModel(dir: string): Promise<void> {
  await initBackend({ prefer: 'wasm', log: () => {} });
  const model = buildRuleModel();
  await saveModel(model, dir, {
    arch: 'mean-rule',
    classes: [...CLASS_NAMES],
    createdBy: 'covidct reliability tests',
  });
  model.dispose();
}

/** Write a one-series phantom study under `dir/{name}/SR_2`; returns the study folder. */
export async function phantomStudy(dir: string, name: string, seed: number, slices: number): Promise<string> {
  const folder = join(dir, name);
  await writePhantomSeries(join(folder, 'SR_2'), {
    covid: seed % 2 === 0,
    seed,
    slices,
    format: 'dicom',
    force: false,
  });
  return folder;
}

/** Copy the real sample series into `dir/{name}/B70f`; returns the study folder. */
export async function realStudy(dir: string, name: string): Promise<string> {
  const folder = join(dir, name);
  await mkdir(folder, { recursive: true });
  await cp(REAL_SERIES, join(folder, 'B70f'), { recursive: true });
  return folder;
}

/** A study the test uploaded. */
export interface Uploaded {
  readonly hospital: string;
  readonly studyId: string;
  /** `performance.now()` before the upload began and when the manifest (the last PUT) was sent. */
  readonly startedAt: number;
  readonly uploadedAt: number;
}

/** Poll the table (through the given store, not the API) until every study is COMPLETE or FAILED. */
export async function waitFinished(
  store: StudyStore,
  studies: readonly Uploaded[],
  timeoutMs: number,
  onFinished?: (study: Uploaded, record: StudyRecord, at: number) => void,
): Promise<Map<string, StudyRecord>> {
  const done = new Map<string, StudyRecord>();
  const deadline = performance.now() + timeoutMs;
  while (done.size < studies.length) {
    for (const s of studies) {
      if (done.has(s.studyId)) continue;
      const record = await store.getStudy(s.hospital, s.studyId);
      if (record && (record.status === 'COMPLETE' || record.status === 'FAILED')) {
        done.set(s.studyId, record);
        onFinished?.(s, record, performance.now());
      }
    }
    if (done.size === studies.length) break;
    if (performance.now() > deadline) {
      const open = studies.filter((s) => !done.has(s.studyId));
      const states = await Promise.all(
        open.map(
          async (s) => `${s.studyId}: ${(await store.getStudy(s.hospital, s.studyId))?.status ?? 'missing'}`,
        ),
      );
      throw new Error(`${open.length} studies not finished in ${timeoutMs} ms: ${states.join(', ')}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return done;
}

/** What the per-slice items say of one study. */
export interface SliceAccount {
  readonly selected: number;
  readonly votes: number;
  readonly failures: number;
  /** Selected slices with no vote or failure item. */
  readonly missing: number;
  /** Vote or failure items for slices the study did not select. */
  readonly extra: number;
  /** Items recorded for the same slice more than once (impossible by key; counted to prove it). */
  readonly repeated: number;
}

/** Account every selected slice of a study against its stored vote and failure items. */
export async function accountSlices(
  store: StudyStore,
  hospital: string,
  studyId: string,
): Promise<SliceAccount> {
  const study = await store.getStudy(hospital, studyId);
  const selected = new Set<string>();
  for (const s of study?.series ?? [])
    for (const slice of s.slices) if (slice.selected) selected.add(slice.key);
  const { votes, failures } = await store.listSliceResults(hospital, studyId);
  const seen = new Map<string, number>();
  for (const item of [...votes, ...failures]) seen.set(item.key, (seen.get(item.key) ?? 0) + 1);
  let missing = 0;
  for (const key of selected) if (!seen.has(key)) missing++;
  let extra = 0;
  let repeated = 0;
  for (const [key, n] of seen) {
    if (!selected.has(key)) extra++;
    if (n > 1) repeated += n - 1;
  }
  return {
    selected: selected.size,
    votes: votes.length,
    failures: failures.length,
    missing,
    extra,
    repeated,
  };
}

/** Messages on a queue now (visible and in flight). */
export async function queueDepth(clients: Pick<AwsClients, 'sqs'>, url: string): Promise<number> {
  const a = (
    await clients.sqs.send(
      new GetQueueAttributesCommand({
        QueueUrl: url,
        AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
      }),
    )
  ).Attributes!;
  return Number(a.ApproximateNumberOfMessages) + Number(a.ApproximateNumberOfMessagesNotVisible);
}

/** Depths of the three dead-letter queues. */
export async function dlqDepths(
  clients: Pick<AwsClients, 'sqs'>,
  resources: LocalResources,
): Promise<{ ingest: number; inference: number; votes: number }> {
  const q = resources.queueUrls;
  const [ingest, inference, votes] = await Promise.all(
    [q.ingestDlq, q.inferenceDlq, q.votesDlq].map((url) => queueDepth(clients, url)),
  );
  return { ingest: ingest!, inference: inference!, votes: votes! };
}

/** Wait until the three pipeline queues hold nothing (visible or in flight). */
export async function settle(
  clients: Pick<AwsClients, 'sqs'>,
  resources: LocalResources,
  timeoutMs = 60_000,
): Promise<void> {
  const q = resources.queueUrls;
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const depths = await Promise.all([q.ingest, q.inference, q.votes].map((url) => queueDepth(clients, url)));
    if (depths.every((d) => d === 0)) return;
    if (performance.now() > deadline)
      throw new Error(`queues not empty after ${timeoutMs} ms: ${depths.join(', ')}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Receive (and delete) every notification on a hospital's subscribed queue so far; each receive waits up to `waitSeconds` (long poll) for one. */
export async function receiveNotifications(
  clients: Pick<AwsClients, 'sqs'>,
  queueUrl: string,
  waitSeconds = 0,
): Promise<StudyNotification[]> {
  const out: StudyNotification[] = [];
  for (;;) {
    const got = await clients.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: waitSeconds,
      }),
    );
    const messages = got.Messages ?? [];
    if (messages.length === 0) return out;
    for (const m of messages)
      out.push(parseStudyNotification((JSON.parse(m.Body!) as { Message: string }).Message));
    await clients.sqs.send(
      new DeleteMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle! })),
      }),
    );
  }
}

/** The p-th percentile (nearest rank) of `values`. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1]!;
}

/** What `POST /studies` answers. */
export interface CreatedStudy {
  readonly studyId: string;
  readonly expiresIn: number;
  readonly uploads: readonly { readonly key: string; readonly url: string }[];
  readonly manifest: { readonly key: string; readonly url: string; readonly body: unknown };
}

/**
 * Create a one-series study through the API and PUT each slice's bytes exactly as given (no
 * de-identification, unlike `covidct upload`: a PACS sending straight), then the manifest the API
 * handed out, last. Throws on any answer that is not a success.
 */
export async function createAndUploadRaw(
  apiUrl: string,
  apiKey: string,
  seriesId: string,
  slices: readonly { readonly name: string; readonly bytes: Uint8Array }[],
): Promise<CreatedStudy> {
  const res = await fetch(`${apiUrl}/studies`, {
    method: 'POST',
    headers: { 'x-api-key': apiKey, 'content-type': 'application/json' },
    body: JSON.stringify({
      series: [
        {
          id: seriesId,
          slices: slices.map((s) => ({
            name: s.name,
            sha256: createHash('sha256').update(s.bytes).digest('hex'),
            size: s.bytes.length,
          })),
        },
      ],
    }),
  });
  if (res.status !== 201) throw new Error(`POST /studies answered ${res.status}: ${await res.text()}`);
  const created = (await res.json()) as CreatedStudy;
  const put = async (url: string, body: Uint8Array | string, what: string) => {
    const r = await fetch(url, { method: 'PUT', body });
    if (!r.ok) throw new Error(`PUT ${what} answered ${r.status}`);
  };
  for (const s of slices) {
    const upload = created.uploads.find((u) => u.key.endsWith(`/${s.name}`));
    if (upload === undefined) throw new Error(`no upload URL for ${s.name}`);
    await put(upload.url, s.bytes, s.name);
  }
  await put(created.manifest.url, JSON.stringify(created.manifest.body), 'manifest');
  return created;
}
