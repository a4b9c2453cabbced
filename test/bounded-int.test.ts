/**
 * The small shared rules of the reshape: a bounded whole number as a person types it (one rule for
 * options, environment variables and CDK context), options without their absent entries, and
 * reading a local file with a one-line error naming it.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { OptionValueError, parseInteger } from '../cli/io.js';
import { boundedIntExpected, parseBoundedInt } from '../core/bounded-int.js';
import { definedOnly } from '../core/defined.js';
import { FileSystemError } from '../core/errors.js';
import { readLocalFile } from '../core/read-file.js';

describe('parseBoundedInt', () => {
  it('takes whole numbers within the bounds, bounds included', () => {
    expect(parseBoundedInt('1', 1, 256)).toBe(1);
    expect(parseBoundedInt('256', 1, 256)).toBe(256);
    expect(parseBoundedInt(' 12 ', 1, 256)).toBe(12);
    expect(parseBoundedInt('0', 0, 10)).toBe(0);
  });

  it('refuses blank, fractional, non-decimal, non-numeric and out-of-bounds texts', () => {
    for (const text of [
      '',
      '  ',
      '1.5',
      'abc',
      '12x',
      'NaN',
      'Infinity',
      '0',
      '257',
      '-1',
      '1e2',
      '0x10',
      '+5',
    ]) {
      expect(parseBoundedInt(text, 1, 256), text).toBeUndefined();
    }
  });

  it('words what was expected', () => {
    expect(boundedIntExpected(1, 256)).toBe('a whole number from 1 to 256');
  });

  it("is the rule of the command line's integer options", () => {
    const runs = parseInteger('--runs', 1, 100);
    expect(runs('7')).toBe(7);
    expect(() => runs('')).toThrow(OptionValueError);
    expect(() => runs('0')).toThrow("--runs must be a whole number from 1 to 100, got '0'");
    // Blank is no number even where 0 is allowed (Number('') is 0: `--seed ''` was taken as 0).
    expect(() => parseInteger('--seed', 0, 10)('')).toThrow(OptionValueError);
  });
});

describe('definedOnly', () => {
  it('drops the entries whose value is undefined and keeps falsy values', () => {
    const out = definedOnly({ a: 1, b: undefined, c: 0, d: '', e: false, f: null });
    expect(out).toEqual({ a: 1, c: 0, d: '', e: false, f: null });
    expect(Object.keys(out)).not.toContain('b');
  });
});

describe('readLocalFile', () => {
  it('reads a file, and names a missing one in a one-line error', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'covidct-read-file-'));
    writeFileSync(join(dir, 'a.json'), '{}');
    expect((await readLocalFile(join(dir, 'a.json'))).toString()).toBe('{}');
    const missing = join(dir, 'missing.json');
    await expect(readLocalFile(missing)).rejects.toThrow(FileSystemError);
    await expect(readLocalFile(missing)).rejects.toThrow(`${missing}: no such file or folder`);
    await expect(readLocalFile(dir)).rejects.toThrow('is a folder, expected a file');
  });
});
