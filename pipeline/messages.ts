/**
 * The pipeline's wire formats, validated with valibot: the upload manifest (manifest.ts), the S3
 * event records the ingest queue carries (s3-events.ts), the inference and votes messages between
 * the Lambdas and the GPU worker and the SNS notification (stage-messages.ts), checked with one
 * set of pieces (message-schema.ts). Every `parseX` takes JSON text and returns a typed value or
 * throws a {@link MessageError} whose one-line message names the field at fault.
 *
 * Also the object key layout (keys.ts), so that no handler, worker or client builds a key by hand.
 * This module gathers them for the pipeline's code.
 */
export * from './keys.js';
export * from './manifest.js';
export {
  MAX_FAILURE_REASON_CHARS,
  MAX_MANIFEST_BYTES,
  MAX_SLICES_PER_INFERENCE_MESSAGE,
  MAX_VOTES_PER_MESSAGE,
} from './message-schema.js';
export * from './s3-events.js';
export * from './stage-messages.js';
