/**
 * The hospital-side study the `covidct deidentify` suite de-identifies: TIFF slices with
 * identifying tags (tifffile), phantom CT slices with identity in their headers, DICOM files of
 * other SOP classes, in a folder named after the patient; and the files a folder holds.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';
import { encodeDicomCt } from '../../core/dicom/encode.js';
import { EXPLICIT_VR_LE } from '../../core/dicom/syntax.js';
import { phantomDicomMeta } from '../../core/phantom/files.js';
import { createPhantom } from '../../core/phantom/phantom.js';
import { encodeFile, tag } from './dicom-builder.js';
/** The study folder's name: it identifies the patient. */

export const FOLDER = 'ZZDOE_JOHN_MRN99887766';

/** Identifying values planted in the study: none may be in what deidentify writes. */

export const IDENTITY = ['ZZDOE', 'MRN99887766', 'JOHN^DOE', 'ZZ-PID-4411', 'ZZ_TIFF_ARTIST', 'ZZ_TIFF_HOST'];

/** Every file under `dir`, relative, with `/`. */
export function files(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)).split('\\').join('/'))
    .sort();
}

/** TIFF slices with identifying tags, big endian, Deflate with a predictor (tifffile, Debian). */
export function writeTiffs(dir: string, n: number): void {
  const script = `
import sys, numpy, tifffile
d = sys.argv[1]
for i in range(int(sys.argv[2])):
    y, x = numpy.mgrid[0:64, 0:64]
    a = ((x * 37 + y * 11 + i * 500) % 2400).astype('uint16')
    a[20:44, 20:44] = 100
    tifffile.imwrite(f'{d}/{sys.argv[3]}_{i:02d}.tif', a, byteorder='>', compression='zlib', predictor=True,
        description='ZZDOE JOHN MRN99887766', software='ZZDOE scanner', datetime='2020:01:02 03:04:05',
        metadata=None, extratags=[(315, 's', 0, 'ZZ_TIFF_ARTIST', True), (316, 's', 0, 'ZZ_TIFF_HOST', True),
        (269, 's', 0, 'ZZDOE document', True), (271, 's', 0, 'ZZDOE make', True), (272, 's', 0, 'ZZDOE model', True)])
`;
  const run = spawnSync('/usr/bin/python3', ['-W', 'ignore', '-c', script, dir, String(n), FOLDER], {
    encoding: 'utf8',
  });
  if (run.status !== 0) throw new Error(`tifffile failed: ${run.stderr}`);
}

/** Phantom CT slices with identity in their headers; file names run against the instance numbers. */
export function writeDicoms(dir: string, n: number, seed: number): void {
  const phantom = createPhantom({ seed, covid: true, slices: n });
  for (let i = 0; i < n; i++) {
    const slice = phantom.slice(i);
    const bytes = encodeDicomCt(slice.pixels, phantom.info.width, phantom.info.height, {
      ...phantomDicomMeta(phantom.info, slice),
      patientName: 'JOHN^DOE',
      patientId: 'ZZ-PID-4411',
      bitsStored: 16,
    });
    const name = `${FOLDER}_${String(n - i).padStart(2, '0')}.dcm`;
    if (i === 1) writeFileSync(join(dir, `${name}.gz`), gzipSync(bytes));
    else writeFileSync(join(dir, name), bytes);
  }
}

/** A DICOM file of SOP class `sopClass` (modality `modality`), optionally burned-in. */
export function otherDicom(sopClass: string, modality: string, burnedIn = false): Uint8Array {
  return encodeFile(
    [
      { tag: tag(0x0002, 0x0002), vr: 'UI', value: sopClass },
      { tag: tag(0x0002, 0x0010), vr: 'UI', value: EXPLICIT_VR_LE },
    ],
    [
      { tag: tag(0x0008, 0x0016), vr: 'UI', value: sopClass },
      { tag: tag(0x0008, 0x0060), vr: 'CS', value: modality },
      { tag: tag(0x0010, 0x0010), vr: 'PN', value: 'JOHN^DOE' },
      ...(burnedIn ? [{ tag: tag(0x0028, 0x0301), vr: 'CS', value: 'YES' }] : []),
    ],
    { explicit: true, little: true },
  );
}
