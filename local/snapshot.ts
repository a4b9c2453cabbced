/**
 * Snapshot and restore of fauxqs's in-memory state (it has no persistence of its own), so
 * `covidct dev --data DIR` keeps its uploads, results, queued messages and subscriptions across a
 * clean restart. Taken through the ordinary S3/SQS/SNS APIs plus fauxqs's non-destructive queue
 * inspection (which sees in-flight messages too).
 *
 * Layout: `{dir}/state.json` (buckets, object index, queues, topics, subscriptions) and
 * `{dir}/objects/{n}` (object bodies, numbered so keys need no escaping). Written to a sibling
 * folder and renamed, so a crash mid-snapshot leaves the previous one intact.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  CreateBucketCommand,
  GetObjectCommand,
  ListBucketsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import {
  CreateTopicCommand,
  GetSubscriptionAttributesCommand,
  ListSubscriptionsCommand,
  ListTopicsCommand,
  SubscribeCommand,
} from '@aws-sdk/client-sns';
import {
  CreateQueueCommand,
  ListQueuesCommand,
  type MessageAttributeValue,
  SendMessageCommand,
  SetQueueAttributesCommand,
} from '@aws-sdk/client-sqs';
import type { AwsClients } from '../pipeline/index.js';
import type { LocalFauxqs } from './fauxqs.js';

interface SnapshotObject {
  readonly bucket: string;
  readonly key: string;
  readonly file: string;
  readonly contentType?: string;
  readonly metadata?: Record<string, string>;
}

interface SnapshotMessage {
  readonly body: string;
  readonly attributes: Record<string, { DataType: string; StringValue?: string; BinaryValue?: string }>;
  readonly groupId?: string;
  readonly deduplicationId?: string;
}

interface SnapshotQueue {
  readonly name: string;
  readonly attributes: Record<string, string>;
  readonly messages: readonly SnapshotMessage[];
}

interface SnapshotSubscription {
  readonly topicName: string;
  readonly protocol: string;
  readonly queueName: string;
  readonly attributes: Record<string, string>;
}

interface Snapshot {
  readonly version: 1;
  readonly buckets: readonly string[];
  readonly objects: readonly SnapshotObject[];
  readonly queues: readonly SnapshotQueue[];
  readonly topics: readonly string[];
  readonly subscriptions: readonly SnapshotSubscription[];
}

/** Queue attributes CreateQueue accepts (the rest are computed by the server). */
const SETTABLE_QUEUE_ATTRIBUTES = new Set([
  'DelaySeconds',
  'MaximumMessageSize',
  'MessageRetentionPeriod',
  'ReceiveMessageWaitTimeSeconds',
  'VisibilityTimeout',
  'FifoQueue',
  'ContentBasedDeduplication',
  'KmsMasterKeyId',
  'KmsDataKeyReusePeriodSeconds',
  'DeduplicationScope',
  'FifoThroughputLimit',
  'Policy',
]);

/** Subscription attributes worth carrying over. */
const SUBSCRIPTION_ATTRIBUTES = ['FilterPolicy', 'FilterPolicyScope', 'RawMessageDelivery', 'RedrivePolicy'];

