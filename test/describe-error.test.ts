/**
 * core/errors.ts `describeError`: the one place a thrown value becomes a one-line reason (the DICOM
 * parser's and the codecs' reasons, the Keras importer's and the backends' build on it).
 */
import { describe, expect, it } from 'vitest';
import { CorruptFileError, describeError } from '../core/errors.js';

describe('describeError', () => {
  it("gives an InputError's message as it is", () => {
    expect(describeError(new CorruptFileError('a.dcm', 'truncated'))).toBe('a.dcm: truncated');
    expect(describeError(new CorruptFileError('a.dcm', 'truncated'), { className: false })).toBe(
      'a.dcm: truncated',
    );
  });

  it("keeps an unexpected error's class name unless told not to, and only its first line", () => {
    const error = new TypeError('bad thing\n    at somewhere');
    expect(describeError(error)).toBe('TypeError: bad thing');
    expect(describeError(error, { className: false })).toBe('bad thing');
  });

  it('makes one line of anything thrown, cut to maxLength', () => {
    expect(describeError('line one\nline two')).toBe('line one');
    expect(describeError(42)).toBe('42');
    expect(describeError(undefined)).toBe('undefined');
    expect(describeError(new Error('x'.repeat(300)), { className: false, maxLength: 200 })).toHaveLength(200);
  });
});
