/**
 * The select stage as plain functions over injected clients: one manifest event → the study's
 * selection recorded and its selected slices queued for inference, or the study FAILED with a
 * reason. The Lambda handler (handler.ts) only parses the SQS batch and calls {@link selectManifest}.
 *
 * Retries and duplicates: the study moves RECEIVED → SELECTING → CLASSIFYING by conditional
 * writes. A duplicate manifest event finds the study past RECEIVED and changes nothing; a retry
 * after a crash finds it SELECTING (selects again; only one delivery can record) or CLASSIFYING
 * without `enqueued` (sends the slices again: the votes are idempotent, so repeats are harmless).
 */
import { createHash } from 'node:crypto';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SNSClient } from '@aws-sdk/client-sns';
import { SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { forEachLimited } from '../../core/concurrency.js';
import { describeError, InputError } from '../../core/errors.js';
import { decodeSlice } from '../../core/read.js';
import { countDarkPixels, selectByCounts, selectionRows } from '../../core/selection.js';
import { compareSlices } from '../../core/study.js';
import type { StoredSeries, StoredSlice, StudyLog, StudyRecord, StudyStore } from '../../pipeline/index.js';
import {
  capReason,
  type InferenceMessage,
  MAX_MANIFEST_BYTES,
  type Manifest,
  type ManifestSlice,
  manifestKey,
  notifyOnce,
  ObjectNotFoundError,
  PIPELINE_DEFAULTS,
  parseManifest,
  parseManifestKey,
  QUEUES,
  readObject,
  reasonWithCauses,
  type S3ObjectEvent,
} from '../../pipeline/index.js';

/** What the select stage needs. */
export interface SelectDeps {
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  readonly sns: SNSClient;
  readonly store: StudyStore;
  readonly bucket: string;
  readonly inferenceQueueUrl: string;
  readonly topicArn: string;
  /** Slices read at once. @default 8 */
  readonly concurrency?: number;
  /** @default PIPELINE_DEFAULTS.slicesPerInferenceMessage */
  readonly slicesPerMessage?: number;
  readonly logger?: StudyLog;
}

/** What happened to one manifest event. */
export type SelectOutcome =
  | { readonly kind: 'ignored'; readonly why: string }
  | { readonly kind: 'duplicate'; readonly status: string }
  | { readonly kind: 'failed'; readonly reason: string; readonly slicesRead: number }
  | {
      readonly kind: 'classifying';
      readonly selectedCount: number;
      readonly slicesRead: number;
      readonly messages: number;
      readonly resent: boolean;
    };

/** A slice that cannot be used; the message is one line naming the object key. */
class SliceError extends InputError {
  override name = 'SliceError';
}

/**
 * Read an object whole within `maxBytes` (pipeline/s3-read.ts); a missing one is a
 * {@link SliceError} that says it was expected before the manifest.
 */
async function readStudyObject(deps: SelectDeps, key: string, maxBytes: number): Promise<Uint8Array> {
  try {
    return await readObject(deps.s3, deps.bucket, key, maxBytes);
  } catch (error) {
    if (error instanceof ObjectNotFoundError)
      throw new SliceError(key, 'not found in the bucket, expected it uploaded before the manifest');
    throw error;
  }
}

/** Read the study's manifest; bad input is a {@link MessageError} or {@link SliceError}. */
export async function readManifest(deps: SelectDeps, hospital: string, studyId: string): Promise<Manifest> {
  return (await readManifestWithHash(deps, hospital, studyId)).manifest;
}

/** Read the study's manifest and the SHA-256 (hex) of its bytes, recorded with the selection. */
async function readManifestWithHash(
  deps: SelectDeps,
  hospital: string,
  studyId: string,
): Promise<{ manifest: Manifest; sha256: string }> {
  const key = manifestKey(hospital, studyId);
  const bytes = await readStudyObject(deps, key, MAX_MANIFEST_BYTES);
  let text: string;
  try {
    // Fatal: bytes that are not UTF-8 would otherwise become U+FFFD and a confusing key error.
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new SliceError(key, 'not UTF-8 text, expected the JSON manifest');
  }
  const manifest = parseManifest(text, { hospital, studyId });
  return { manifest, sha256: createHash('sha256').update(bytes).digest('hex') };
}

/** One slice's figures after reading. */
interface SliceFigures {
  readonly slice: StoredSlice;
  readonly instanceNumber?: number | undefined;
  readonly sliceLocation?: number | undefined;
  readonly file: string;
}

/** Read, check (size, SHA-256) and count one slice, decoding only the selection rows. */
async function countSlice(deps: SelectDeps, slice: ManifestSlice): Promise<SliceFigures> {
  const bytes = await readStudyObject(deps, slice.key, PIPELINE_DEFAULTS.maxSliceBytes);
  if (bytes.length !== slice.size) {
    throw new SliceError(slice.key, `${bytes.length} bytes, the manifest says ${slice.size}`);
  }
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  if (sha256 !== slice.sha256) throw new SliceError(slice.key, 'content does not match the manifest sha256');
  let rows: Awaited<ReturnType<typeof decodeSlice>>;
  let darkPixels: number;
  try {
    rows = await decodeSlice(bytes, slice.key, { rows: selectionRows });
    darkPixels = countDarkPixels(rows);
  } catch (error) {
    // Decoding is pure computation over the bytes: any failure is about the file, never transient.
    if (error instanceof InputError) throw error;
    throw new SliceError(slice.key, `cannot be decoded (${describeError(error)})`);
  }
  const file = slice.key.slice(slice.key.lastIndexOf('/') + 1);
  return {
    // The hash and length just checked: recorded, so later stages need not trust the manifest again.
    slice: { key: slice.key, darkPixels, selected: false, sha256, size: bytes.length },
    instanceNumber: rows.header.instanceNumber,
    sliceLocation: rows.header.sliceLocation,
    file,
  };
}

/**
 * Select every series of a manifest: read the slices with bounded concurrency, order each series
 * (instance number, location, name), apply the paper's selection. A series with an unusable slice
 * or nothing selected is FAILED with a reason; transient errors (S3 throttling, network) throw.
 */
export async function selectSeries(
  deps: SelectDeps,
  manifest: Manifest,
): Promise<{ series: StoredSeries[]; slicesRead: number }> {
  const figures = manifest.series.map((s) => new Array<SliceFigures | undefined>(s.slices.length));
  const failures = new Map<number, string>();
  const jobs = manifest.series.flatMap((s, i) => s.slices.map((slice, j) => ({ i, j, slice })));
  let slicesRead = 0;
  await forEachLimited(jobs, deps.concurrency ?? 8, async ({ i, j, slice }) => {
    if (failures.has(i)) return; // the series is lost already: read nothing more of it
    try {
      figures[i]![j] = await countSlice(deps, slice);
      slicesRead++;
    } catch (error) {
      if (!(error instanceof InputError)) throw error;
      if (!failures.has(i)) failures.set(i, error.message);
    }
  });
  const series = manifest.series.map((s, i): StoredSeries => {
    const failure = failures.get(i);
    if (failure !== undefined) {
      return { id: s.id, status: 'FAILED', reason: failure, threshold: null, selectedCount: 0, slices: [] };
    }
    const ordered = (figures[i] as SliceFigures[]).slice().sort(compareSlices);
    const { threshold, selected } = selectByCounts(ordered.map((f) => f.slice.darkPixels));
    const slices = ordered.map((f, k) => ({ ...f.slice, selected: selected[k] === true }));
    const selectedCount = slices.filter((sl) => sl.selected).length;
    return selectedCount === 0
      ? {
          id: s.id,
          status: 'FAILED',
          reason: `series ${s.id}: no slice selected (no slice shows enough open lung)`,
          threshold,
          selectedCount: 0,
          slices,
        }
      : { id: s.id, status: 'SELECTED', threshold, selectedCount, slices };
  });
  return { series, slicesRead };
}

/**
 * The inference messages of a selection: a few selected slices of one series each, with the hashes
 * recorded in the selection (the manifest's only for a selection recorded without them).
 */
export function inferenceMessages(
  hospital: string,
  studyId: string,
  series: readonly StoredSeries[],
  manifest: Manifest | undefined,
  threshold: number,
  perMessage: number = PIPELINE_DEFAULTS.slicesPerInferenceMessage,
): InferenceMessage[] {
  const hashes = new Map<string, string>();
  for (const s of manifest?.series ?? []) for (const slice of s.slices) hashes.set(slice.key, slice.sha256);
  const messages: InferenceMessage[] = [];
  for (const s of series) {
    const selected = s.slices.filter((slice) => slice.selected);
    for (let i = 0; i < selected.length; i += perMessage) {
      messages.push({
        hospital,
        studyId,
        seriesId: s.id,
        slices: selected.slice(i, i + perMessage).map((slice) => {
          const sha256 = slice.sha256 ?? hashes.get(slice.key);
          // Only after a crash: the selection was recorded from a manifest since replaced.
          if (sha256 === undefined)
            throw new SliceError(slice.key, 'selected, but no longer in the manifest');
          return { key: slice.key, sha256 };
        }),
        threshold,
      });
    }
  }
  return messages;
}

/** Send messages in SendMessageBatch calls of 10; entries the queue refuses are retried, then the call throws. */
export async function sendInferenceMessages(
  sqs: SQSClient,
  queueUrl: string,
  messages: readonly InferenceMessage[],
): Promise<void> {
  for (let i = 0; i < messages.length; i += 10) {
    let entries = messages
      .slice(i, i + 10)
      .map((m, k) => ({ Id: String(k), MessageBody: JSON.stringify(m) }));
    for (let attempt = 0; entries.length > 0; attempt++) {
      const out = await sqs.send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: entries }));
      const failed = new Set((out.Failed ?? []).map((f) => f.Id));
      if (failed.size > 0 && attempt >= 2) {
        const first = out.Failed?.[0];
        throw new Error(
          `inference queue refused ${failed.size} messages (${first?.Code}: ${first?.Message})`,
        );
      }
      entries = entries.filter((e) => failed.has(e.Id));
    }
  }
}

