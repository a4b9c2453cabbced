/**
 * The messages between the pipeline's stages: the inference message (select Lambda → GPU worker),
 * the votes message (GPU worker → aggregate Lambda) and the SNS notification of a finished study
 * (→ hospitals). Every parser takes JSON text and checks every key against the study's prefixes.
 */
import * as v from 'valibot';
import { INTENDED_USE_EXPECTED, type IntendedUse, isIntendedUse } from '../core/intended-use.js';
import { isStudyObjectKey, resultsPrefix, studyPrefix } from './keys.js';
import {
  id,
  MAX_FAILURE_REASON_CHARS,
  MAX_SLICES_PER_INFERENCE_MESSAGE,
  MAX_VOTES_PER_MESSAGE,
  messageError,
  objectKey,
  parseJson,
  probability,
  sha256,
  threshold,
  validate,
} from './message-schema.js';

// Inference message (select λ → GPU worker)

const inferenceSchema = v.object({
  hospital: id('hospital id'),
  studyId: id('study id'),
  seriesId: id('series id'),
  slices: v.pipe(
    v.array(v.object({ key: objectKey, sha256 }), 'expected an array of slices'),
    v.minLength(1, 'expected at least one slice'),
    v.maxLength(
      MAX_SLICES_PER_INFERENCE_MESSAGE,
      `expected at most ${MAX_SLICES_PER_INFERENCE_MESSAGE} slices`,
    ),
  ),
  threshold: v.optional(threshold),
});

/** A few selected slices of one series to classify (`PIPELINE_DEFAULTS.slicesPerInferenceMessage` per message). */
export interface InferenceMessage {
  readonly hospital: string;
  readonly studyId: string;
  readonly seriesId: string;
  /** Keys under `incoming/{hospital}/{studyId}/` and the SHA-256 the manifest gave (the worker checks it). */
  readonly slices: ReadonlyArray<{ readonly key: string; readonly sha256: string }>;
  /** The study's vote threshold (informational: the aggregate Lambda decides from the study item). */
  readonly threshold?: number | undefined;
}

/** Parse an inference queue message body; every key must lie under the study's prefix. */
export function parseInferenceMessage(json: string): InferenceMessage {
  const message: InferenceMessage = validate('inference', inferenceSchema, parseJson('inference', json));
  message.slices.forEach((slice, i) => {
    if (!isStudyObjectKey(slice.key, message.hospital, message.studyId)) {
      throw messageError(
        `inference.slices[${i}].key`,
        `'${slice.key}' is not an object under ${studyPrefix(message.hospital, message.studyId)}`,
      );
    }
  });
  return message;
}

// Votes message (GPU worker → aggregate λ)

/** A model manifest's `intendedUse` as votes and notifications carry it: core/intended-use.ts's rule. */
const intendedUseSchema = v.pipe(
  v.custom<IntendedUse>(isIntendedUse, INTENDED_USE_EXPECTED),
  // Only the two fields travel on, as parseIntendedUse keeps them.
  v.transform(({ diagnostic, statement }): IntendedUse => ({ diagnostic, statement })),
);

const votesSchema = v.object({
  hospital: id('hospital id'),
  studyId: id('study id'),
  model: v.object({
    id: v.pipe(
      v.string('expected a model id'),
      v.minLength(1, 'expected a model id'),
      v.maxLength(200, 'expected at most 200 characters'),
    ),
    sha256,
    // Optional: a worker from before intendedUse sends none, which counts as not diagnostic.
    intendedUse: v.optional(intendedUseSchema),
  }),
  votes: v.pipe(
    v.array(
      v.object({
        seriesId: id('series id'),
        key: objectKey,
        probabilities: v.tuple([probability, probability], 'expected [pCovid, pNormal]'),
        label: v.picklist(['covid', 'normal'], "expected 'covid' or 'normal'"),
        heatmapKey: v.optional(objectKey),
      }),
      'expected an array of votes',
    ),
    v.maxLength(MAX_VOTES_PER_MESSAGE, `expected at most ${MAX_VOTES_PER_MESSAGE} votes`),
  ),
  failures: v.optional(
    v.pipe(
      v.array(
        v.object({
          seriesId: id('series id'),
          key: objectKey,
          reason: v.pipe(
            v.string('expected a reason string'),
            v.minLength(1, 'expected a reason'),
            v.maxLength(MAX_FAILURE_REASON_CHARS, `expected at most ${MAX_FAILURE_REASON_CHARS} characters`),
            v.check((r) => !/[\r\n]/.test(r), 'expected one line'),
          ),
        }),
        'expected an array of failures',
      ),
      v.maxLength(MAX_VOTES_PER_MESSAGE, `expected at most ${MAX_VOTES_PER_MESSAGE} failures`),
    ),
  ),
});

