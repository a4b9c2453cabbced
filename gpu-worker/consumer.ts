/**
 * The inference queue consumer (in the manner of bbc/sqs-consumer, written out because the worker
 * batches across messages): long-poll, gather messages up to a slice budget, classify them as one
 * batch, send the votes, and only then delete the messages. While a batch works, a heartbeat keeps
 * every held message invisible. A slice that can never be classified (a permanent failure: hash
 * mismatch, undecodable, wrong size) is reported in the votes message as a failure, so the study
 * can finish without it. A message with a transient failure (S3, a worker thread) is not deleted: it
 * reappears, and after `maxReceiveCount` tries lands in the dead-letter queue. Stopping (SIGTERM)
 * stops polling, hands back messages not yet started, finishes the batch in flight and resolves.
 *
 * Exactly-once is not this module's job: a message can be processed twice (a crash after sending
 * votes, a heartbeat that came too late), and the aggregate Lambda counts each slice once.
 */
import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageBatchCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { describeError } from '../core/errors.js';
import {
  type InferenceMessage,
  MAX_FAILURE_REASON_CHARS,
  MAX_VOTES_PER_MESSAGE,
  parseInferenceMessage,
  type SliceFailureReport,
  type SliceVote,
  type VotesMessage,
  type VotingModel,
} from '../pipeline/messages.js';
import { QUEUES } from '../pipeline/resources.js';
import type { BatchOutcome, SliceJob } from './classify.js';

/** Structured log sink (Powertools Logger fits); attributes never carry patient data. */
export interface WorkerLog {
  info(message: string, attributes?: Record<string, unknown>): void;
  warn(message: string, attributes?: Record<string, unknown>): void;
  error(message: string, attributes?: Record<string, unknown>): void;
}

/** What one finished batch did, for metrics. */
export interface BatchReport {
  readonly messages: number;
  readonly slices: number;
  /** Messages deleted (their votes and permanent failures were sent). */
  readonly completed: number;
  /** Slices reported as permanently unclassifiable. */
  readonly failedSlices: number;
  /** Messages left on the queue to reappear. */
  readonly retried: number;
  readonly votesMessages: number;
  readonly heatmaps: number;
  readonly outcome: BatchOutcome['timings'] & { readonly totalMs: number };
}

/** Options of {@link InferenceConsumer}. */
export interface ConsumerOptions {
  readonly sqs: SQSClient;
  readonly queueUrl: string;
  readonly votesQueueUrl: string;
  /** The model every vote names. */
  /** Carried by every votes message: id, SHA-256 and intended use. */
  readonly model: VotingModel;
  /** Classify a batch of slices (classify.ts `classifySlices` with the worker's context). */
  readonly classify: (jobs: readonly SliceJob[]) => Promise<BatchOutcome>;
  /** Slices per batch, gathered across messages (a single larger message still goes alone). @default 32 */
  readonly maxBatchSlices?: number;
  /**
   * Batches worked on at once. 2 (the default) prefetches: while one batch is classified, the next
   * is received, fetched and decoded (and its forward passes queue behind the first's), so the
   * predictor never waits on S3, decoding, sending votes or deleting messages. 1 works one batch at a time.
   * @default 2
   */
  readonly batchesInFlight?: number;
  /** Messages per ReceiveMessage (SQS allows 1…10). @default QUEUES.inference.consumer.batchSize */
  readonly receiveBatch?: number;
  /** Long-poll wait when nothing is held. @default QUEUES.inference.consumer.waitSeconds */
  readonly waitSeconds?: number;
  /** Visibility asked for on receive and on each heartbeat. @default QUEUES.inference.visibilityTimeoutSeconds */
  readonly visibilityTimeoutSeconds?: number;
  /** Heartbeat period. @default a third of the visibility timeout */
  readonly heartbeatSeconds?: number;
  /** A batch running longer than this is logged as over budget. @default QUEUES.inference.consumer.timeoutSeconds */
  readonly batchBudgetSeconds?: number;
  readonly log?: WorkerLog;
  /** Called after each batch. */
  readonly onBatch?: (report: BatchReport) => void;
}

/** Counts since start, for the health check. */
export interface ConsumerCounts {
  batches: number;
  messages: number;
  slices: number;
  /** Messages left to reappear (failed slices, votes not sent). */
  retried: number;
  /** Messages whose body is not an inference message (left for the DLQ). */
  invalid: number;
  votesMessages: number;
  heatmaps: number;
  receiveErrors: number;
}

