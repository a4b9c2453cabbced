/**
 * The TIFF and DICOM writers, checked by independent readers: Debian's Python with pydicom, PIL
 * and OpenCV reads the files these writers produce. Skipped, with a message, where
 * /usr/bin/python3 lacks those modules (CI installs them).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePhantomOptions } from '../cli/commands/phantom.js';
import { deriveUid, encodeDicomCt, formatDs } from '../core/dicom/encode.js';
import { InputError } from '../core/errors.js';
import { phantomDicomMeta, phantomFileName, phantomUids } from '../core/phantom/files.js';
import { createPhantom } from '../core/phantom/phantom.js';
import { writePhantomSeries } from '../core/phantom/series.js';
import { encodeTiff16 } from '../core/tiff/encode.js';

const PYTHON = '/usr/bin/python3';
const READER = `
import json, sys
def samples(a):
    h, w = a.shape
    return [int(a[r, c]) for r, c in [(0, 0), (h // 2, w // 2), (h * 3 // 5, w * 2 // 5), (h - 1, w - 1)]]
out = []
for path in sys.argv[1:]:
    if path.endswith('.dcm'):
        import pydicom
        pydicom.config.enforce_valid_values = True
        ds = pydicom.dcmread(path)
        a = ds.pixel_array
        out.append({
            'kind': 'dicom', 'shape': list(a.shape), 'dtype': str(a.dtype),
            'sum': int(a.astype('int64').sum()), 'samples': samples(a),
            'transferSyntax': str(ds.file_meta.TransferSyntaxUID), 'metaLength': int(ds.file_meta.FileMetaInformationGroupLength),
            'sopClass': str(ds.SOPClassUID), 'mediaSopClass': str(ds.file_meta.MediaStorageSOPClassUID),
            'sopInstance': str(ds.SOPInstanceUID), 'mediaSopInstance': str(ds.file_meta.MediaStorageSOPInstanceUID),
            'series': str(ds.SeriesInstanceUID), 'study': str(ds.StudyInstanceUID),
            'modality': ds.Modality, 'rows': ds.Rows, 'columns': ds.Columns, 'bitsAllocated': ds.BitsAllocated,
            'bitsStored': ds.BitsStored, 'highBit': ds.HighBit, 'pixelRepresentation': ds.PixelRepresentation,
            'photometric': ds.PhotometricInterpretation, 'slope': float(ds.RescaleSlope), 'intercept': float(ds.RescaleIntercept),
            'instanceNumber': int(ds.InstanceNumber), 'sliceLocation': float(ds.SliceLocation),
            'position': [float(x) for x in ds.ImagePositionPatient], 'spacing': [float(x) for x in ds.PixelSpacing],
            'patientName': str(ds.PatientName), 'patientId': ds.PatientID,
            'windowCenter': float(ds.WindowCenter), 'windowWidth': float(ds.WindowWidth),
            'preamble': ds.preamble == b'\\0' * 128,
        })
    else:
        import cv2, numpy
        from PIL import Image
        a = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        im = Image.open(path)
        b = numpy.array(im)
        def tag(n):
            v = im.tag_v2.get(n)
            return v[0] if isinstance(v, tuple) and len(v) == 1 else v
        out.append({
            'kind': 'tiff', 'shape': list(a.shape), 'dtype': str(a.dtype), 'sum': int(a.astype('int64').sum()),
            'pilSum': int(b.astype('int64').sum()), 'pilMode': im.mode,
            'samples': samples(a),
            'bitsPerSample': tag(258), 'sampleFormat': tag(339), 'photometric': tag(262),
            'compression': tag(259), 'rowsPerStrip': tag(278), 'strips': len(im.tag_v2.get(273)),
            'description': tag(270),
        })
print(json.dumps(out))
`;

function pythonModulesMissing(): string | undefined {
  if (!existsSync(PYTHON)) return `${PYTHON} not found`;
  const r = spawnSync(PYTHON, ['-c', 'import pydicom, cv2, numpy, PIL'], { encoding: 'utf8' });
  return r.status === 0
    ? undefined
    : `${PYTHON} lacks pydicom/cv2/numpy/PIL: ${r.stderr.trim().split('\n').pop()}`;
}

// biome-ignore lint/suspicious/noExplicitAny: JSON from the Python reader, checked field by field below
type PyResult = any;

function readWithPython(paths: readonly string[]): PyResult[] {
  const r = spawnSync(PYTHON, ['-c', READER, ...paths], { encoding: 'utf8', maxBuffer: 16 << 20 });
  if (r.status !== 0) throw new Error(`python reader failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as PyResult[];
}

const sum = (px: Uint16Array) => px.reduce((s, v) => s + v, 0);
/** The same four pixels the Python reader samples. */
const samples = (px: Uint16Array, w: number, h: number) =>
  [
    [0, 0],
    [Math.floor(h / 2), Math.floor(w / 2)],
    [Math.floor((h * 3) / 5), Math.floor((w * 2) / 5)],
    [h - 1, w - 1],
  ].map(([r, c]) => px[r! * w + c!]!);

