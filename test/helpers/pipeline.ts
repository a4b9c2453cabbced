/**
 * Helpers for the pipeline handler tests: SQS events as Lambda receives them, study uploads
 * through the real S3 client, queue draining, and Powertools that stay quiet.
 */
import { createHash, randomUUID } from 'node:crypto';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { SubscribeCommand } from '@aws-sdk/client-sns';
import {
  CreateQueueCommand,
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { SQSEvent } from 'aws-lambda';
import type { AwsClients, Observability } from '../../pipeline/index.js';
import { type Manifest, makeS3EventBody, manifestKey, sliceKey, TOPIC } from '../../pipeline/index.js';

/** Log lines and EMF metric lines the handlers wrote, as parsed JSON objects. */
export interface CapturedLogs {
  readonly lines: Record<string, unknown>[];
  readonly metricLines: Record<string, unknown>[];
}

/** Powertools whose logs are captured (not printed), with metrics and tracing off. */
export function quietObservability(serviceName = 'covidct-test'): Observability & CapturedLogs {
  const lines: Record<string, unknown>[] = [];
  const metricLines: Record<string, unknown>[] = [];
  const sinkInto = (into: Record<string, unknown>[]) => {
    const sink = (line: string) => {
      try {
        into.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        into.push({ raw: line });
      }
    };
    return { ...console, info: sink, warn: sink, error: sink, debug: sink, log: sink, trace: sink };
  };
  // Powertools writes through a Console it keeps in a `console` field: swap it to capture.
  const logger = new Logger({ serviceName, logLevel: 'DEBUG' });
  (logger as unknown as { console: unknown }).console = sinkInto(lines);
  const metrics = new Metrics({ namespace: 'covidct-test', serviceName });
  (metrics as unknown as { console: unknown }).console = sinkInto(metricLines);
  const tracer = new Tracer({ serviceName, enabled: false });
  return { logger, metrics, tracer, lines, metricLines };
}

/** An SQS event as a Lambda event source mapping delivers it. */
export function sqsEvent(
  bodies: readonly string[],
  queueArn = 'arn:aws:sqs:us-east-1:000000000000:q',
): SQSEvent {
  return {
    Records: bodies.map((body) => ({
      messageId: randomUUID(),
      receiptHandle: randomUUID(),
      body,
      attributes: {
        ApproximateReceiveCount: '1',
        SentTimestamp: String(Date.now()),
        SenderId: 'test',
        ApproximateFirstReceiveTimestamp: String(Date.now()),
      },
      messageAttributes: {},
      md5OfBody: createHash('md5').update(body).digest('hex'),
      eventSource: 'aws:sqs',
      eventSourceARN: queueArn,
      awsRegion: 'us-east-1',
    })),
  };
}

/** A slice to upload. */
export interface UploadSlice {
  readonly name: string;
  readonly bytes: Uint8Array;
}

/** Upload slices and then the manifest (built from them unless given); returns the manifest and its event body. */
export async function uploadStudy(
  clients: AwsClients,
  bucket: string,
  hospital: string,
  studyId: string,
  series: ReadonlyArray<{ id: string; slices: readonly UploadSlice[] }>,
  options: { manifest?: unknown; settings?: Manifest['settings'] } = {},
): Promise<{ manifest: unknown; eventBody: string }> {
  const listed = [];
  for (const s of series) {
    const slices = [];
    for (const slice of s.slices) {
      const key = sliceKey(hospital, studyId, s.id, slice.name);
      await clients.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: slice.bytes }));
      slices.push({
        key,
        sha256: createHash('sha256').update(slice.bytes).digest('hex'),
        size: slice.bytes.length,
      });
    }
    listed.push({ id: s.id, slices });
  }
  const manifest = options.manifest ?? {
    version: 1,
    studyId,
    series: listed,
    ...(options.settings ? { settings: options.settings } : {}),
  };
  const body = Buffer.from(JSON.stringify(manifest));
  const key = manifestKey(hospital, studyId);
  await clients.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  return { manifest, eventBody: makeS3EventBody({ bucket, key, size: body.length }) };
}

/** Messages on a queue, visible and in flight (SQS's approximate counts). */
export async function queueDepth(sqs: SQSClient, queueUrl: string): Promise<number> {
  const out = await sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: queueUrl,
      AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
    }),
  );
  return (
    Number(out.Attributes?.ApproximateNumberOfMessages ?? 0) +
    Number(out.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0)
  );
}

/** Receive and delete every message on a queue (until a short poll comes back empty). */
export async function drainQueue(sqs: SQSClient, queueUrl: string): Promise<string[]> {
  const bodies: string[] = [];
  for (;;) {
    const out = await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }),
    );
    const messages = out.Messages ?? [];
    if (messages.length === 0) return bodies;
    for (const m of messages) bodies.push(m.Body ?? '');
    await sqs.send(
      new DeleteMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle! })),
      }),
    );
  }
}

/**
 * Create an SQS queue and subscribe it to the results topic with a filter policy on the
 * `hospital` attribute, as a hospital would; resolves to the queue's URL.
 */
export async function subscribeHospitalQueue(
  clients: Pick<AwsClients, 'sqs' | 'sns'>,
  topicArn: string,
  queueName: string,
  hospital: string,
): Promise<string> {
  const url = (await clients.sqs.send(new CreateQueueCommand({ QueueName: queueName }))).QueueUrl!;
  const arn = (
    await clients.sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }))
  ).Attributes!.QueueArn!;
  await clients.sns.send(
    new SubscribeCommand({
      TopicArn: topicArn,
      Protocol: 'sqs',
      Endpoint: arn,
      Attributes: { FilterPolicy: JSON.stringify({ [TOPIC.hospitalAttribute]: [hospital] }) },
    }),
  );
  return url;
}