interface Held {
  readonly sqsId: string;
  receiptHandle: string;
  readonly message: InferenceMessage;
}

const SILENT: WorkerLog = { info() {}, warn() {}, error() {} };

/** Split `items` into chunks of at most `size`. */
function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** The long-running consumer; {@link start} once, {@link stop} to drain. */
export class InferenceConsumer {
  readonly counts: ConsumerCounts = {
    batches: 0,
    messages: 0,
    slices: 0,
    retried: 0,
    invalid: 0,
    votesMessages: 0,
    heatmaps: 0,
    receiveErrors: 0,
  };
  private readonly held = new Map<string, Held>();
  private buffer: Held[] = [];
  private stopping = false;
  private loop: Promise<void> | undefined;
  private poll: AbortController | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private lastActivity = Date.now();
  private inBatch = 0;
  private readonly log: WorkerLog;
  private readonly maxBatchSlices: number;
  private readonly batchesInFlight: number;
  private readonly receiveBatch: number;
  private readonly waitSeconds: number;
  private readonly visibility: number;
  private readonly heartbeatMs: number;
  private readonly budgetMs: number;

  constructor(private readonly options: ConsumerOptions) {
    const c = QUEUES.inference.consumer;
    this.log = options.log ?? SILENT;
    this.maxBatchSlices = options.maxBatchSlices ?? 32;
    this.batchesInFlight = Math.max(1, options.batchesInFlight ?? 2);
    this.receiveBatch = Math.min(10, Math.max(1, options.receiveBatch ?? c.batchSize));
    this.waitSeconds = options.waitSeconds ?? c.waitSeconds;
    this.visibility = options.visibilityTimeoutSeconds ?? QUEUES.inference.visibilityTimeoutSeconds;
    this.heartbeatMs = (options.heartbeatSeconds ?? this.visibility / 3) * 1000;
    this.budgetMs = (options.batchBudgetSeconds ?? c.timeoutSeconds) * 1000;
  }

  /** Whether the poll loop runs and has shown life recently (a receive, a heartbeat, a batch). */
  isAlive(now = Date.now()): boolean {
    if (this.loop === undefined || this.stopping) return false;
    const window = (this.waitSeconds + 5) * 2000 + this.heartbeatMs * 2;
    return now - this.lastActivity < window;
  }

  /** Messages received and not yet deleted or handed back. */
  get heldCount(): number {
    return this.held.size;
  }

  /** Start polling; the promise settles when {@link stop} has drained the consumer. */
  start(): Promise<void> {
    if (this.loop !== undefined) throw new Error('the consumer is already started');
    this.heartbeat = setInterval(() => void this.extendVisibility(), this.heartbeatMs);
    this.heartbeat.unref();
    this.loop = this.run().finally(() => clearInterval(this.heartbeat));
    return this.loop;
  }