/** One classified slice. */
export interface SliceVote {
  readonly seriesId: string;
  /** The slice's object key (as in the inference message). */
  readonly key: string;
  /** `[pCovid, pNormal]`: class index 0 is COVID (core/vote.ts). */
  readonly probabilities: readonly [number, number];
  readonly label: 'covid' | 'normal';
  /** The Grad-CAM overlay under `results/{hospital}/{studyId}/`, for COVID slices. */
  readonly heatmapKey?: string | undefined;
}

/**
 * A selected slice the worker can never classify (hash mismatch, undecodable, wrong size): reported
 * so that the study can finish without it. `reason` is one line naming the file and the fault, no PHI.
 */
export interface SliceFailureReport {
  readonly seriesId: string;
  /** The slice's object key (as in the inference message). */
  readonly key: string;
  readonly reason: string;
}

/** The model that voted: its id (`{name}/{version}`), the SHA-256 of its files and its intended use. */
export interface VotingModel {
  readonly id: string;
  readonly sha256: string;
  /** From the model's manifest; absent counts as not for diagnostic use. */
  readonly intendedUse?: IntendedUse | undefined;
}

/** A batch of votes (and permanent slice failures) of one study, from one model. */
export interface VotesMessage {
  readonly hospital: string;
  readonly studyId: string;
  readonly model: VotingModel;
  /** May be empty when `failures` has entries. */
  readonly votes: readonly SliceVote[];
  readonly failures?: readonly SliceFailureReport[] | undefined;
}

/** Parse a votes queue message body; slice keys under the study's prefix, heatmaps under its results. */
export function parseVotesMessage(json: string): VotesMessage {
  const message: VotesMessage = validate('votes', votesSchema, parseJson('votes', json));
  const results = resultsPrefix(message.hospital, message.studyId);
  message.votes.forEach((vote, i) => {
    if (!isStudyObjectKey(vote.key, message.hospital, message.studyId)) {
      throw messageError(
        `votes.votes[${i}].key`,
        `'${vote.key}' is not an object under ${studyPrefix(message.hospital, message.studyId)}`,
      );
    }
    if (vote.heatmapKey !== undefined && !vote.heatmapKey.startsWith(results)) {
      throw messageError(`votes.votes[${i}].heatmapKey`, `'${vote.heatmapKey}' is not under ${results}`);
    }
  });
  (message.failures ?? []).forEach((failure, i) => {
    if (!isStudyObjectKey(failure.key, message.hospital, message.studyId)) {
      throw messageError(
        `votes.failures[${i}].key`,
        `'${failure.key}' is not an object under ${studyPrefix(message.hospital, message.studyId)}`,
      );
    }
  });
  if (message.votes.length === 0 && (message.failures ?? []).length === 0) {
    throw messageError('votes.votes', 'expected at least one vote or failure');
  }
  return message;
}

// SNS notification (aggregate λ / select λ → hospitals)

const notificationSchema = v.object({
  version: v.literal(1, 'expected 1'),
  hospital: id('hospital id'),
  studyId: id('study id'),
  status: v.picklist(['COMPLETE', 'FAILED'], "expected 'COMPLETE' or 'FAILED'"),
  reason: v.optional(v.string()),
  decision: v.nullable(v.picklist(['covid', 'normal'])),
  covidFraction: v.nullable(v.number()),
  selectedCount: v.number(),
  classifiedCount: v.number(),
  covidCount: v.number(),
  threshold: v.number(),
  reportKey: v.optional(v.string()),
  model: v.optional(v.object({ id: v.string(), sha256: v.string() })),
  intendedUse: v.optional(intendedUseSchema),
  finishedAt: v.string(),
});

/**
 * The SNS message published once per finished study, with the `hospital` message attribute
 * (TOPIC.hospitalAttribute) for subscription filter policies. No patient data.
 */
export interface StudyNotification {
  readonly version: 1;
  readonly hospital: string;
  readonly studyId: string;
  readonly status: 'COMPLETE' | 'FAILED';
  /** Why a study FAILED. */
  readonly reason?: string | undefined;
  /** `null` when nothing was classified. */
  readonly decision: 'covid' | 'normal' | null;
  readonly covidFraction: number | null;
  readonly selectedCount: number;
  readonly classifiedCount: number;
  readonly covidCount: number;
  readonly threshold: number;
  /** `results/{hospital}/{studyId}/report.json`, for COMPLETE studies. */
  readonly reportKey?: string | undefined;
  readonly model?: { readonly id: string; readonly sha256: string } | undefined;
  /** What the deciding model is for, on every COMPLETE study: not diagnostic unless it says so. */
  readonly intendedUse?: IntendedUse | undefined;
  /** ISO 8601. */
  readonly finishedAt: string;
}

/** Parse an SNS notification body (the `Message` of the SNS envelope). */
export function parseStudyNotification(json: string): StudyNotification {
  return validate('notification', notificationSchema, parseJson('notification', json));
}
