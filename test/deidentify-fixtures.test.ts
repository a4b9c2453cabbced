/**
 * De-identification (core/dicom/deidentify.ts) of the real fixtures in every transfer syntax:
 * pixels and header facts kept, a second pass only maps UIDs again, covidct's own writer's files,
 * damaged and foreign bytes as one-line errors.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { decodeDicom } from '../core/dicom/decode.js';
import { deidentifyDicom } from '../core/dicom/deidentify.js';
import { encodeDicomCt } from '../core/dicom/encode.js';
import { UidMapper } from '../core/dicom/uids.js';
import { latin1, pydicomJson, value } from './helpers/deid-data-set.js';
import { tempDir } from './helpers/tmp.js';

const FIXTURES = join(import.meta.dirname, 'fixtures', 'dicom');

const work = tempDir('covidct-deid-');

const CASES: [string, string][] = [
  ['explicit VR little endian', 'CT_small.dcm'],
  ['implicit VR little endian', 'ct-small-implicit.dcm'],
  ['explicit VR big endian', 'ct-small-bigendian.dcm'],
  ['deflated', 'ct-small-deflated.dcm'],
  ['no preamble', 'ct-small-nopreamble.dcm'],
  ['no file meta, implicit', 'ct-small-nometa-implicit.dcm'],
  ['no file meta, explicit', 'ct-small-nometa-explicit.dcm'],
  ['JPEG lossless (encapsulated pixel data, real TCIA slice)', 'lung-jpeg-lossless-sv1.dcm'],
  ['JPEG-LS lossless', 'lung-jpegls-lossless.dcm'],
  ['RLE lossless', 'lung-rle-lossless.dcm'],
  ['implicit VR, gzipped real slice', 'lung-implicit-le.dcm.gz'],
];

function load(file: string): Uint8Array {
  const bytes = readFileSync(join(FIXTURES, file));
  return file.endsWith('.gz') ? gunzipSync(bytes) : bytes;
}

describe('real fixtures in every transfer syntax', () => {
  const uids = new UidMapper();
  const outputs = CASES.map(([, file]) => {
    const result = deidentifyDicom(load(file), file, { uids });
    const path = join(work, file.replace(/\.gz$/, ''));
    writeFileSync(path, result.bytes);
    return { file, path, result };
  });

  CASES.forEach(([name, file], i) => {
    it(`${name} (${file}): pydicom reads it, no identity left, same pixels and header facts`, async () => {
      const original = load(file);
      const originalPath = join(work, `original-${i}.dcm`);
      writeFileSync(originalPath, original);
      const [before, after] = pydicomJson([originalPath, outputs[i]!.path]);
      const name =
        (before!.data['00100010']?.Value?.[0] as { Alphabetic?: string } | undefined)?.Alphabetic ?? '';
      expect(after!.data['00100010']?.Value).toBeUndefined();
      if (name.length > 3 && !file.includes('deflated'))
        expect(latin1(outputs[i]!.result.bytes)).not.toContain(name);
      expect(Object.keys(after!.data).filter((k) => Number.parseInt(k.slice(0, 4), 16) % 2 === 1)).toEqual(
        [],
      );
      expect(value(after!.data, '00120062')).toEqual(['YES']);
      expect(value(after!.meta, '00020003')).toEqual(value(after!.data, '00080018'));
      expect(value(after!.data, '00080018')).not.toEqual(value(before!.data, '00080018'));
      expect(value(after!.data, '00080016')).toEqual(value(before!.data, '00080016'));
      expect(after!.data['7FE00010']).toEqual(before!.data['7FE00010']);
      const a = await decodeDicom(original, file);
      const b = await decodeDicom(outputs[i]!.result.bytes, file);
      expect(b.pixels).toEqual(a.pixels);
      // Same header facts, but the series UID, which is replaced.
      expect({ ...b.header, seriesId: undefined }).toEqual({ ...a.header, seriesId: undefined });
      expect(b.header.seriesId).toBe(uids.map(a.header.seriesId!));
    });
  });

  it('a second pass with the same secret only maps UIDs again; nothing else changes', () => {
    const secret = new Uint8Array(16).fill(3);
    const first = deidentifyDicom(load('CT_small.dcm'), 'CT_small.dcm', { uids: new UidMapper(secret) });
    expect(first.removed).toBeGreaterThan(179); // the private elements alone
    const second = deidentifyDicom(first.bytes, 'CT_small.dcm', { uids: new UidMapper(secret) });
    expect(second.removed).toBe(0);
    expect([second.emptied, second.dummied, second.uidsReplaced]).toEqual([
      first.emptied,
      first.dummied,
      first.uidsReplaced,
    ]);
  });

  it("covidct's own DICOM writer: name and ID gone, pixels identical", async () => {
    const pixels = new Uint16Array(64 * 64).map((_, i) => (i * 37) % 4000);
    const bytes = encodeDicomCt(pixels, 64, 64, {
      studyInstanceUid: '1.2.3',
      seriesInstanceUid: '1.2.3.4',
      sopInstanceUid: '1.2.3.4.5',
      patientName: 'SECRET^PERSON',
      patientId: 'MRN-123456',
      instanceNumber: 7,
      sliceLocation: -12.5,
      imagePositionPatient: [0, 0, -12.5],
      pixelSpacing: [0.7, 0.7],
    });
    const out = deidentifyDicom(bytes, 'mine.dcm').bytes;
    const text = latin1(out);
    expect(text).not.toContain('SECRET');
    expect(text).not.toContain('MRN-123456');
    const decoded = await decodeDicom(out, 'mine.dcm');
    expect(decoded.pixels).toEqual(pixels);
    expect(decoded.header.instanceNumber).toBe(7);
    expect(decoded.header.sliceLocation).toBe(-12.5);
  });

  it('damaged and foreign bytes are one-line errors naming the file', () => {
    const bytes = load('CT_small.dcm');
    expect(() => deidentifyDicom(bytes.subarray(0, 700), 'cut.dcm')).toThrow(
      /^cut\.dcm: truncated or damaged/,
    );
    expect(() => deidentifyDicom(new Uint8Array(200), 'zeros.dcm')).toThrow(/^zeros\.dcm: not a DICOM file/);
  });
});
