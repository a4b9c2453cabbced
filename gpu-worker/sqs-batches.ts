/**
 * The consumer's batch calls on the inference queue, ten entries a call as SQS allows: deleting
 * finished messages and changing the visibility of held ones. A failure is logged, not thrown: a
 * failed delete only means a repeat delivery (whose votes the aggregate ignores), a failed
 * visibility change at worst the same.
 */
import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageBatchCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { describeError } from '../core/errors.js';
import { chunks } from './batch.js';
import type { WorkerLog } from './observability.js';

/** Where the calls go and where their failures are logged. */
export interface QueueTarget {
  readonly sqs: SQSClient;
  readonly queueUrl: string;
  readonly log: WorkerLog;
}

/** The SQS batch limit. */
const ENTRIES_PER_CALL = 10;

/** Delete messages by receipt handle. */
export async function deleteMessages(
  target: QueueTarget,
  messages: readonly { readonly receiptHandle: string }[],
): Promise<void> {
  for (const group of chunks(messages, ENTRIES_PER_CALL)) {
    try {
      const out = await target.sqs.send(
        new DeleteMessageBatchCommand({
          QueueUrl: target.queueUrl,
          Entries: group.map((h, i) => ({ Id: String(i), ReceiptHandle: h.receiptHandle })),
        }),
      );
      for (const f of out.Failed ?? []) target.log.warn('delete failed', { code: f.Code, error: f.Message });
    } catch (error) {
      target.log.warn('delete failed', { messages: group.length, error: describeError(error) });
    }
  }
}

/** Set the visibility timeout of messages (0 hands them back at once). */
export async function changeVisibility(
  target: QueueTarget,
  messages: readonly { readonly receiptHandle: string }[],
  seconds: number,
): Promise<void> {
  for (const group of chunks(messages, ENTRIES_PER_CALL)) {
    try {
      const out = await target.sqs.send(
        new ChangeMessageVisibilityBatchCommand({
          QueueUrl: target.queueUrl,
          Entries: group.map((h, i) => ({
            Id: String(i),
            ReceiptHandle: h.receiptHandle,
            VisibilityTimeout: seconds,
          })),
        }),
      );
      for (const f of out.Failed ?? [])
        target.log.warn('visibility change failed', { code: f.Code, error: f.Message });
    } catch (error) {
      target.log.warn('visibility change failed', { messages: group.length, error: describeError(error) });
    }
  }
}
