/**
 * De-identification of DICOM slices before upload: pydicom (Debian's /usr/bin/python3) reads every
 * rewritten file and finds no identity left, and covidct's decoder gives the same pixels and
 * header facts as from the original, in every transfer syntax the fixtures cover.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { decodeDicom } from '../core/dicom/decode.js';
import { DEIDENTIFICATION_METHOD, deidentifyDicom } from '../core/dicom/deidentify.js';
import { encodeDicomCt } from '../core/dicom/encode.js';
import { tempDir } from './helpers/tmp.js';

const FIXTURES = join(import.meta.dirname, 'fixtures', 'dicom');
const work = tempDir('covidct-deid-');

/** Read files with pydicom and report what identity they still hold. */
function pydicomReport(paths: readonly string[]): Record<string, unknown>[] {
  const script = `
import json, sys, pydicom
out = []
for p in sys.argv[1:]:
    d = pydicom.dcmread(p, force=True)
    keys = ['PatientName', 'PatientID', 'PatientBirthDate', 'OtherPatientIDs', 'PatientAddress',
            'ReferringPhysicianName', 'InstitutionName', 'AccessionNumber', 'StudyDate', 'SeriesDate',
            'OperatorsName', 'PatientAge', 'StationName', 'DeviceSerialNumber']
    out.append({
        'present': {k: (str(d.get(k)) if k in d else None) for k in keys},
        'sequences': [e.keyword for e in d if e.VR == 'SQ'],
        'private': len([e for e in d if e.tag.is_private]),
        'removed': str(d.get('PatientIdentityRemoved')),
        'method': str(d.get('DeidentificationMethod')),
        'series': str(d.get('SeriesInstanceUID')),
        'instance': str(d.get('InstanceNumber')),
        'rows': int(d.Rows), 'cols': int(d.Columns),
        'pixels': len(d.PixelData),
    })
print(json.dumps(out))
`;
  const run = spawnSync('/usr/bin/python3', ['-W', 'ignore', '-c', script, ...paths], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`pydicom failed: ${run.stderr}`);
  return JSON.parse(run.stdout) as Record<string, unknown>[];
}

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
];

function load(file: string): Uint8Array {
  const bytes = readFileSync(join(FIXTURES, file));
  return file.endsWith('.gz') ? gunzipSync(bytes) : bytes;
}

describe('deidentifyDicom', () => {
  const outputs = CASES.map(([, file]) => {
    const result = deidentifyDicom(load(file), file);
    const path = join(work, file.replace(/\.gz$/, ''));
    writeFileSync(path, result.bytes);
    return { file, path, result };
  });
  const originals = pydicomReport(CASES.map(([, file]) => join(FIXTURES, file)));
  const reports = pydicomReport(outputs.map((o) => o.path));

  CASES.forEach(([name, file], i) => {
    it(`${name} (${file}): pydicom finds no identity; same pixels and header facts`, async () => {
      const before = originals[i]!;
      const after = reports[i]!;
      const present = after.present as Record<string, string | null>;
      // Type 2 attributes stay, empty; the rest are gone.
      for (const k of ['PatientName', 'PatientID']) expect(present[k]).toBe('');
      for (const k of ['PatientBirthDate', 'ReferringPhysicianName', 'AccessionNumber', 'StudyDate']) {
        expect(present[k] === null || present[k] === '').toBe(true);
      }
      for (const k of [
        'OtherPatientIDs',
        'PatientAddress',
        'InstitutionName',
        'SeriesDate',
        'OperatorsName',
        'PatientAge',
        'StationName',
        'DeviceSerialNumber',
      ]) {
        expect(present[k]).toBeNull();
      }
      expect(after.sequences).toEqual([]);
      expect(after.private).toBe(0);
      expect(after.removed).toBe('YES');
      expect(after.method).toBe(DEIDENTIFICATION_METHOD);
      // What ordering and splitting need survives.
      expect(after.series).toBe(before.series);
      expect(after.instance).toBe(before.instance);
      expect([after.rows, after.cols, after.pixels]).toEqual([before.rows, before.cols, before.pixels]);
      // The original's identity strings are nowhere in the bytes (deflated files: in the inflated data).
      const name = String((before.present as Record<string, string>).PatientName);
      expect(name.length).toBeGreaterThan(3);
      const text = Buffer.from(outputs[i]!.result.bytes).toString('latin1');
      if (!file.includes('deflated')) expect(text).not.toContain(name);

      const a = await decodeDicom(load(file), file);
      const b = await decodeDicom(outputs[i]!.result.bytes, file);
      expect(b.pixels).toEqual(a.pixels);
      expect(b.header).toEqual(a.header);
    });
  });

  it('counts what it removed and blanked, and a second pass changes nothing more', () => {
    const first = deidentifyDicom(load('CT_small.dcm'), 'CT_small.dcm');
    expect(first.removed).toBeGreaterThan(179); // the private elements alone
    expect(first.blanked).toBeGreaterThanOrEqual(2);
    const second = deidentifyDicom(first.bytes, 'CT_small.dcm');
    expect(second.blanked).toBe(0);
    expect(Buffer.from(second.bytes).equals(Buffer.from(first.bytes))).toBe(true);
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
    const text = Buffer.from(out).toString('latin1');
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
