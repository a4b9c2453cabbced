/**
 * What fuzzing the slice readers found (issue 7, item 1), as fixed cases: absurd sizes refused
 * before allocating, codestreams that disagree with the header, LZW tables that never clear,
 * Deflate bombs, damaged header text quoted on one line.
 */
import { deflateRawSync, deflateSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { InputError } from '../core/errors.js';
import { decodeSlice } from '../core/read.js';
import { ALL_SEEDS, clean, collectGarbage, printTallies } from './helpers/fuzz.js';
import { setDimensions, writeWord } from './helpers/fuzz-fields.js';

afterAll(printTallies);

/** A little-endian single-IFD TIFF: `tags` as [tag, type (3 SHORT, 4 LONG), values], then `data`. */
function tinyTiff(
  tags: readonly (readonly [number, 3 | 4, readonly number[]])[],
  data: Uint8Array,
): Uint8Array {
  const sorted = [...tags].sort((a, b) => a[0] - b[0]);
  const ifdAt = 8;
  const ifdLength = 2 + sorted.length * 12 + 4;
  const extra = sorted.filter(([, type, values]) => values.length * (type === 3 ? 2 : 4) > 4);
  const extraLength = extra.reduce((sum, [, type, values]) => sum + values.length * (type === 3 ? 2 : 4), 0);
  const dataAt = ifdAt + ifdLength + extraLength;
  const out = new Uint8Array(dataAt + data.length);
  const view = new DataView(out.buffer);
  out.set([0x49, 0x49, 42, 0]);
  view.setUint32(4, ifdAt, true);
  view.setUint16(ifdAt, sorted.length, true);
  let extraAt = ifdAt + ifdLength;
  sorted.forEach(([tag, type, values], i) => {
    const at = ifdAt + 2 + i * 12;
    view.setUint16(at, tag, true);
    view.setUint16(at + 2, type, true);
    view.setUint32(at + 4, values.length, true);
    const size = type === 3 ? 2 : 4;
    let valueAt = at + 8;
    if (values.length * size > 4) {
      view.setUint32(at + 8, extraAt, true);
      valueAt = extraAt;
      extraAt += values.length * size;
    }
    values.forEach((v, k) => {
      // Offsets are written relative to the data block.
      const value = tag === 273 || tag === 324 ? v + dataAt : v;
      if (type === 3) view.setUint16(valueAt + k * 2, value, true);
      else view.setUint32(valueAt + k * 4, value, true);
    });
  });
  out.set(data, dataAt);
  return out;
}

/** MSB-first codes of `width` bits. */
function packCodes(codes: readonly number[], width: (index: number) => number): Uint8Array {
  const out: number[] = [];
  let acc = 0;
  let bits = 0;
  codes.forEach((code, i) => {
    const w = width(i);
    acc = (acc << w) | code;
    bits += w;
    while (bits >= 8) {
      bits -= 8;
      out.push((acc >>> bits) & 0xff);
    }
    acc &= (1 << bits) - 1;
  });
  if (bits > 0) out.push((acc << (8 - bits)) & 0xff);
  return Uint8Array.from(out);
}

/**
 * Run `decode`, expecting a one-line InputError matching `pattern`, and little time and memory
 * spent: ArrayBuffers allocated and not yet collected stay under `memoryLimitBytes`.
 */
async function expectRejected(
  decode: () => Promise<unknown>,
  pattern: RegExp,
  limitMs = 2000,
  memoryLimitBytes = 64 * 1024 * 1024,
): Promise<void> {
  collectGarbage();
  const before = process.memoryUsage().arrayBuffers;
  const started = performance.now();
  const error = await decode().then(
    () => undefined,
    (e: unknown) => e,
  );
  const ms = performance.now() - started;
  expect(error).toBeInstanceOf(InputError);
  expect((error as Error).message).toMatch(pattern);
  expect((error as Error).message).not.toMatch(/[\r\n]/);
  expect(ms).toBeLessThan(limitMs);
  expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(memoryLimitBytes);
}

const seedNamed = (name: string): Uint8Array => ALL_SEEDS.find((s) => s.name.endsWith(name))!.bytes.slice();

describe('reader regressions found by fuzzing', () => {
  it('refuses a DICOM image size beyond 4096×4096 before allocating for it (an RLE slice allocated 8 GiB)', async () => {
    for (const name of ['lung-rle-lossless.dcm', 'synth-signed12-rle.dcm', 'CT_small.dcm']) {
      const bytes = seedNamed(name);
      setDimensions(bytes, 32769, 4097);
      await expectRejected(() => decodeSlice(bytes, name), /absurd image size 32769×4097/);
    }
  });

  it('refuses a JPEG, JPEG-LS or JPEG 2000 codestream whose own size differs from the header, before decoding', async () => {
    // The frame header's height and width (SOF / SIZ) set to 65535 / 60000: the codecs would
    // allocate and decode by them.
    const cases: [string, (b: Uint8Array) => void][] = [
      ['lung-jpeg-lossless-sv1.dcm', (b) => patchMarker(b, [0xff, 0xc3], 5, 0xffff)],
      ['lung-jpeg-lossy-extended.dcm', (b) => patchMarker(b, [0xff, 0xc1], 5, 0xffff)],
      ['lung-jpegls-lossless.dcm', (b) => patchMarker(b, [0xff, 0xf7], 5, 0xffff)],
      ['lung-j2k-lossless.dcm', (b) => patchMarker(b, [0xff, 0x4f, 0xff, 0x51], 8, 60000, 4)],
    ];
    for (const [name, patch] of cases) {
      const bytes = seedNamed(name);
      patch(bytes);
      await expectRejected(() => decodeSlice(bytes, name), /frame is \d+×\d+, the header says 512×512/);
    }
  });

  it('decodes tiled LZW without geotiff: a damaged tile that never clears its table ends in bounded time', async () => {
    // 6000 codes, no CLEAR: the table fills at 4096 entries. geotiff 3.0.5 then looked entries up
    // past its 4093-entry arrays and looped forever, growing an array until the heap ran out.
    const codes = [256, ...Array.from({ length: 6000 }, (_, i) => (i < 300 ? i % 256 : 258 + (i % 3000)))];
    const widthAt = (i: number) => (i < 255 ? 9 : i < 767 ? 10 : i < 1791 ? 11 : 12);
    const tile = packCodes(codes, widthAt);
    const bytes = tinyTiff(
      [
        [256, 3, [16]],
        [257, 3, [16]],
        [258, 3, [16]],
        [259, 3, [5]],
        [262, 3, [1]],
        [277, 3, [1]],
        [322, 3, [16]],
        [323, 3, [16]],
        [324, 4, [0]],
        [325, 4, [tile.length]],
      ],
      tile,
    );
    const started = performance.now();
    const outcome = await clean('regression', 'tiled-lzw.tif', () => decodeSlice(bytes, 'tiled-lzw.tif'));
    expect(performance.now() - started).toBeLessThan(1000);
    expect(['decoded', 'rejected']).toContain(outcome.kind);
  });

  it('stops a Deflate strip that inflates far beyond its rows (a deflate bomb) at its size', async () => {
    const bomb = deflateSync(new Uint8Array(64 * 1024 * 1024));
    const bytes = tinyTiff(
      [
        [256, 3, [16]],
        [257, 3, [16]],
        [258, 3, [16]],
        [259, 3, [8]],
        [262, 3, [1]],
        [273, 4, [0]],
        [277, 3, [1]],
        [278, 3, [16]],
        [279, 4, [bomb.length]],
      ],
      bomb,
    );
    await expectRejected(
      () => decodeSlice(bytes, 'bomb.tif'),
      /Deflate strip 0 inflates to more than \d+ bytes, expected 512/,
    );
  });

  it('stops a deflated DICOM data set that inflates beyond 64 MiB', async () => {
    const deflated = seedNamed('ct-small-deflated.dcm');
    const view = new DataView(deflated.buffer, deflated.byteOffset);
    const dataSetAt = 144 + view.getUint32(140, true); // after (0002,0000) UL and the group it counts
    const bomb = deflateRawSync(new Uint8Array(80 * 1024 * 1024));
    const bytes = new Uint8Array(dataSetAt + bomb.length);
    bytes.set(deflated.subarray(0, dataSetAt));
    bytes.set(bomb, dataSetAt);
    // zlib fills its output up to the 64 MiB cap before it stops, and GC may not have taken those
    // chunks back yet (CI once saw 64 MiB + 16 KiB): the bound is the cap plus slack, well under
    // the 80 MiB a reader without the cap would inflate.
    await expectRejected(
      () => decodeSlice(bytes, 'bomb.dcm'),
      /larger than 64 MiB inflated/,
      2000,
      72 * 1024 * 1024,
    );
  });

  it('quotes damaged DICOM header text on one line (a RescaleIntercept holding a line break broke the message)', async () => {
    // Found by the long form (seed 20240607): CT_small.dcm's RescaleIntercept rewritten to "\x01\x01\x01\n4".
    const bytes = seedNamed('CT_small.dcm');
    const tag = [0x28, 0x00, 0x52, 0x10]; // (0028,1052) RescaleIntercept, explicit VR "DS"
    const at = bytes.findIndex((_, i) => tag.every((b, k) => bytes[i + k] === b));
    const length = bytes[at + 6]!;
    bytes.set(Buffer.from('\x01\x01\x01\n4'.padEnd(length, ' '), 'latin1'), at + 8);
    await expectRejected(
      () => decodeSlice(bytes, 'ct.dcm'),
      /^ct\.dcm: RescaleIntercept "\\u0001\\u0001\\u0001\\n4 *" is not a number$/,
    );
  });

  it('refuses a TIFF over 4096×4096 pixels (sides up to 32768 allowed) before allocating its rows', async () => {
    const bytes = seedNamed('lzw-le.tif');
    setDimensions(bytes, 8192, 8192);
    await expectRejected(() => decodeSlice(bytes, 'big.tif'), /absurd TIFF size 8192×8192/);
  });
});

/** Write `value` (`width` bytes, big endian) at `offset` after the first occurrence of `marker`. */
function patchMarker(
  bytes: Uint8Array,
  marker: readonly number[],
  offset: number,
  value: number,
  width = 2,
): void {
  for (let i = 0; i + marker.length <= bytes.length; i++) {
    if (marker.every((m, k) => bytes[i + k] === m)) {
      writeWord(bytes, i + offset, width, value, false);
      return;
    }
  }
  throw new Error(`marker ${marker.map((m) => m.toString(16)).join(' ')} not found`);
}
