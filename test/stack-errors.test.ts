/** The local stack's `onError` for tests (test/helpers/stack-errors.ts): one `where: message` line each. */
import { describe, expect, it } from 'vitest';
import { collectStackErrors } from './helpers/stack-errors.js';

describe('collectStackErrors', () => {
  it('appends where and the message of an Error, or the value as a string', () => {
    const errors: string[] = [];
    const onError = collectStackErrors(errors);
    onError(new TypeError('boom'), 'select');
    onError('plain', 'worker');
    expect(errors).toEqual(['select: boom', 'worker: plain']);
  });

  it('cuts each line to maxLength when given', () => {
    const errors: string[] = [];
    collectStackErrors(errors, 10)(new Error('x'.repeat(50)), 'api');
    expect(errors).toEqual(['api: xxxxx']);
  });
});