const missing = pythonModulesMissing();
if (missing !== undefined) console.log(`skipping the independent-reader checks: ${missing}`);

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'covidct-writers-'));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('encodeTiff16', () => {
  it('writes a little-endian baseline TIFF with the pixels in strips', () => {
    const px = new Uint16Array(5 * 3).map((_, i) => i * 1000 + 7);
    const bytes = encodeTiff16(px, 5, 3, { rowsPerStrip: 2 });
    expect(String.fromCharCode(bytes[0]!, bytes[1]!)).toBe('II');
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    expect(view.getUint16(2, true)).toBe(42);
    // Pixel data follows the header directly.
    for (let i = 0; i < px.length; i++) expect(view.getUint16(8 + 2 * i, true)).toBe(px[i]);
    expect(() => encodeTiff16(px, 4, 3)).toThrow(RangeError);
  });

  it.skipIf(missing !== undefined)('is read back exactly by OpenCV and PIL', async () => {
    const phantom = createPhantom({ seed: 31, covid: true, slices: 30 });
    const slice = phantom.slice(14);
    const odd = new Uint16Array(7 * 5).map((_, i) => (i * 9973) % 65536);
    const files = [
      [join(dir, 'slice.tif'), encodeTiff16(slice.pixels, 512, 512)],
      [
        join(dir, 'rows1.tif'),
        encodeTiff16(slice.pixels, 512, 512, { rowsPerStrip: 1, description: 'phantom' }),
      ],
      [join(dir, 'odd.tif'), encodeTiff16(odd, 7, 5, { rowsPerStrip: 3 })],
    ] as const;
    for (const [p, b] of files) await writeFile(p, b);
    const [a, b, c] = readWithPython(files.map(([p]) => p));
    for (const r of [a, b]) {
      expect(r.shape).toEqual([512, 512]);
      expect(r.dtype).toBe('uint16');
      expect(r.sum).toBe(sum(slice.pixels));
      expect(r.pilSum).toBe(sum(slice.pixels));
      expect(r.samples).toEqual(samples(slice.pixels, 512, 512));
      expect(r.bitsPerSample).toBe(16);
      expect(r.sampleFormat).toBe(1);
      expect(r.photometric).toBe(1);
      expect(r.compression).toBe(1);
    }
    expect(a.rowsPerStrip).toBe(8);
    expect(a.strips).toBe(64);
    expect(b.rowsPerStrip).toBe(1);
    expect(b.strips).toBe(512);
    expect(b.description).toBe('phantom');
    expect(c.shape).toEqual([5, 7]);
    expect(c.sum).toBe(sum(odd));
    expect(c.samples).toEqual(samples(odd, 7, 5));
  });
});