  /** Stop polling, hand back unstarted messages, finish the batch in flight. Resolves when drained. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.poll?.abort();
    await this.loop;
  }

  private bufferedSlices(): number {
    return this.buffer.reduce((n, h) => n + h.message.slices.length, 0);
  }

  private async run(): Promise<void> {
    let backoffMs = 0;
    const inflight = new Set<Promise<void>>();
    while (!this.stopping) {
      if (inflight.size >= this.batchesInFlight) {
        // Full: wait for a batch to finish before holding more messages.
        await Promise.race(inflight);
        continue;
      }
      let got = 0;
      if (this.bufferedSlices() < this.maxBatchSlices) {
        try {
          got = await this.receive(this.buffer.length === 0 ? this.waitSeconds : 0);
          backoffMs = 0;
        } catch (error) {
          if (this.stopping) break;
          this.counts.receiveErrors++;
          backoffMs = Math.min(20_000, Math.max(500, backoffMs * 2));
          this.log.error('receive failed', { error: describeError(error), retryInMs: backoffMs });
          await new Promise((r) => setTimeout(r, backoffMs));
          continue;
        }
      }
      this.lastActivity = Date.now();
      if (this.stopping) break;
      if (this.buffer.length === 0) continue;
      // Top up before working while messages keep coming and the batch has room.
      if (got > 0 && this.bufferedSlices() < this.maxBatchSlices) continue;
      this.inBatch++;
      const work: Promise<void> = this.processBatch(this.takeBatch())
        .catch((error: unknown) => this.log.error('batch failed', { error: describeError(error) }))
        .finally(() => {
          this.inBatch--;
          this.lastActivity = Date.now();
          inflight.delete(work);
        });
      inflight.add(work);
    }
    // Draining: batches already started finish; messages not yet started go back at once.
    await Promise.all(inflight);
    await this.release(this.buffer.splice(0));
  }

  private async receive(waitSeconds: number): Promise<number> {
    this.poll = new AbortController();
    let messages: Message[];
    try {
      const out = await this.options.sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: this.options.queueUrl,
          MaxNumberOfMessages: this.receiveBatch,
          WaitTimeSeconds: waitSeconds,
          VisibilityTimeout: this.visibility,
          MessageSystemAttributeNames: ['ApproximateReceiveCount'],
        }),
        { abortSignal: this.poll.signal },
      );
      messages = out.Messages ?? [];
    } finally {
      this.poll = undefined;
    }
    let accepted = 0;
    for (const m of messages) {
      if (m.MessageId === undefined || m.ReceiptHandle === undefined) continue;
      let message: InferenceMessage;
      try {
        message = parseInferenceMessage(m.Body ?? '');
      } catch (error) {
        // A poison message: not deleted, so it reappears and moves to the DLQ after maxReceiveCount.
        this.counts.invalid++;
        this.log.error('invalid inference message left for the dead-letter queue', {
          messageId: m.MessageId,
          receiveCount: m.Attributes?.ApproximateReceiveCount,
          error: describeError(error),
        });
        continue;
      }
      const existing = this.held.get(m.MessageId);
      if (existing !== undefined) {
        // Received again while held (its visibility lapsed): keep the newest handle, hold it once.
        existing.receiptHandle = m.ReceiptHandle;
        continue;
      }
      const held: Held = { sqsId: m.MessageId, receiptHandle: m.ReceiptHandle, message };
      this.held.set(m.MessageId, held);
      this.buffer.push(held);
      accepted++;
    }
    return accepted;
  }

  /** The next batch: buffered messages in order while their slices fit (at least one). */
  private takeBatch(): Held[] {
    const batch: Held[] = [];
    let slices = 0;
    while (this.buffer.length > 0) {
      const next = this.buffer[0]!;
      if (batch.length > 0 && slices + next.message.slices.length > this.maxBatchSlices) break;
      batch.push(next);
      slices += next.message.slices.length;
      this.buffer.shift();
    }
    return batch;
  }

