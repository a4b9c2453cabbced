/**
 * S3 event notifications for the local stack. fauxqs has none, but its message spy sees every
 * stored object (PutObject through the SDK, presigned PUTs, copies, completed multipart uploads),
 * so the router turns each upload of a manifest (`incoming/…/manifest.json`) into the S3 event
 * record AWS would send to the ingest queue (`makeS3EventBody` of pipeline/messages.ts: same
 * JSON, same URL-encoded key), so the select handler parses both alike.
 *
 * As on AWS, delivery is asynchronous: the PUT has returned before the event is on the queue.
 */
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import type { SpyMessage } from 'fauxqs';
import { describeError } from '../core/errors.js';
import type { AwsClients } from '../pipeline/index.js';
import { KEYS, makeS3EventBody } from '../pipeline/index.js';
import type { LocalFauxqs } from './fauxqs.js';

/** Options of {@link startS3EventRouter}. */
export interface S3EventRouterOptions {
  readonly fauxqs: Pick<LocalFauxqs, 'spy'>;
  readonly clients: Pick<AwsClients, 's3' | 'sqs'>;
  /** The bucket whose uploads notify. */
  readonly bucket: string;
  /** Where the event records go (the ingest queue). */
  readonly queueUrl: string;
  /** Which keys notify. @default {@link isManifestKey} */
  readonly filter?: (key: string) => boolean;
  /** @default 'us-east-1' */
  readonly region?: string;
  /** A failed delivery (the object vanished, the queue is gone). @default one line on stderr */
  readonly onError?: (error: unknown, key: string) => void;
}

/** A running router. */
export interface S3EventRouter {
  /** Events sent so far. */
  readonly sent: number;
  /** Resolves when every event seen so far is on the queue. */
  idle(): Promise<void>;
  /** Stop routing new uploads and wait for the ones under way. */
  stop(): Promise<void>;
}

/** The bucket notification's filter: prefix `incoming/`, suffix `/manifest.json`. */
export function isManifestKey(key: string): boolean {
  return key.startsWith(KEYS.incoming) && key.endsWith(`/${KEYS.manifest}`);
}

/** Start routing manifest uploads into the queue. */
export function startS3EventRouter(options: S3EventRouterOptions): S3EventRouter {
  const { fauxqs, clients, bucket, queueUrl } = options;
  const filter = options.filter ?? isManifestKey;
  const onError =
    options.onError ??
    ((error: unknown, key: string) =>
      console.error(`s3 events: ${key}: ${describeError(error, { className: false })}`));
  const pending = new Set<Promise<void>>();
  let stopped = false;
  let sent = 0;

  const deliver = async (key: string): Promise<void> => {
    try {
      const head = await clients.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      const body = makeS3EventBody({
        bucket,
        key,
        size: head.ContentLength ?? 0,
        ...(head.ETag ? { eTag: head.ETag } : {}),
        ...(options.region ? { region: options.region } : {}),
      });
      await clients.sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: body }));
      sent++;
    } catch (error) {
      onError(error, key);
    }
  };

  // The spy has no listener API: a waiter whose predicate never matches sees every future event.
  // Its first call scans the spy's buffer (past events), which `armed` skips. `spy.clear()` (also
  // called by fauxqs's reset()) rejects every waiter: register again then.
  const listen = (): void => {
    let armed = false;
    fauxqs.spy
      .waitForMessage((message: SpyMessage) => {
        if (armed && !stopped && message.service === 's3' && message.status === 'uploaded') {
          if (message.bucket === bucket && filter(message.key)) {
            const delivery = deliver(message.key).finally(() => pending.delete(delivery));
            pending.add(delivery);
          }
        }
        return false;
      })
      .catch(() => {
        if (!stopped) listen();
      });
    armed = true;
  };
  listen();

  const idle = async (): Promise<void> => {
    while (pending.size > 0) await Promise.all([...pending]);
  };
  return {
    get sent() {
      return sent;
    },
    idle,
    async stop() {
      stopped = true;
      await idle();
    },
  };
}
