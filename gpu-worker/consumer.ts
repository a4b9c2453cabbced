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
import { type Message, ReceiveMessageCommand, SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { describeError } from '../core/errors.js';
import { type InferenceMessage, parseInferenceMessage, QUEUES, type VotingModel } from '../pipeline/index.js';
import { groupByStudy, type Held, type StudyVotes, sliceJobs, sortMessages, votesMessages } from './batch.js';
import type { BatchOutcome, SliceJob } from './classify.js';
import { correlationKeys, SILENT_LOG, type WorkerLog, withKeys } from './observability.js';
import { changeVisibility, deleteMessages, type QueueTarget } from './sqs-batches.js';

export type { WorkerLog } from './observability.js';

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
  /** The inference queue, for deletes and visibility changes. */
  private readonly queue: QueueTarget;

  constructor(private readonly options: ConsumerOptions) {
    const c = QUEUES.inference.consumer;
    this.log = options.log ?? SILENT_LOG;
    this.maxBatchSlices = options.maxBatchSlices ?? 32;
    this.batchesInFlight = Math.max(1, options.batchesInFlight ?? 2);
    this.receiveBatch = Math.min(10, Math.max(1, options.receiveBatch ?? c.batchSize));
    this.waitSeconds = options.waitSeconds ?? c.waitSeconds;
    this.visibility = options.visibilityTimeoutSeconds ?? QUEUES.inference.visibilityTimeoutSeconds;
    this.heartbeatMs = (options.heartbeatSeconds ?? this.visibility / 3) * 1000;
    this.budgetMs = (options.batchBudgetSeconds ?? c.timeoutSeconds) * 1000;
    this.queue = { sqs: options.sqs, queueUrl: options.queueUrl, log: this.log };
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
      // The message's correlation keys, bound here once: every later line about it carries them.
      const log = withKeys(this.log, correlationKeys(message));
      const held: Held = { sqsId: m.MessageId, receiptHandle: m.ReceiptHandle, message, log };
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

  /** One batch: classify its slices, send the votes of the messages done, delete those, count. */
  private async processBatch(batch: Held[]): Promise<void> {
    const started = performance.now();
    const { jobs, parts } = sliceJobs(batch);
    const outcome = await this.classifyBatch(batch, jobs);
    if (outcome === undefined) return;
    this.warnAboutBatch(started, outcome);
    const { ready, retry } = sortMessages(parts, outcome);
    const sent = await this.sendVotes(groupByStudy(ready, jobs, outcome));
    retry.push(...sent.unsent);
    await deleteMessages(this.queue, sent.deletable);
    this.forget(batch);
    this.countBatch({
      messages: batch.length,
      slices: jobs.length,
      completed: sent.deletable.length,
      failedSlices: sent.failedSlices,
      retried: retry.length,
      votesMessages: sent.votesMessages,
      heatmaps: outcome.heatmaps,
      outcome: { ...outcome.timings, totalMs: performance.now() - started },
    });
  }

  /** Classify the batch's slices; undefined (every message left to reappear) if that throws. */
  private async classifyBatch(
    batch: readonly Held[],
    jobs: readonly SliceJob[],
  ): Promise<BatchOutcome | undefined> {
    try {
      return await this.options.classify(jobs);
    } catch (error) {
      // Not expected (classifySlices reports per slice); leave every message to reappear.
      this.log.error('batch failed', { messages: batch.length, error: describeError(error) });
      this.forget(batch);
      this.counts.retried += batch.length;
      return undefined;
    }
  }

  private warnAboutBatch(started: number, outcome: BatchOutcome): void {
    const overBudget = performance.now() - started > this.budgetMs;
    if (overBudget) this.log.warn('batch over budget', { ms: Math.round(performance.now() - started) });
    for (const w of outcome.warnings) this.log.warn('heatmap skipped', { error: w });
  }

  /**
   * One votes message per study in the batch (split if huge), all studies at once; a study's
   * messages are deletable only when all of its votes were sent, else they reappear.
   */
  private async sendVotes(groups: readonly StudyVotes[]): Promise<{
    deletable: Held[];
    unsent: Held[];
    votesMessages: number;
    failedSlices: number;
  }> {
    const sent = { deletable: [] as Held[], unsent: [] as Held[], votesMessages: 0, failedSlices: 0 };
    await Promise.all(
      groups.map(async (group) => {
        try {
          for (const body of votesMessages(group, this.options.model)) {
            await this.options.sqs.send(
              new SendMessageCommand({
                QueueUrl: this.options.votesQueueUrl,
                MessageBody: JSON.stringify(body),
              }),
            );
            sent.votesMessages++;
          }
          sent.deletable.push(...group.members);
          sent.failedSlices += group.failures.length;
          group.log.info('votes sent', {
            votes: group.votes.length,
            covid: group.votes.filter((v) => v.label === 'covid').length,
            failed: group.failures.length,
          });
        } catch (error) {
          sent.unsent.push(...group.members);
          group.log.error('votes not sent; messages left to reappear', { error: describeError(error) });
        }
      }),
    );
    return sent;
  }

  private countBatch(report: BatchReport): void {
    this.counts.batches++;
    this.counts.messages += report.messages;
    this.counts.slices += report.slices;
    this.counts.retried += report.retried;
    this.counts.votesMessages += report.votesMessages;
    this.counts.heatmaps += report.heatmaps;
    this.options.onBatch?.(report);
  }

  private forget(batch: readonly Held[]): void {
    for (const h of batch) this.held.delete(h.sqsId);
  }

  /** Hand messages back at once (visibility 0) so another worker takes them without waiting. */
  private async release(messages: readonly Held[]): Promise<void> {
    for (const h of messages) this.held.delete(h.sqsId);
    await changeVisibility(this.queue, messages, 0);
  }

  private async extendVisibility(): Promise<void> {
    // A batch in flight keeps the loop busy, legitimately: the heartbeat vouches for it meanwhile.
    if (this.inBatch > 0) this.lastActivity = Date.now();
    await changeVisibility(this.queue, [...this.held.values()], this.visibility);
  }
}
