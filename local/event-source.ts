/**
 * A Lambda SQS event source mapping, emulated: long-polls a queue, builds the `SQSEvent` Lambda
 * would pass, invokes the handler, and deletes what Lambda would delete (ReportBatchItemFailures:
 * every record not listed in `batchItemFailures`; nothing when the handler throws, times out or
 * names a record that is not in the batch). Failed records stay in flight and reappear after the
 * visibility timeout; the queue's redrive policy (implemented by fauxqs at receive time, as SQS
 * does) moves a message to its DLQ once it has been received more than maxReceiveCount times.
 */
import {
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  type Message,
  ReceiveMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse, SQSEvent, SQSMessageAttributes, SQSRecord } from 'aws-lambda';
import { describeError } from '../core/errors.js';
import type { QueueConsumer } from '../pipeline/index.js';
import { lambdaContext, withTimeout } from './lambda-context.js';

/** A handler as Lambda calls it for SQS (the callback style is not supported). */
export type SqsEventHandler = (
  event: SQSEvent,
  context: Context,
  // biome-ignore lint/suspicious/noConfusingVoidType: handlers that report no failures are declared `Promise<void>`.
) => Promise<SQSBatchResponse | undefined | void>;

/** Options of {@link startEventSource}. */
export interface EventSourceOptions {
  readonly sqs: SQSClient;
  readonly queueUrl: string;
  /** The queue's ARN for `eventSourceARN`; read from the queue when absent. */
  readonly queueArn?: string;
  /** Batch size, batching window and timeout: `QUEUES.x.consumer`. */
  readonly definition: QueueConsumer;
  readonly handler: SqsEventHandler;
  /** Overrides of the Lambda context (function name, memory…). */
  readonly context?: Partial<Context>;
  /** Visibility timeout asked for on each receive (tests: retries in seconds, not minutes); the queue's when absent. */
  readonly visibilityTimeoutSeconds?: number;
  /**
   * Long-poll wait of each receive. Short by default so `stop()` returns quickly without abandoning
   * a poll: fauxqs completes an abandoned long poll and would hide the next message it takes.
   * @default 2
   */
  readonly pollWaitSeconds?: number;
  /** Batches invoked at once (Lambda scales pollers; one keeps local logs readable). @default 1 */
  readonly concurrency?: number;
  /** @default 'us-east-1' */
  readonly region?: string;
  /** A batch that failed as a whole (handler threw or timed out) or a failed SQS call. @default one line on stderr */
  readonly onError?: (error: unknown) => void;
}

/** Counters of an event source. */
export interface EventSourceStats {
  /** Handler invocations. */
  batches: number;
  /** Records passed to the handler. */
  records: number;
  /** Records deleted after success. */
  deleted: number;
  /** Records left on the queue (reported failures and failed batches). */
  failed: number;
}

/** A running event source. */
export interface EventSource {
  readonly stats: Readonly<EventSourceStats>;
  /** Stop polling and wait for the batch in flight (its deletes included). */
  stop(): Promise<void>;
}

