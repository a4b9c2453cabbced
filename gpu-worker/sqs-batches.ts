/**
 * The consumer's batch calls on the inference queue, ten entries a call as SQS allows: deleting
 * finished messages and changing the visibility of held ones. A failure is logged, not thrown: a
 * failed delete only means a repeat delivery (whose votes the aggregate ignores), a failed
 * visibility change at worst the same.
 */
import {
  type BatchResultErrorEntry,
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
export function deleteMessages(
  target: QueueTarget,
  messages: readonly { readonly receiptHandle: string }[],
): Promise<void> {
  return inCalls(target, messages, 'delete failed', (group) =>
    target.sqs.send(
      new DeleteMessageBatchCommand({
        QueueUrl: target.queueUrl,
        Entries: group.map((h, i) => ({ Id: String(i), ReceiptHandle: h.receiptHandle })),
      }),
    ),
  );
}

/** Set the visibility timeout of messages (0 hands them back at once). */
export function changeVisibility(
  target: QueueTarget,
  messages: readonly { readonly receiptHandle: string }[],
  seconds: number,
): Promise<void> {
  return inCalls(target, messages, 'visibility change failed', (group) =>
    target.sqs.send(
      new ChangeMessageVisibilityBatchCommand({
        QueueUrl: target.queueUrl,
        Entries: group.map((h, i) => ({
          Id: String(i),
          ReceiptHandle: h.receiptHandle,
          VisibilityTimeout: seconds,
        })),
      }),
    ),
  );
}

/** Make one batch call per ten messages; log each failed entry, and a call that failed whole, as `failure`. */
async function inCalls<M>(
  target: QueueTarget,
  messages: readonly M[],
  failure: string,
  call: (group: M[]) => Promise<{ Failed?: readonly BatchResultErrorEntry[] | undefined }>,
): Promise<void> {
  for (const group of chunks(messages, ENTRIES_PER_CALL)) {
    try {
      const out = await call(group);
      for (const f of out.Failed ?? []) target.log.warn(failure, { code: f.Code, error: f.Message });
    } catch (error) {
      target.log.warn(failure, { messages: group.length, error: describeError(error) });
    }
  }
}