/** Write fauxqs's buckets, objects, queues, messages, topics and subscriptions under `dir`. */
export async function saveSnapshot(
  clients: AwsClients,
  fauxqs: Pick<LocalFauxqs, 'inspectQueue'>,
  dir: string,
): Promise<void> {
  const staging = `${dir}.new`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(join(staging, 'objects'), { recursive: true });

  const buckets = ((await clients.s3.send(new ListBucketsCommand({}))).Buckets ?? []).flatMap((b) =>
    b.Name ? [b.Name] : [],
  );
  const objects: SnapshotObject[] = [];
  for (const bucket of buckets) {
    let token: string | undefined;
    do {
      const page = await clients.s3.send(
        new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }),
      );
      for (const item of page.Contents ?? []) {
        if (!item.Key) continue;
        const object = await clients.s3.send(new GetObjectCommand({ Bucket: bucket, Key: item.Key }));
        const file = String(objects.length);
        await writeFile(join(staging, 'objects', file), await object.Body!.transformToByteArray());
        objects.push({
          bucket,
          key: item.Key,
          file,
          ...(object.ContentType ? { contentType: object.ContentType } : {}),
          ...(object.Metadata && Object.keys(object.Metadata).length > 0
            ? { metadata: object.Metadata }
            : {}),
        });
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  const queueUrls = (await clients.sqs.send(new ListQueuesCommand({}))).QueueUrls ?? [];
  const queues: SnapshotQueue[] = [];
  for (const url of queueUrls) {
    const state = fauxqs.inspectQueue(url.slice(url.lastIndexOf('/') + 1));
    if (!state) continue;
    // In-flight messages go back as ready ones: a restart is a consumer crash, and SQS redelivers.
    const all = [
      ...state.messages.ready,
      ...state.messages.delayed,
      ...state.messages.inflight.map((e) => e.message),
    ];
    queues.push({
      name: state.name,
      attributes: state.attributes,
      messages: all.map((m) => ({
        body: m.body,
        attributes: m.messageAttributes,
        ...(m.messageGroupId ? { groupId: m.messageGroupId } : {}),
        ...(m.messageDeduplicationId ? { deduplicationId: m.messageDeduplicationId } : {}),
      })),
    });
  }

  const topicArns = ((await clients.sns.send(new ListTopicsCommand({}))).Topics ?? []).flatMap((t) =>
    t.TopicArn ? [t.TopicArn] : [],
  );
  const subscriptions: SnapshotSubscription[] = [];
  let next: string | undefined;
  do {
    const page = await clients.sns.send(new ListSubscriptionsCommand({ NextToken: next }));
    for (const sub of page.Subscriptions ?? []) {
      if (!sub.SubscriptionArn || !sub.TopicArn || !sub.Endpoint || sub.Protocol !== 'sqs') continue;
      const attributes =
        (
          await clients.sns.send(
            new GetSubscriptionAttributesCommand({ SubscriptionArn: sub.SubscriptionArn }),
          )
        ).Attributes ?? {};
      subscriptions.push({
        topicName: lastArnPart(sub.TopicArn),
        protocol: sub.Protocol,
        queueName: lastArnPart(sub.Endpoint),
        attributes: Object.fromEntries(
          SUBSCRIPTION_ATTRIBUTES.flatMap((name) => (attributes[name] ? [[name, attributes[name]]] : [])),
        ),
      });
    }
    next = page.NextToken;
  } while (next);

  const snapshot: Snapshot = {
    version: 1,
    buckets,
    objects,
    queues,
    topics: topicArns.map(lastArnPart),
    subscriptions,
  };
  await writeFile(join(staging, 'state.json'), JSON.stringify(snapshot));
  await rm(dir, { recursive: true, force: true });
  await rename(staging, dir);
}

/** Recreate the state a {@link saveSnapshot} left under `dir` (nothing when there is none). */
export async function restoreSnapshot(
  clients: AwsClients,
  fauxqs: Pick<LocalFauxqs, 'inspectQueue'>,
  dir: string,
): Promise<void> {
  const stateFile = join(dir, 'state.json');
  if (!existsSync(stateFile)) return;
  const snapshot = JSON.parse(await readFile(stateFile, 'utf8')) as Snapshot;
  if (snapshot.version !== 1)
    throw new Error(`${stateFile}: unknown snapshot version ${String(snapshot.version)}`);

  for (const bucket of snapshot.buckets) await clients.s3.send(new CreateBucketCommand({ Bucket: bucket }));
  for (const object of snapshot.objects) {
    await clients.s3.send(
      new PutObjectCommand({
        Bucket: object.bucket,
        Key: object.key,
        Body: await readFile(join(dir, 'objects', object.file)),
        ContentType: object.contentType,
        Metadata: object.metadata,
      }),
    );
  }

  // Queues first without their redrive policies (a DLQ may come later in the list).
  const urls = new Map<string, string>();
  for (const queue of snapshot.queues) {
    const attributes = Object.fromEntries(
      Object.entries(queue.attributes).filter(([name]) => SETTABLE_QUEUE_ATTRIBUTES.has(name)),
    );
    const created = await clients.sqs.send(
      new CreateQueueCommand({ QueueName: queue.name, Attributes: attributes }),
    );
    urls.set(queue.name, created.QueueUrl!);
  }
  for (const queue of snapshot.queues) {
    const url = urls.get(queue.name)!;
    if (queue.attributes.RedrivePolicy) {
      await clients.sqs.send(
        new SetQueueAttributesCommand({
          QueueUrl: url,
          Attributes: { RedrivePolicy: queue.attributes.RedrivePolicy },
        }),
      );
    }
    for (const message of queue.messages) {
      await clients.sqs.send(
        new SendMessageCommand({
          QueueUrl: url,
          MessageBody: message.body,
          ...(Object.keys(message.attributes).length > 0
            ? { MessageAttributes: toSdkAttributes(message.attributes) }
            : {}),
          ...(message.groupId ? { MessageGroupId: message.groupId } : {}),
          ...(message.deduplicationId ? { MessageDeduplicationId: message.deduplicationId } : {}),
        }),
      );
    }
  }

  const topicArns = new Map<string, string>();
  for (const topic of snapshot.topics) {
    topicArns.set(topic, (await clients.sns.send(new CreateTopicCommand({ Name: topic }))).TopicArn!);
  }
  for (const sub of snapshot.subscriptions) {
    const queueArn = fauxqs.inspectQueue(sub.queueName)?.arn;
    const topicArn = topicArns.get(sub.topicName);
    if (!queueArn || !topicArn) continue;
    await clients.sns.send(
      new SubscribeCommand({
        TopicArn: topicArn,
        Protocol: sub.protocol,
        Endpoint: queueArn,
        ...(Object.keys(sub.attributes).length > 0 ? { Attributes: sub.attributes } : {}),
      }),
    );
  }
}

/** fauxqs keeps binary attribute values base64-encoded; the SDK sends bytes. */
function toSdkAttributes(attributes: SnapshotMessage['attributes']): Record<string, MessageAttributeValue> {
  return Object.fromEntries(
    Object.entries(attributes).map(([name, v]) => [
      name,
      {
        DataType: v.DataType,
        ...(v.StringValue !== undefined ? { StringValue: v.StringValue } : {}),
        ...(v.BinaryValue !== undefined ? { BinaryValue: Buffer.from(v.BinaryValue, 'base64') } : {}),
      },
    ]),
  );
}

function lastArnPart(arn: string): string {
  return arn.slice(arn.lastIndexOf(':') + 1);
}
