/**
 * The DICOM decoder against values computed independently with pydicom and numpy
 * (test/fixtures/dicom/make-expected.py → expected.json), on real slices in every transfer syntax,
 * pydicom's test files and synthetic files for the corner cases.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeDicom, isDicom } from '../core/dicom/decode.js';
import { bytesToRaw, rawTable, wordsToRaw } from '../core/dicom/pixels.js';
import { decodeRle16, RleError } from '../core/dicom/rle.js';
import { InputError } from '../core/errors.js';
import { countDarkPixels, selectionRegion, selectionRows } from '../core/selection.js';

const DIR = fileURLToPath(new URL('./fixtures/dicom/', import.meta.url));

interface Sample {
  row: number;
  col: number;
  raw: number;
}
interface Decoded {
  width: number;
  height: number;
  instanceNumber?: number;
  sliceLocation?: number;
  pixelSpacing?: [number, number];
  rescaleSlope: number;
  rescaleIntercept: number;
  seriesId?: string;
  rawSum?: number;
  darkCount?: number;
  darkCountDcmtk?: number;
  samples?: Sample[];
}
interface Expected {
  decoded: Record<string, Decoded>;
  rejected: Record<string, { error: string; contains: string }>;
}

const expected = JSON.parse(readFileSync(join(DIR, 'expected.json'), 'utf8')) as Expected;

function load(name: string): Uint8Array {
  const bytes = readFileSync(join(DIR, name));
  return new Uint8Array(name.endsWith('.gz') ? gunzipSync(bytes) : bytes);
}

function sum(pixels: Uint16Array): number {
  let s = 0;
  for (const v of pixels) s += v;
  return s;
}

const exact = Object.entries(expected.decoded).filter(([, e]) => e.rawSum !== undefined);

describe('decodeDicom: pixels and header match pydicom', () => {
  it.each(exact)('%s', async (name, e) => {
    const bytes = load(name);
    const all = await decodeDicom(bytes, name);
    const h = all.header;
    expect(h.file).toBe(name);
    expect(h.format).toBe('dicom');
    expect([h.width, h.height]).toEqual([e.width, e.height]);
    expect(h.instanceNumber).toBe(e.instanceNumber);
    if (e.sliceLocation === undefined) expect(h.sliceLocation).toBeUndefined();
    else expect(h.sliceLocation).toBeCloseTo(e.sliceLocation, 9);
    expect(h.pixelSpacing).toEqual(e.pixelSpacing);
    expect(h.rescaleSlope).toBe(e.rescaleSlope);
    expect(h.rescaleIntercept).toBe(e.rescaleIntercept);
    expect(h.seriesId).toBe(e.seriesId);
    expect([all.rowStart, all.rowCount, all.pixels.length]).toEqual([0, e.height, e.width * e.height]);
    expect(sum(all.pixels)).toBe(e.rawSum);
    for (const s of e.samples ?? [])
      expect(all.pixels[s.row * e.width + s.col], `${s.row},${s.col}`).toBe(s.raw);
    expect(countDarkPixels(all)).toBe(e.darkCount);

    // Selection rows only: the same numbers from the rows the region needs.
    const sel = await decodeDicom(bytes, name, { rows: selectionRows });
    const region = selectionRegion(e.width, e.height);
    expect([sel.rowStart, sel.rowCount]).toEqual([region.rowStart, region.rowEnd - region.rowStart]);
    expect(sel.pixels).toEqual(all.pixels.subarray(region.rowStart * e.width, region.rowEnd * e.width));
    expect(countDarkPixels(sel)).toBe(e.darkCount);
  });

  it('gives 13,686 dark pixels for the real slice in every lossless syntax', async () => {
    const names = exact.map(([n]) => n).filter((n) => n.startsWith('lung-'));
    expect(names).toHaveLength(5);
    for (const name of names) {
      expect(countDarkPixels(await decodeDicom(load(name), name, { rows: selectionRows })), name).toBe(13686);
    }
  });

  it('decodes the lossy 12-bit JPEG slice close to the original (dcmtk counts 13,674 dark pixels)', async () => {
    const name = 'lung-jpeg-lossy-extended.dcm';
    const lossy = await decodeDicom(load(name), name);
    const original = await decodeDicom(load('lung-implicit-le.dcm.gz'), 'original');
    // The same IJG code as dcmtk: the count is dcmtk's exactly.
    expect(countDarkPixels(lossy)).toBe(expected.decoded[name]!.darkCountDcmtk);
    expect(lossy.header.rescaleIntercept).toBe(-2047);
    let maxDiff = 0;
    for (let i = 0; i < lossy.pixels.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(lossy.pixels[i]! - original.pixels[i]!));
    }
    expect(maxDiff).toBeGreaterThan(0);
    expect(maxDiff).toBeLessThanOrEqual(1041);
  });

  it('converts only the rows asked for, clamped to the image', async () => {
    const name = 'CT_small.dcm';
    const all = await decodeDicom(load(name), name);
    const some = await decodeDicom(load(name), name, { rows: () => ({ start: 10, end: 12 }) });
    expect([some.rowStart, some.rowCount]).toEqual([10, 2]);
    expect(some.pixels).toEqual(all.pixels.subarray(10 * 128, 12 * 128));
    const past = await decodeDicom(load(name), name, { rows: () => ({ start: 120, end: 999 }) });
    expect([past.rowStart, past.rowCount, past.pixels.length]).toEqual([120, 8, 8 * 128]);
  });

  it('reads a deflated file whatever its preamble holds (the same pixels and header)', async () => {
    // dicom-parser's own deflate path re-parsed the inflated copy from byte 0, preamble included:
    // found with deid-plant.py's deflated slice, whose preamble holds text.
    const name = 'ct-small-deflated.dcm';
    const plain = await decodeDicom(load(name), name);
    const bytes = new Uint8Array(load(name));
    bytes.set(new TextEncoder().encode('a preamble with text in it, as some writers leave'), 0);
    const read = await decodeDicom(bytes, name);
    expect(read.pixels).toEqual(plain.pixels);
    expect(read.header).toEqual(plain.header);
  });

  it('maps padding to raw 0 and masks the unused high bits of signed 12-bit pixels', async () => {
    const rows = await decodeDicom(load('synth-signed12-padding.dcm'), 'x');
    // The generator fills the first 6 rows with the padding value -2000.
    expect(rows.pixels.subarray(0, 6 * 64).every((v) => v === 0)).toBe(true);
    // Stored values -2048…2047 map to raw 0…3071 whatever junk sits in bits 12…15.
    expect(Math.max(...rows.pixels)).toBeLessThanOrEqual(3071);
  });

  it('never puts patient attributes in the header', async () => {
    const rows = await decodeDicom(load('CT_small.dcm'), 'CT_small.dcm');
    const text = JSON.stringify(rows.header);
    expect(text).not.toMatch(/CompressedSamples|1CT1|ABCD1234|Patient/i);
    expect(Object.keys(rows.header).sort()).toEqual(
      [
        'file',
        'format',
        'height',
        'instanceNumber',
        'pixelSpacing',
        'rescaleIntercept',
        'rescaleSlope',
        'seriesId',
        'sliceLocation',
        'width',
      ].sort(),
    );
  });
});

describe('decodeDicom: rejections', () => {
  const classOf = (error: unknown) => (error as Error).constructor.name;

  it.each(Object.entries(expected.rejected))('%s', async (name, e) => {
    const error = await decodeDicom(load(name), name).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error, 'should have been rejected').toBeInstanceOf(InputError);
    expect(classOf(error)).toBe(e.error);
    const message = (error as Error).message;
    expect(message.startsWith(`${name}: `)).toBe(true);
    expect(message).toContain(e.contains);
    expect(message).not.toContain('\n');
  });

  it('rejects empty and random bytes as unknown or damaged files', async () => {
    await expect(decodeDicom(new Uint8Array(0), 'empty.dcm')).rejects.toThrow('empty.dcm: empty file');
    const text = new TextEncoder().encode('this is not a DICOM file at all, just some text');
    await expect(decodeDicom(text, 'a.txt')).rejects.toMatchObject({ name: 'UnknownFormatError' });
    const tiff = new Uint8Array([0x49, 0x49, 0x2a, 0x00, 8, 0, 0, 0, 0, 0]);
    await expect(decodeDicom(tiff, 'a.tif')).rejects.toMatchObject({ name: 'UnknownFormatError' });
  });

  it('lets nothing but InputError escape, for any bytes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 600 }), fc.boolean(), async (body, withMarker) => {
        const bytes = withMarker ? new Uint8Array(132 + body.length) : body;
        if (withMarker) {
          bytes.set(new TextEncoder().encode('DICM'), 128);
          bytes.set(body, 132);
        }
        await decodeDicom(bytes, 'r.dcm').then(
          () => {},
          (error: unknown) => {
            expect(error).toBeInstanceOf(InputError);
            expect((error as Error).message).not.toContain('\n');
          },
        );
      }),
      { numRuns: 150 },
    );
  });

  it('lets nothing but InputError escape for cut and damaged real files', async () => {
    const sources = [
      'CT_small.dcm',
      'ct-small-implicit.dcm',
      'mr-as-ct-rle.dcm',
      'mr-as-ct-jpegls.dcm',
      'mr-as-ct-j2k.dcm',
    ];
    const files = sources.map(load);
    await fc.assert(
      fc.asyncProperty(
        fc.nat(files.length - 1),
        fc.nat(),
        fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 8 }),
        async (which, cutAt, flips) => {
          const source = files[which]!;
          const bytes = source.slice(0, (cutAt % source.length) + 1);
          for (const [at, value] of flips) bytes[at % bytes.length] = value;
          await decodeDicom(bytes, 'd.dcm').then(
            (rows) => expect(rows.pixels.length).toBe(rows.rowCount * rows.header.width),
            (error: unknown) => expect(error).toBeInstanceOf(InputError),
          );
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('isDicom', () => {
  it('recognises files with a preamble and files that start with group 0002 or 0008', () => {
    for (const name of [
      'CT_small.dcm',
      'ct-small-nopreamble.dcm',
      'ct-small-nometa-implicit.dcm',
      'ct-small-nometa-explicit.dcm',
      'ct-small-nometa-bigendian.dcm',
      'ExplVR_BigEndNoMeta.dcm',
      'ExplVR_LitEndNoMeta.dcm',
    ]) {
      expect(isDicom(load(name)), name).toBe(true);
    }
  });

  it('refuses other bytes', () => {
    expect(isDicom(new Uint8Array(0))).toBe(false);
    expect(isDicom(new Uint8Array([0x49, 0x49, 0x2a, 0x00, 8, 0, 0, 0]))).toBe(false);
    expect(isDicom(new TextEncoder().encode('hello, world: not DICOM'))).toBe(false);
    // pydicom's no_meta.dcm has a stray byte before its first element: not DICOM as it stands.
    expect(isDicom(load('no_meta.dcm'))).toBe(false);
  });
});

describe('decodeRle16', () => {
  /** An RLE frame of two segments for the given words, encoded as literal runs. */
  function rleFrame(words: number[]): Uint8Array {
    const seg = (bytes: number[]) => [bytes.length - 1, ...bytes];
    const high = seg(words.map((w) => w >> 8));
    const low = seg(words.map((w) => w & 0xff));
    const frame = new Uint8Array(64 + high.length + low.length);
    const view = new DataView(frame.buffer);
    view.setUint32(0, 2, true);
    view.setUint32(4, 64, true);
    view.setUint32(8, 64 + high.length, true);
    frame.set(high, 64);
    frame.set(low, 64 + high.length);
    return frame;
  }

  it('decodes literal runs, high byte plane first', () => {
    expect(Array.from(decodeRle16(rleFrame([0x0102, 0xfffe, 7]), 3))).toEqual([0x0102, 0xfffe, 7]);
  });

  it('decodes repeat runs and ignores the no-op byte', () => {
    const frame = new Uint8Array(64 + 4 + 3);
    const view = new DataView(frame.buffer);
    view.setUint32(0, 2, true);
    view.setUint32(4, 64, true);
    view.setUint32(8, 68, true);
    frame.set([0x80, 0xfe, 0x12, 0x80], 64); // no-op, then 0x12 three times, no-op
    frame.set([0xfe, 0x34, 0x80], 68);
    expect(Array.from(decodeRle16(frame, 3))).toEqual([0x1234, 0x1234, 0x1234]);
  });

  it('stops at the limit and rejects short or malformed data', () => {
    expect(Array.from(decodeRle16(rleFrame([1, 2, 3, 4]), 4, 2))).toEqual([1, 2, 0, 0]);
    expect(() => decodeRle16(rleFrame([1, 2]), 3)).toThrow(RleError);
    expect(() => decodeRle16(new Uint8Array(10), 1)).toThrow(RleError);
    const one = rleFrame([1]);
    new DataView(one.buffer).setUint32(0, 3, true);
    expect(() => decodeRle16(one, 1)).toThrow('3 RLE segments');
  });
});

