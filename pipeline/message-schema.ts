/**
 * What every wire format of the pipeline is checked with: the bounds of its messages, one-line
 * {@link MessageError}s (the field's path and what was expected, however hostile the input they
 * quote), and the valibot pieces the formats share (ids, hashes, keys, a vote threshold).
 */
import * as v from 'valibot';
import { VOTE_THRESHOLD_EXPECTED, voteThresholdValue } from '../core/vote.js';
import { MessageError } from './errors.js';
import { ID_PATTERN, SHA256_PATTERN } from './keys.js';

/** The largest manifest accepted (2000 slices need ~400 KB). */
export const MAX_MANIFEST_BYTES = 1024 * 1024;
/**
 * The most slices one inference message may carry. The lambdas send
 * `PIPELINE_DEFAULTS.slicesPerInferenceMessage`; the bound only keeps a message far below SQS's 256 KB.
 */
export const MAX_SLICES_PER_INFERENCE_MESSAGE = 64;
/** The most votes one votes message may carry (a worker batch; far below SQS's 256 KB). */
export const MAX_VOTES_PER_MESSAGE = 256;
/** The longest reason a slice failure may carry (one line; the worker truncates). */
export const MAX_FAILURE_REASON_CHARS = 300;

/** Longest subject or detail of an error: quoted input (a 1024-character key) is cut to fit one line. */
const MAX_MESSAGE_PART_CHARS = 300;

/**
 * Text from the input made printable on one line: control characters and line separators as
 * `\uXXXX` escapes, cut to `max` characters.
 */
export function printable(text: string, max = MAX_MESSAGE_PART_CHARS): string {
  const line = text.replace(
    /[\p{Cc}\u2028\u2029]/gu,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/**
 * A {@link MessageError} whose subject and detail are one line each, however hostile the input
 * they quote (keys with line breaks, 5000-character values, JSON syntax errors around them).
 */
export function messageError(subject: string, detail: string): MessageError {
  return new MessageError(printable(subject), printable(detail));
}

/** Parse JSON text, with a one-line error naming the message kind. */
export function parseJson(kind: string, json: string): unknown {
  try {
    return JSON.parse(json) as unknown;
  } catch (error) {
    throw messageError(kind, `is not JSON (${(error as Error).message.split('\n')[0]})`);
  }
}

/** `series[0].slices[2].key` from a valibot issue path. */
export function issuePath(kind: string, issue: v.BaseIssue<unknown>): string {
  let path = kind;
  for (const item of issue.path ?? []) {
    const key = (item as { key: unknown }).key;
    // Unknown fields are named as sent: anything but a plain name is shown quoted.
    path +=
      typeof key === 'number'
        ? `[${key}]`
        : /^[A-Za-z_$][\w$]{0,63}$/.test(String(key))
          ? `.${String(key)}`
          : `['${printable(String(key), 80)}']`;
  }
  return path;
}

/** Validate against a schema; the first issue becomes a one-line {@link MessageError}. */
export function validate<S extends v.GenericSchema>(
  kind: string,
  schema: S,
  value: unknown,
): v.InferOutput<S> {
  const result = v.safeParse(schema, value);
  if (result.success) return result.output;
  const issue = result.issues[0];
  // An absent key reports "Invalid key: Expected "x" but received undefined"; say it plainly.
  const missing = issue.kind === 'schema' && issue.received === 'undefined' && issue.type === 'object';
  throw messageError(issuePath(kind, issue), missing ? 'is missing' : issue.message || 'is invalid');
}

export const id = (what: string) =>
  v.pipe(
    v.string(`expected a ${what} string`),
    v.regex(ID_PATTERN, `expected a ${what} of 1-64 letters, digits, '.', '_' or '-'`),
  );
export const sha256 = v.pipe(
  v.string('expected a SHA-256 string'),
  v.regex(SHA256_PATTERN, 'expected 64 lowercase hex digits'),
);
export const objectKey = v.pipe(
  v.string('expected an object key string'),
  v.minLength(1, 'expected an object key'),
  v.maxLength(1024, 'expected a key of at most 1024 characters'),
);
/** A vote threshold: core/vote.ts's one check, the value put on its 0.0001 grid. */
export const threshold = v.pipe(
  v.number(`expected a number, ${VOTE_THRESHOLD_EXPECTED.replace(/^expected /, '')}`),
  v.check((t) => voteThresholdValue(t) !== undefined, VOTE_THRESHOLD_EXPECTED),
  v.transform((t) => voteThresholdValue(t) ?? t),
);
export const probability = v.pipe(
  v.number('expected a number'),
  v.check((p) => Number.isFinite(p) && p >= 0 && p <= 1, 'expected a probability in [0, 1]'),
);

/** Report the first duplicate of `values` at `path`, if any. */
export function checkUnique(values: readonly string[], path: (index: number) => string, what: string): void {
  const seen = new Set<string>();
  values.forEach((value, index) => {
    if (seen.has(value)) throw messageError(path(index), `duplicate ${what} '${value}'`);
    seen.add(value);
  });
}