/** Handle one S3 object event from the ingest queue. */
export async function selectManifest(deps: SelectDeps, event: S3ObjectEvent): Promise<SelectOutcome> {
  const log = deps.logger;
  if (event.bucket !== deps.bucket)
    return { kind: 'ignored', why: `bucket ${event.bucket} is not the pipeline's` };
  const where = parseManifestKey(event.key);
  if (!where) return { kind: 'ignored', why: 'not a study manifest key' };
  const { hospital, studyId } = where;
  let study = await deps.store.getStudy(hospital, studyId);
  // No study item: the manifest was not uploaded through POST /studies (which creates the study
  // and is the only way to get upload URLs). A manifest alone must not create a tenant's study.
  if (!study) return { kind: 'ignored', why: 'no such study (not created through the API)' };

  if (study.status === 'RECEIVED') {
    if (!(await deps.store.beginSelecting(hospital, studyId))) {
      // Another delivery began, or this one did and the response was lost (the SDK's retry then
      // fails the condition): SELECTING is selected again below, as after a crash.
      const now = await deps.store.getStudy(hospital, studyId);
      if (now?.status !== 'SELECTING') return { kind: 'duplicate', status: now?.status ?? 'missing' };
    }
  } else if (study.status === 'CLASSIFYING' && !study.enqueued) {
    return resend(deps, study);
  } else if (study.status === 'FAILED') {
    await notifyOnce(deps.store, deps.sns, deps.topicArn, study, QUEUES.ingest.visibilityTimeoutSeconds);
    return { kind: 'duplicate', status: study.status };
  } else if (study.status !== 'SELECTING') {
    return { kind: 'duplicate', status: study.status };
  }
  // SELECTING: ours now, or a retry of a delivery that crashed while selecting.

  const started = performance.now();
  const fail = async (cause: string, extra: Parameters<StudyStore['failStudy']>[3] = {}, slicesRead = 0) => {
    // Capped as the store caps it: the log line, the item and the notification say the same.
    const reason = capReason(cause);
    log?.warn('study failed', { reason }); // the handler appended the study's keys
    await deps.store.failStudy(hospital, studyId, reason, {
      ...extra,
      selectMs: performance.now() - started,
    });
    // Notified even when the transition reports false: its response may have been lost after it
    // was carried out (notifyOnce publishes once, and only for a finished study not yet notified).
    const failed = await deps.store.getStudy(hospital, studyId);
    if (failed?.status === 'FAILED') {
      study = failed;
      await notifyOnce(deps.store, deps.sns, deps.topicArn, study, QUEUES.ingest.visibilityTimeoutSeconds);
    }
    return { kind: 'failed', reason, slicesRead } as const;
  };

  let manifest: Manifest;
  let manifestSha256: string;
  try {
    ({ manifest, sha256: manifestSha256 } = await readManifestWithHash(deps, hospital, studyId));
  } catch (error) {
    if (error instanceof InputError) return fail(error.message);
    throw error;
  }
  const threshold = manifest.settings?.voteThreshold ?? study.threshold;
  const { series, slicesRead } = await selectSeries(deps, manifest);
  const selectedCount = series.reduce((sum, s) => sum + s.selectedCount, 0);
  const selectMs = performance.now() - started;
  log?.info('selected', {
    series: series.length,
    slicesRead,
    selectedCount,
    selectMs: Math.round(selectMs),
  });
  if (selectedCount === 0) {
    const reasons = series.map((s) => s.reason).filter((r): r is string => r !== undefined);
    return fail(reasonWithCauses('nothing to classify', reasons), { series, threshold }, slicesRead);
  }
  const inputs = {
    manifestSha256,
    slices: manifest.series.reduce((sum, s) => sum + s.slices.length, 0),
  };
  if (!(await deps.store.recordSelection(hospital, studyId, { series, threshold, selectMs, inputs }))) {
    // Recorded by another delivery, or by this one with its response lost: whoever gets here with
    // the selection not yet queued queues it (a repeat is counted once by the votes' conditional puts).
    const now = await deps.store.getStudy(hospital, studyId);
    if (now?.status === 'CLASSIFYING' && !now.enqueued) return resend(deps, now);
    return { kind: 'duplicate', status: now?.status ?? 'missing' };
  }
  const messages = inferenceMessages(hospital, studyId, series, manifest, threshold, deps.slicesPerMessage);
  await sendInferenceMessages(deps.sqs, deps.inferenceQueueUrl, messages);
  await deps.store.markEnqueued(hospital, studyId);
  return { kind: 'classifying', selectedCount, slicesRead, messages: messages.length, resent: false };
}