/** Start polling `queueUrl` and invoking `handler` as Lambda's event source mapping does. */
export function startEventSource(options: EventSourceOptions): EventSource {
  const { sqs, queueUrl, definition, handler } = options;
  const region = options.region ?? 'us-east-1';
  const pollWait = options.pollWaitSeconds ?? 2;
  const onError =
    options.onError ??
    ((error: unknown) =>
      console.error(`event source ${queueName(queueUrl)}: ${describeError(error, { className: false })}`));
  const stats: EventSourceStats = { batches: 0, records: 0, deleted: 0, failed: 0 };
  let stopped = false;
  let wake: (() => void) | undefined;
  let arn: Promise<string> | undefined;

  const queueArn = (): Promise<string> => {
    arn ??= options.queueArn
      ? Promise.resolve(options.queueArn)
      : sqs
          .send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['QueueArn'] }))
          .then((r) => r.Attributes?.QueueArn ?? `arn:aws:sqs:${region}:000000000000:${queueName(queueUrl)}`);
    return arn;
  };

  /** One batch: up to batchSize messages, waiting up to the batching window to fill it. */
  const receiveBatch = async (): Promise<Message[]> => {
    const batch: Message[] = [];
    const windowEnds = Date.now() + definition.waitSeconds * 1000;
    while (!stopped && batch.length < definition.batchSize) {
      const remainingWindow = Math.ceil((windowEnds - Date.now()) / 1000);
      // An empty batch long-polls; a started one only waits out the batching window.
      const wait = batch.length === 0 ? pollWait : Math.min(pollWait, remainingWindow);
      if (batch.length > 0 && wait <= 0) break;
      const response = await sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: queueUrl,
          MaxNumberOfMessages: Math.min(10, definition.batchSize - batch.length),
          WaitTimeSeconds: wait,
          MessageSystemAttributeNames: ['All'],
          MessageAttributeNames: ['All'],
          ...(options.visibilityTimeoutSeconds !== undefined
            ? { VisibilityTimeout: options.visibilityTimeoutSeconds }
            : {}),
        }),
      );
      const messages = response.Messages ?? [];
      batch.push(...messages);
      if (batch.length > 0 && (messages.length === 0 || definition.waitSeconds === 0)) break;
    }
    return batch;
  };

  const invoke = async (messages: Message[]): Promise<void> => {
    const sourceArn = await queueArn();
    const event: SQSEvent = { Records: messages.map((m) => sqsRecord(m, sourceArn, region)) };
    stats.batches++;
    stats.records += messages.length;
    let failedIds: Set<string>;
    try {
      const response = await withTimeout(
        handler(
          event,
          lambdaContext({
            timeoutSeconds: definition.timeoutSeconds,
            functionName: `covidct-local-${queueName(queueUrl)}`,
            region,
            overrides: options.context,
          }),
        ),
        definition.timeoutSeconds,
      );
      const failures = response?.batchItemFailures ?? [];
      failedIds = new Set(failures.map((f) => f.itemIdentifier));
      const known = new Set(event.Records.map((r) => r.messageId));
      // Lambda treats an empty or unknown identifier as a failure of the whole batch.
      if ([...failedIds].some((id) => !id || !known.has(id))) {
        throw new Error(
          `batchItemFailures names a record that is not in the batch: ${[...failedIds].join(', ')}`,
        );
      }
    } catch (error) {
      stats.failed += messages.length;
      onError(error);
      return;
    }
    const done = messages.filter((m) => !failedIds.has(m.MessageId!));
    stats.failed += messages.length - done.length;
    for (let i = 0; i < done.length; i += 10) {
      const chunk = done.slice(i, i + 10);
      const result = await sqs.send(
        new DeleteMessageBatchCommand({
          QueueUrl: queueUrl,
          Entries: chunk.map((m, j) => ({ Id: String(j), ReceiptHandle: m.ReceiptHandle! })),
        }),
      );
      stats.deleted += result.Successful?.length ?? 0;
      for (const failed of result.Failed ?? [])
        onError(new Error(`delete failed: ${failed.Code} ${failed.Message ?? ''}`));
    }
  };

  const loop = async (): Promise<void> => {
    while (!stopped) {
      try {
        const messages = await receiveBatch();
        if (messages.length > 0) await invoke(messages);
      } catch (error) {
        if (stopped) break;
        onError(error);
        // A failing queue (server restarting): back off instead of spinning.
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 1000);
        });
      }
    }
  };

  const loops = Array.from({ length: Math.max(1, options.concurrency ?? 1) }, () => loop());
  let stopping: Promise<void> | undefined;
  return {
    stats,
    stop() {
      stopping ??= (async () => {
        stopped = true;
        wake?.();
        await Promise.all(loops);
      })();
      return stopping;
    },
  };
}

/** The record Lambda builds from a received message. */
function sqsRecord(message: Message, eventSourceARN: string, awsRegion: string): SQSRecord {
  const a = message.Attributes ?? {};
  const attributes: SQSRecord['attributes'] = {
    ApproximateReceiveCount: a.ApproximateReceiveCount ?? '1',
    SentTimestamp: a.SentTimestamp ?? String(Date.now()),
    SenderId: a.SenderId ?? '000000000000',
    ApproximateFirstReceiveTimestamp: a.ApproximateFirstReceiveTimestamp ?? String(Date.now()),
    ...(a.SequenceNumber ? { SequenceNumber: a.SequenceNumber } : {}),
    ...(a.MessageGroupId ? { MessageGroupId: a.MessageGroupId } : {}),
    ...(a.MessageDeduplicationId ? { MessageDeduplicationId: a.MessageDeduplicationId } : {}),
  };
  const messageAttributes: SQSMessageAttributes = {};
  for (const [name, value] of Object.entries(message.MessageAttributes ?? {})) {
    messageAttributes[name] = {
      dataType: (value.DataType ?? 'String') as SQSMessageAttributes[string]['dataType'],
      ...(value.StringValue !== undefined ? { stringValue: value.StringValue } : {}),
      ...(value.BinaryValue !== undefined
        ? { binaryValue: Buffer.from(value.BinaryValue).toString('base64') }
        : {}),
      stringListValues: [],
      binaryListValues: [],
    };
  }
  return {
    messageId: message.MessageId!,
    receiptHandle: message.ReceiptHandle!,
    body: message.Body ?? '',
    attributes,
    messageAttributes,
    md5OfBody: message.MD5OfBody ?? '',
    ...(message.MD5OfMessageAttributes ? { md5OfMessageAttributes: message.MD5OfMessageAttributes } : {}),
    eventSource: 'aws:sqs',
    eventSourceARN,
    awsRegion,
  };
}

function queueName(queueUrl: string): string {
  return queueUrl.slice(queueUrl.lastIndexOf('/') + 1);
}
