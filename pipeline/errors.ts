/**
 * Named errors of the pipeline. Bad input (a malformed manifest, message or request body) is an
 * {@link InputError} whose message is one line `<field>: <what is wrong, what was expected>`; the
 * handlers turn it into a FAILED study, a dropped message or a 400, never a retry. The data layer
 * throws these domain errors only; the api Lambda alone maps them to HTTP statuses ({@link HttpError}).
 */
import { CovidCtError, InputError } from '../core/errors.js';

/** A manifest, queue message or API body that does not match its schema. `subject` names the field. */
export class MessageError extends InputError {
  override name = 'MessageError';
}

/** An API failure with its HTTP status; the message is safe to return to the caller. */
export class HttpError extends CovidCtError {
  override name = 'HttpError';
  constructor(
    /** The HTTP status code. */
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

/** A listing cursor the listing did not return (altered, or of another hospital or filter). */
export class CursorError extends InputError {
  override name = 'CursorError';
}

/** A conditional write lost: the item was not in the state the caller expected (a repeat or a race). */
export class ConditionFailedError extends CovidCtError {
  override name = 'ConditionFailedError';
}

/** An object of the bucket could not be used as read: its message is one line naming its key. */
export class ObjectError extends InputError {
  override name = 'ObjectError';
}

/**
 * The object is not in the bucket (S3's NoSuchKey, NotFound or a 404). Bad input, not a retry: S3
 * reads are strongly consistent, so a key written before it was asked for is there.
 */
export class ObjectNotFoundError extends ObjectError {
  override name = 'ObjectNotFoundError';
  /** `key`: the object's key (the error's subject). */
  constructor(key: string) {
    super(key, 'not found in the bucket');
  }
}

/** The object is larger than its reader accepts; its body was not read. */
export class ObjectTooLargeError extends ObjectError {
  override name = 'ObjectTooLargeError';
  /** `key` (the subject), its size in bytes and the most bytes the reader accepts. */
  constructor(key: string, bytes: number, maxBytes: number) {
    super(key, `${bytes} bytes, expected at most ${maxBytes}`);
  }
}
