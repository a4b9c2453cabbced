/**
 * Selection parts and capped reasons at the documented maxima, without a network (issue 14,
 * section 3): item sizes as dynalite counts them, the maxima split into parts under 256 KB and
 * joined back, a reason capped to one line of 2 KB.
 */
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { DYNAMODB_MAX_ITEM_BYTES, MAX_REASON_BYTES, PIPELINE_DEFAULTS } from '../pipeline/index.js';
import { LONG, longName, longSeriesId } from './helpers/limits-stack.js';

describe('selection parts and capped reasons (no network)', () => {
  /** The worst case the limits allow: keys of 332 characters, 2 KB reasons, big figures. */
  const key = (i: number) =>
    `incoming/${LONG.hospital}/00000000-0000-0000-0000-000000000000/${longSeriesId(i)}/${longName(i)}`;

  // ASCII only: dynalite counts a string's UTF-16 units where DynamoDB (and dynamoItemBytes) count UTF-8 bytes.
  it('sizes items as dynalite (which enforces DynamoDB’s 400 KB) does, or a little over', async () => {
    const { dynamoItemBytes } = await import('../pipeline/index.js');
    const { marshall } = await import('@aws-sdk/util-dynamodb');
    const require = createRequire(import.meta.url);
    const db = require('dynalite/db/index.js') as { itemSize: (item: unknown) => number };
    const items: Record<string, unknown>[] = [
      { pk: 'STUDY#h#s', sk: 'STUDY', n: 123456789, f: 0.30000000000000004, neg: -12.5, b: true, z: null },
      {
        pk: 'p',
        series: [
          {
            id: longSeriesId(1),
            status: 'SELECTED',
            threshold: 1234.6666666666667,
            selectedCount: 1,
            slices: [],
          },
          { id: 'x', slices: [{ key: key(2), darkPixels: 25000, selected: false }], reason: 'e'.repeat(100) },
        ],
      },
    ];
    for (const item of items) {
      const dynalite = db.itemSize(marshall(item, { removeUndefinedValues: true }));
      const ours = dynamoItemBytes(item);
      expect(ours).toBeGreaterThanOrEqual(dynalite);
      expect(ours - dynalite).toBeLessThanOrEqual(0.05 * dynalite + 16);
    }
  });

  it('splits the maxima (with each slice’s recorded sha256 and size) into parts under 256 KB and joins them back', async () => {
    const { dynamoItemBytes, joinSelection, SELECTION_PART_MAX_BYTES, splitSelection } = await import(
      '../pipeline/index.js'
    );
    const n = PIPELINE_DEFAULTS.maxSlicesPerStudy;
    // What select records for each slice it read: its SHA-256 (64 hex) and its length, at the largest.
    const RECORDED = { sha256: 'f'.repeat(64), size: PIPELINE_DEFAULTS.maxSliceBytes };
    const oneSeries = [
      {
        id: longSeriesId(0),
        status: 'SELECTED' as const,
        threshold: 12345.666666666666,
        selectedCount: n / 2,
        slices: Array.from({ length: n }, (_, i) => ({
          key: key(i),
          darkPixels: 25000 + i,
          selected: i % 2 === 0,
          ...RECORDED,
        })),
      },
    ];
    const manySeries = Array.from({ length: n }, (_, i) => ({
      id: longSeriesId(i),
      status: 'FAILED' as const,
      reason: `${key(i)}: ${'x'.repeat(5000)}`, // capped to 2 KB when stored
      threshold: null,
      selectedCount: 0,
      slices: [{ key: key(i), darkPixels: 1, selected: false, ...RECORDED }],
    }));
    for (const series of [oneSeries, manySeries]) {
      const parts = splitSelection(series);
      for (const part of parts) {
        const item = {
          pk: `STUDY#${LONG.hospital}#${'0'.repeat(36)}`,
          sk: `SELECTION#${'0'.repeat(36)}#0000`,
          series: part,
        };
        expect(dynamoItemBytes(item)).toBeLessThanOrEqual(SELECTION_PART_MAX_BYTES);
        expect(dynamoItemBytes(item)).toBeLessThan(DYNAMODB_MAX_ITEM_BYTES);
      }
      const joined = joinSelection(parts);
      expect(joined.map((s) => s.slices.length)).toEqual(series.map((s) => s.slices.length));
      expect(joined.flatMap((s) => s.slices)).toEqual(series.flatMap((s) => s.slices));
      if (series === oneSeries) expect(parts.length).toBeGreaterThan(1);
      else expect(joined.every((s) => Buffer.byteLength(s.reason ?? '') <= MAX_REASON_BYTES)).toBe(true);
    }
  });

  it('caps a reason to one line of 2 KB, the first 3 causes and a count of the rest', async () => {
    const { capReason, reasonWithCauses } = await import('../pipeline/index.js');
    expect(capReason('one\ntwo')).toBe('one');
    const long = capReason('é'.repeat(5000));
    expect(Buffer.byteLength(long)).toBeLessThanOrEqual(MAX_REASON_BYTES);
    expect(long.endsWith('é…')).toBe(true);
    expect(reasonWithCauses('nothing to classify', ['a', 'b'])).toBe('nothing to classify: a; b');
    const many = reasonWithCauses(
      'nothing to classify',
      Array.from({ length: 2000 }, (_, i) => `${key(i)}: not found in the bucket`),
    );
    expect(many).toMatch(/^nothing to classify: .*not found in the bucket; .*; .*; and 1997 more$/);
    expect(Buffer.byteLength(many)).toBeLessThanOrEqual(MAX_REASON_BYTES);
  });
});
