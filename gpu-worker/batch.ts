/**
 * The steps of one inference batch that need no queue: the slice jobs of the messages, which
 * messages are done and which must reappear once the slices are classified, and the votes messages
 * of each study. The consumer (consumer.ts) runs them between receiving and deleting.
 */
import {
  type InferenceMessage,
  MAX_FAILURE_REASON_CHARS,
  MAX_VOTES_PER_MESSAGE,
  type SliceFailureReport,
  type SliceVote,
  type VotesMessage,
  type VotingModel,
} from '../pipeline/index.js';
import type { BatchOutcome, SliceJob } from './classify.js';
import type { WorkerLog } from './observability.js';

/** A message the consumer holds: its SQS id, its newest receipt handle, its body and its log. */
export interface Held {
  readonly sqsId: string;
  receiptHandle: string;
  readonly message: InferenceMessage;
  /** The consumer's log with the message's correlation keys, bound when it was received. */
  readonly log: WorkerLog;
}

/** A message of the batch and where its slices are among the batch's jobs (`from` ≤ j < `to`). */
export interface BatchPart {
  readonly held: Held;
  readonly from: number;
  readonly to: number;
}

/** Split `items` into chunks of at most `size`. */
export function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** The slices of every message of the batch, in order, as one list of jobs. */
export function sliceJobs(batch: readonly Held[]): { jobs: SliceJob[]; parts: BatchPart[] } {
  const jobs: SliceJob[] = [];
  const parts: BatchPart[] = [];
  for (const held of batch) {
    const m = held.message;
    parts.push({ held, from: jobs.length, to: jobs.length + m.slices.length });
    for (const s of m.slices) {
      jobs.push({
        hospital: m.hospital,
        studyId: m.studyId,
        seriesId: m.seriesId,
        key: s.key,
        sha256: s.sha256,
      });
    }
  }
  return { jobs, parts };
}

/**
 * Which messages are ready to report and which must reappear. A message is reported only when
 * every slice of it is classified or permanently failed: never half-done. A transient failure
 * leaves the whole message to reappear.
 */
export function sortMessages(
  parts: readonly BatchPart[],
  outcome: BatchOutcome,
): { ready: BatchPart[]; retry: Held[] } {
  const ready: BatchPart[] = [];
  const retry: Held[] = [];
  for (const part of parts) {
    const { held } = part;
    const failed = outcome.outcomes.slice(part.from, part.to).filter((o) => !o.ok);
    const transient = failed.filter((o) => !o.permanent);
    if (transient.length === 0) {
      ready.push(part);
      if (failed.length > 0) {
        held.log.warn('slices cannot be classified; reported as failed', {
          seriesId: held.message.seriesId,
          failed: failed.length,
          error: failed[0]!.error,
        });
      }
      continue;
    }
    retry.push(held);
    held.log.error('slices not classified; message left to reappear', {
      seriesId: held.message.seriesId,
      failed: failed.length,
      transient: transient.length,
      error: transient[0]!.error,
    });
  }
  return { ready, retry };
}

/** One study's votes and failures in a batch, and the messages they came from. */
export interface StudyVotes {
  readonly hospital: string;
  readonly studyId: string;
  readonly votes: SliceVote[];
  readonly failures: SliceFailureReport[];
  readonly members: Held[];
  /** The log of its first message (the keys are the study's). */
  readonly log: WorkerLog;
}

/** The outcomes of the ready messages, gathered per study. */
export function groupByStudy(
  ready: readonly BatchPart[],
  jobs: readonly SliceJob[],
  outcome: BatchOutcome,
): StudyVotes[] {
  const byStudy = new Map<string, StudyVotes>();
  for (const { held, from, to } of ready) {
    const m = held.message;
    const id = `${m.hospital}/${m.studyId}`;
    let group = byStudy.get(id);
    if (group === undefined) {
      group = {
        hospital: m.hospital,
        studyId: m.studyId,
        votes: [],
        failures: [],
        members: [],
        log: held.log,
      };
      byStudy.set(id, group);
    }
    group.members.push(held);
    for (let j = from; j < to; j++) {
      const o = outcome.outcomes[j]!;
      if (!o.ok) {
        // Permanent here (transient ones sent the message to retry): one line, bounded.
        const reason = o.error.split('\n')[0]!.slice(0, MAX_FAILURE_REASON_CHARS) || 'unclassifiable';
        group.failures.push({ seriesId: m.seriesId, key: jobs[j]!.key, reason });
        continue;
      }
      group.votes.push({
        seriesId: m.seriesId,
        key: jobs[j]!.key,
        probabilities: o.probabilities,
        label: o.label,
        ...(o.heatmapKey === undefined ? {} : { heatmapKey: o.heatmapKey }),
      });
    }
  }
  return [...byStudy.values()];
}

/** A study's votes messages: one, or several when its votes or failures exceed one message. */
export function votesMessages(group: StudyVotes, model: VotingModel): VotesMessage[] {
  const voteChunks = chunks(group.votes, MAX_VOTES_PER_MESSAGE);
  const failureChunks = chunks(group.failures, MAX_VOTES_PER_MESSAGE);
  const count = Math.max(voteChunks.length, failureChunks.length);
  const out: VotesMessage[] = [];
  for (let k = 0; k < count; k++) {
    const failures = failureChunks[k] ?? [];
    out.push({
      hospital: group.hospital,
      studyId: group.studyId,
      model,
      votes: voteChunks[k] ?? [],
      ...(failures.length > 0 ? { failures } : {}),
    });
  }
  return out;
}
