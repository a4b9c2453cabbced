/**
 * S3 event notifications as S3 sends them to SQS (the ingest queue's bodies): their parser, key
 * decoding, and the body of one created object that the local stack and tests send in S3's place.
 */
import * as v from 'valibot';
import { messageError, parseJson, validate } from './message-schema.js';

const s3RecordSchema = v.object({
  eventSource: v.literal('aws:s3', "expected 'aws:s3'"),
  eventName: v.string('expected a string'),
  eventTime: v.optional(v.string()),
  s3: v.object({
    bucket: v.object({ name: v.string('expected a bucket name') }),
    object: v.object({
      key: v.string('expected an object key'),
      size: v.optional(v.number()),
      eTag: v.optional(v.string()),
      sequencer: v.optional(v.string()),
    }),
  }),
});
const s3EventSchema = v.union(
  [
    v.object({ Records: v.array(s3RecordSchema, 'expected an array of records') }),
    v.object({
      Event: v.literal('s3:TestEvent'),
      Service: v.optional(v.string()),
      Bucket: v.optional(v.string()),
    }),
  ],
  'expected { Records: [...] } or an s3:TestEvent',
);

/** An object named by an S3 event record, its key URL-decoded. */
export interface S3ObjectEvent {
  /** E.g. `ObjectCreated:Put`. */
  readonly eventName: string;
  readonly bucket: string;
  /** The decoded key (S3 sends keys URL-encoded with `+` for spaces). */
  readonly key: string;
  readonly size?: number;
  readonly eventTime?: string;
}

/** The body of an S3 notification on SQS: object records, or the `s3:TestEvent` S3 sends once when notifications are configured. */
export type S3EventBody =
  | { readonly kind: 'test' }
  | { readonly kind: 'records'; readonly records: readonly S3ObjectEvent[] };

/** Decode an S3 event key: S3 URL-encodes keys and writes spaces as `+`. */
export function decodeS3EventKey(key: string): string {
  return decodeURIComponent(key.replace(/\+/g, ' '));
}

/** Encode a key as S3 does in event records (`encodeURIComponent`, `/` kept, spaces as `+`). */
function encodeS3EventKey(key: string): string {
  return encodeURIComponent(key).replace(/%2F/g, '/').replace(/%20/g, '+');
}

/** Parse an ingest queue message body (an S3 event notification). */
export function parseS3EventBody(json: string): S3EventBody {
  const body = validate('s3Event', s3EventSchema, parseJson('s3Event', json));
  if (!('Records' in body)) return { kind: 'test' };
  return {
    kind: 'records',
    records: body.Records.map((r, i) => {
      let key: string;
      try {
        key = decodeS3EventKey(r.s3.object.key);
      } catch {
        throw messageError(`s3Event.Records[${i}].s3.object.key`, 'is not a valid URL-encoded key');
      }
      return {
        eventName: r.eventName,
        bucket: r.s3.bucket.name,
        key,
        ...(r.s3.object.size !== undefined ? { size: r.s3.object.size } : {}),
        ...(r.eventTime !== undefined ? { eventTime: r.eventTime } : {}),
      };
    }),
  };
}

/**
 * The JSON body S3 sends to SQS for one created object (event version 2.1). The local stack's
 * router uses it to stand in for S3 bucket notifications; tests use it to fake deliveries.
 */
export function makeS3EventBody(object: {
  bucket: string;
  key: string;
  size: number;
  eTag?: string;
  eventTime?: Date;
  region?: string;
}): string {
  const time = object.eventTime ?? new Date();
  return JSON.stringify({
    Records: [
      {
        eventVersion: '2.1',
        eventSource: 'aws:s3',
        awsRegion: object.region ?? 'us-east-1',
        eventTime: time.toISOString(),
        eventName: 'ObjectCreated:Put',
        userIdentity: { principalId: 'local' },
        requestParameters: { sourceIPAddress: '127.0.0.1' },
        responseElements: { 'x-amz-request-id': 'local', 'x-amz-id-2': 'local' },
        s3: {
          s3SchemaVersion: '1.0',
          configurationId: 'manifest-uploaded',
          bucket: {
            name: object.bucket,
            ownerIdentity: { principalId: 'local' },
            arn: `arn:aws:s3:::${object.bucket}`,
          },
          object: {
            key: encodeS3EventKey(object.key),
            size: object.size,
            ...(object.eTag !== undefined ? { eTag: object.eTag.replace(/"/g, '') } : {}),
            sequencer: time.getTime().toString(16).toUpperCase().padStart(16, '0'),
          },
        },
      },
    ],
  });
}
