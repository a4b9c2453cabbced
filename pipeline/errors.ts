/**
 * Named errors of the pipeline. Bad input (a malformed manifest, message or request body) is an
 * {@link InputError} whose message is one line `<field>: <what is wrong, what was expected>`; the
 * handlers turn it into a FAILED study, a dropped message or a 400, never a retry.
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

/** A conditional write lost: the item was not in the state the caller expected (a repeat or a race). */
export class ConditionFailedError extends CovidCtError {
  override name = 'ConditionFailedError';
}
