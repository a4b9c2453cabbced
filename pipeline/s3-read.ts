/**
 * The one bounded read of an S3 object the pipeline has (the select Lambda's manifest and slices,
 * the worker's model files, the api Lambda's report): one idea of "not found" and one size bound,
 * checked on the declared length before the body is read and on the bytes after.
 */
import { GetObjectCommand, type GetObjectCommandOutput, type S3Client } from '@aws-sdk/client-s3';
import { ObjectError, ObjectNotFoundError, ObjectTooLargeError } from './errors.js';

/** Whether an S3 error says the object is not there. */
function isNotFound(error: unknown): boolean {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } } | undefined;
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.$metadata?.httpStatusCode === 404;
}

/**
 * Read an object whole, at most `maxBytes` of it. A missing object is an
 * {@link ObjectNotFoundError}, a larger one an {@link ObjectTooLargeError} (its body left unread
 * when S3 declared the length), an object without a body an {@link ObjectError}; S3's other
 * failures are thrown as they are (transient).
 */
export async function readObject(
  s3: S3Client,
  bucket: string,
  key: string,
  maxBytes: number,
): Promise<Uint8Array> {
  let out: GetObjectCommandOutput;
  try {
    out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  } catch (error) {
    if (isNotFound(error)) throw new ObjectNotFoundError(key);
    throw error;
  }
  // The Node body stream has destroy(); the SDK types only promise the transform helpers.
  const body = out.Body as
    | (NonNullable<GetObjectCommandOutput['Body']> & { destroy?: () => void })
    | undefined;
  if (!body) throw new ObjectError(key, 'the object has no body');
  if (out.ContentLength !== undefined && out.ContentLength > maxBytes) {
    body.destroy?.();
    throw new ObjectTooLargeError(key, out.ContentLength, maxBytes);
  }
  const bytes = await body.transformToByteArray();
  if (bytes.length > maxBytes) throw new ObjectTooLargeError(key, bytes.length, maxBytes);
  return bytes;
}