  private async processBatch(batch: Held[]): Promise<void> {
    const started = performance.now();
    const jobs: SliceJob[] = [];
    const ranges: [number, number][] = [];
    for (const h of batch) {
      const m = h.message;
      ranges.push([jobs.length, jobs.length + m.slices.length]);
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
    let outcome: BatchOutcome;
    try {
      outcome = await this.options.classify(jobs);
    } catch (error) {
      // Not expected (classifySlices reports per slice); leave every message to reappear.
      this.log.error('batch failed', { messages: batch.length, error: describeError(error) });
      this.forget(batch);
      this.counts.retried += batch.length;
      return;
    }
    const overBudget = performance.now() - started > this.budgetMs;
    if (overBudget) this.log.warn('batch over budget', { ms: Math.round(performance.now() - started) });
    for (const w of outcome.warnings) this.log.warn('heatmap skipped', { error: w });

    // A message is reported only when every slice of it is classified or permanently failed:
    // never half-done. A transient failure leaves the whole message to reappear.
    const ready: Held[] = [];
    const retry: Held[] = [];
    batch.forEach((h, i) => {
      const [from, to] = ranges[i]!;
      const failed = outcome.outcomes.slice(from, to).filter((o) => !o.ok);
      const transient = failed.filter((o) => !o.permanent);
      if (transient.length === 0) {
        ready.push(h);
        if (failed.length > 0) {
          this.log.warn('slices cannot be classified; reported as failed', {
            hospital: h.message.hospital,
            studyId: h.message.studyId,
            seriesId: h.message.seriesId,
            failed: failed.length,
            error: failed[0]!.error,
          });
        }
        return;
      }
      retry.push(h);
      this.log.error('slices not classified; message left to reappear', {
        hospital: h.message.hospital,
        studyId: h.message.studyId,
        seriesId: h.message.seriesId,
        failed: failed.length,
        transient: transient.length,
        error: transient[0]!.error,
      });
    });

    // One votes message per study in the batch (split if huge); a study's messages are deleted
    // only when all of its votes were sent.
    const byStudy = new Map<
      string,
      {
        hospital: string;
        studyId: string;
        votes: SliceVote[];
        failures: SliceFailureReport[];
        members: Held[];
      }
    >();
    for (const h of ready) {
      const i = batch.indexOf(h);
      const [from, to] = ranges[i]!;
      const m = h.message;
      const id = `${m.hospital}/${m.studyId}`;
      let group = byStudy.get(id);
      if (group === undefined) {
        group = { hospital: m.hospital, studyId: m.studyId, votes: [], failures: [], members: [] };
        byStudy.set(id, group);
      }
      group.members.push(h);
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
    const deletable: Held[] = [];
    let votesMessages = 0;
    let failedSlices = 0;
    await Promise.all(
      [...byStudy.values()].map(async (group) => {
        try {
          const voteChunks = chunks(group.votes, MAX_VOTES_PER_MESSAGE);
          const failureChunks = chunks(group.failures, MAX_VOTES_PER_MESSAGE);
          const messages = Math.max(voteChunks.length, failureChunks.length);
          for (let k = 0; k < messages; k++) {
            const failures = failureChunks[k] ?? [];
            const body: VotesMessage = {
              hospital: group.hospital,
              studyId: group.studyId,
              model: this.options.model,
              votes: voteChunks[k] ?? [],
              ...(failures.length > 0 ? { failures } : {}),
            };
            await this.options.sqs.send(
              new SendMessageCommand({
                QueueUrl: this.options.votesQueueUrl,
                MessageBody: JSON.stringify(body),
              }),
            );
            votesMessages++;
          }
          deletable.push(...group.members);
          failedSlices += group.failures.length;
          this.log.info('votes sent', {
            hospital: group.hospital,
            studyId: group.studyId,
            votes: group.votes.length,
            covid: group.votes.filter((v) => v.label === 'covid').length,
            failed: group.failures.length,
          });
        } catch (error) {
          retry.push(...group.members);
          this.log.error('votes not sent; messages left to reappear', {
            hospital: group.hospital,
            studyId: group.studyId,
            error: describeError(error),
          });
        }
      }),
    );
    await this.delete(deletable);
    this.forget(batch);

    this.counts.batches++;
    this.counts.messages += batch.length;
    this.counts.slices += jobs.length;
    this.counts.retried += retry.length;
    this.counts.votesMessages += votesMessages;
    this.counts.heatmaps += outcome.heatmaps;
    this.options.onBatch?.({
      messages: batch.length,
      slices: jobs.length,
      completed: deletable.length,
      failedSlices,
      retried: retry.length,
      votesMessages,
      heatmaps: outcome.heatmaps,
      outcome: { ...outcome.timings, totalMs: performance.now() - started },
    });
  }

  private forget(batch: readonly Held[]): void {
    for (const h of batch) this.held.delete(h.sqsId);
  }

  private async delete(messages: readonly Held[]): Promise<void> {
    for (const group of chunks(messages, 10)) {
      try {
        const out = await this.options.sqs.send(
          new DeleteMessageBatchCommand({
            QueueUrl: this.options.queueUrl,
            Entries: group.map((h, i) => ({ Id: String(i), ReceiptHandle: h.receiptHandle })),
          }),
        );
        // A failed delete only means a repeat delivery, whose votes the aggregate ignores.
        for (const f of out.Failed ?? []) this.log.warn('delete failed', { code: f.Code, error: f.Message });
      } catch (error) {
        this.log.warn('delete failed', { messages: group.length, error: describeError(error) });
      }
    }
  }

  /** Hand messages back at once (visibility 0) so another worker takes them without waiting. */
  private async release(messages: readonly Held[]): Promise<void> {
    for (const h of messages) this.held.delete(h.sqsId);
    await this.changeVisibility(messages, 0);
  }

  private async extendVisibility(): Promise<void> {
    // A batch in flight keeps the loop busy, legitimately: the heartbeat vouches for it meanwhile.
    if (this.inBatch > 0) this.lastActivity = Date.now();
    await this.changeVisibility([...this.held.values()], this.visibility);
  }

  private async changeVisibility(messages: readonly Held[], seconds: number): Promise<void> {
    for (const group of chunks(messages, 10)) {
      try {
        const out = await this.options.sqs.send(
          new ChangeMessageVisibilityBatchCommand({
            QueueUrl: this.options.queueUrl,
            Entries: group.map((h, i) => ({
              Id: String(i),
              ReceiptHandle: h.receiptHandle,
              VisibilityTimeout: seconds,
            })),
          }),
        );
        for (const f of out.Failed ?? [])
          this.log.warn('visibility change failed', { code: f.Code, error: f.Message });
      } catch (error) {
        this.log.warn('visibility change failed', { messages: group.length, error: describeError(error) });
      }
    }
  }
}