/** A retry after a crash between recording the selection and queueing it: queue it (again). */
async function resend(deps: SelectDeps, study: StudyRecord): Promise<SelectOutcome> {
  let messages: InferenceMessage[];
  const recorded = (study.series ?? []).every((s) => s.slices.every((sl) => !sl.selected || sl.sha256));
  try {
    // The selection carries its hashes: a manifest uploaded again since cannot change what is sent.
    const manifest = recorded ? undefined : await readManifest(deps, study.hospital, study.studyId);
    messages = inferenceMessages(
      study.hospital,
      study.studyId,
      study.series ?? [],
      manifest,
      study.threshold,
      deps.slicesPerMessage,
    );
  } catch (error) {
    if (!(error instanceof InputError)) throw error;
    // Valid when selected, unreadable or without a selected slice now (uploaded again with other
    // content): nothing to resend from. Retrying would only fill the DLQ and leave the study stuck.
    const reason = capReason(`manifest changed after selection: ${error.message}`);
    if (await deps.store.failStudy(study.hospital, study.studyId, reason)) {
      const failed = (await deps.store.getStudy(study.hospital, study.studyId)) as StudyRecord;
      await notifyOnce(deps.store, deps.sns, deps.topicArn, failed, QUEUES.ingest.visibilityTimeoutSeconds);
    }
    return { kind: 'failed', reason, slicesRead: 0 };
  }
  await sendInferenceMessages(deps.sqs, deps.inferenceQueueUrl, messages);
  await deps.store.markEnqueued(study.hospital, study.studyId);
  deps.logger?.info('selection re-sent', {
    hospital: study.hospital,
    study: study.studyId,
    messages: messages.length,
  });
  return {
    kind: 'classifying',
    selectedCount: study.selectedCount,
    slicesRead: 0,
    messages: messages.length,
    resent: true,
  };
}