describe('pixel conversion', () => {
  const table = rawTable({
    bitsStored: 12,
    shift: 0,
    signed: true,
    slope: 1,
    intercept: 0,
    paddingLow: -2000,
    paddingHigh: -2000,
  });

  it('builds the table from mask, sign, padding and rescale', () => {
    expect(table[0x0000]).toBe(1024);
    expect(table[0x07ff]).toBe(1024 + 2047);
    expect(table[0x0800]).toBe(0); // -2048 → raw -1024 → clamped
    expect(table[0xf000 | 0x0fff]).toBe(1023); // junk high bits ignored: -1
    expect(table[(-2000 & 0xfff) | 0x3000]).toBe(0); // padding
  });

  it('gives the same values at every alignment and length, both byte orders', () => {
    const words = Uint16Array.from({ length: 41 }, (_, i) => (i * 2654435761) >>> 16);
    const expectedRaw = (from: number, n: number) =>
      Array.from(words.subarray(from, from + n), (w) => table[w]!);
    for (const from of [0, 1, 2, 3]) {
      for (const n of [0, 1, 2, 7, 36]) {
        expect(Array.from(wordsToRaw(words, from, n, table)), `${from}+${n}`).toEqual(expectedRaw(from, n));
        const le = new Uint8Array(words.buffer);
        expect(Array.from(bytesToRaw(le, from * 2, n, true, table))).toEqual(expectedRaw(from, n));
        const odd = new Uint8Array(le.length + 1);
        odd.set(le, 1);
        expect(Array.from(bytesToRaw(odd, 1 + from * 2, n, true, table))).toEqual(expectedRaw(from, n));
        const be = new Uint8Array(le.length);
        for (let k = 0; k < le.length; k += 2) [be[k], be[k + 1]] = [le[k + 1]!, le[k]!];
        expect(Array.from(bytesToRaw(be, from * 2, n, false, table))).toEqual(expectedRaw(from, n));
      }
    }
  });
});