describe('encodeDicomCt', () => {
  it('derives stable 2.25 UIDs and short decimal strings', () => {
    const u = deriveUid('covidct-phantom', 1, 'study');
    expect(u).toMatch(/^2\.25\.[1-9][0-9]*$/);
    expect(u.length).toBeLessThanOrEqual(64);
    expect(deriveUid('covidct-phantom', 1, 'study')).toBe(u);
    expect(deriveUid('covidct-phantom', 2, 'study')).not.toBe(u);
    expect(formatDs(-179.6484375)).toBe('-179.6484375');
    expect(formatDs(1 / 3).length).toBeLessThanOrEqual(16);
    expect(formatDs(-0)).toBe('0');
  });

  it('writes the preamble, DICM and a file meta group length that matches', () => {
    const px = new Uint16Array(4 * 2).fill(1000);
    const phantom = createPhantom({ seed: 2, covid: false, slices: 10 });
    const meta = phantomDicomMeta(phantom.info, phantom.slice(0));
    const bytes = encodeDicomCt(px, 4, 2, meta);
    expect(bytes.subarray(0, 128).every((b) => b === 0)).toBe(true);
    expect(String.fromCharCode(...bytes.subarray(128, 132))).toBe('DICM');
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    expect(view.getUint16(132, true)).toBe(0x0002);
    expect(view.getUint16(134, true)).toBe(0x0000);
    expect(String.fromCharCode(bytes[136]!, bytes[137]!)).toBe('UL');
    const groupLength = view.getUint32(140, true);
    // The next element after the file meta group is (0008,0005).
    expect(view.getUint16(144 + groupLength, true)).toBe(0x0008);
    expect(view.getUint16(146 + groupLength, true)).toBe(0x0005);
    // The pixels end the file.
    expect(view.getUint16(bytes.length - 2, true)).toBe(1000);
    expect(() => encodeDicomCt(new Uint16Array(8).fill(5000), 4, 2, { ...meta, bitsStored: 12 })).toThrow(
      /above 4095/,
    );
  });

  it.skipIf(missing !== undefined)('is read back exactly by pydicom', async () => {
    const phantom = createPhantom({ seed: 31, covid: true, slices: 30 });
    const slice = phantom.slice(14);
    const path = join(dir, 'slice.dcm');
    await writeFile(path, encodeDicomCt(slice.pixels, 512, 512, phantomDicomMeta(phantom.info, slice)));
    const [r] = readWithPython([path]);
    const uids = phantomUids(phantom.info, 14);
    expect(r.shape).toEqual([512, 512]);
    expect(r.dtype).toBe('uint16');
    expect(r.sum).toBe(sum(slice.pixels));
    expect(r.samples).toEqual(samples(slice.pixels, 512, 512));
    expect(r).toMatchObject({
      transferSyntax: '1.2.840.10008.1.2.1',
      sopClass: '1.2.840.10008.5.1.4.1.1.2',
      mediaSopClass: '1.2.840.10008.5.1.4.1.1.2',
      sopInstance: uids.sopInstanceUid,
      mediaSopInstance: uids.sopInstanceUid,
      series: uids.seriesInstanceUid,
      study: uids.studyInstanceUid,
      modality: 'CT',
      rows: 512,
      columns: 512,
      bitsAllocated: 16,
      bitsStored: 12,
      highBit: 11,
      pixelRepresentation: 0,
      photometric: 'MONOCHROME2',
      slope: 1,
      intercept: -1024,
      instanceNumber: 15,
      patientName: 'PHANTOM^31',
      patientId: 'PHANTOM-31',
      windowCenter: -600,
      windowWidth: 1200,
      preamble: true,
    });
    expect(r.sliceLocation).toBeCloseTo(slice.sliceLocation, 6);
    expect(r.position[2]).toBeCloseTo(slice.sliceLocation, 6);
    expect(r.spacing).toEqual([360 / 512, 360 / 512]);
  });
});

describe('covidct phantom', () => {
  it('checks its options with one-line errors', () => {
    expect(parsePhantomOptions({})).toEqual({
      covid: false,
      slices: 60,
      seed: 1,
      format: 'tiff',
      force: false,
    });
    expect(parsePhantomOptions({ covid: true, slices: '12', seed: '99', format: 'dicom' })).toMatchObject({
      slices: 12,
      seed: 99,
    });
    expect(() => parsePhantomOptions({ slices: '0' })).toThrow(InputError);
    expect(() => parsePhantomOptions({ slices: 'ten' })).toThrow(
      "--slices: must be a whole number from 1 to 1000, got 'ten'",
    );
    expect(() => parsePhantomOptions({ seed: '-3' })).toThrow(/^--seed: /);
    expect(() => parsePhantomOptions({ format: 'png' })).toThrow(
      "--format: must be 'tiff' or 'dicom', got 'png'",
    );
  });

  it('writes a series folder in slice order with truth.json, and refuses a non-empty folder', async () => {
    const checks: [string, number][] = [];
    for (const format of ['tiff', 'dicom'] as const) {
      const out = join(dir, `series-${format}`);
      const summary = await writePhantomSeries(out, {
        covid: true,
        slices: 12,
        seed: 4,
        format,
        force: false,
      });
      expect(summary.files).toBe(12);
      const names = (await readdir(out)).sort();
      expect(names).toHaveLength(13);
      expect(names[0]).toBe(phantomFileName(0, 12, format));
      expect(names[11]).toBe(format === 'tiff' ? 'slice-012.tif' : 'slice-012.dcm');
      const truth = JSON.parse(await readFile(join(out, 'truth.json'), 'utf8'));
      expect(truth.options).toMatchObject({ seed: 4, covid: true, slices: 12, format });
      expect(truth.slices.map((s: { file: string }) => s.file)).toEqual(names.slice(0, 12));
      expect(truth.slices.some((s: { lungOpen: boolean }) => s.lungOpen)).toBe(true);
      expect(truth.slices.some((s: { lesion: boolean }) => s.lesion)).toBe(true);
      checks.push([
        join(out, names[5]!),
        sum(createPhantom({ seed: 4, covid: true, slices: 12 }).slice(5).pixels),
      ]);
      await expect(
        writePhantomSeries(out, { covid: true, slices: 12, seed: 4, format, force: false }),
      ).rejects.toThrow(/folder is not empty/);
    }
    if (missing === undefined) {
      const read = readWithPython(checks.map(([p]) => p));
      expect(read.map((r) => r.sum)).toEqual(checks.map(([, s]) => s));
    }
  });
});
