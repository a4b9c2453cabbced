/**
 * `covidct deidentify SRC OUT` on whole studies (core/deidentify.ts, the built command line):
 * neutral names in covidct's series and slice order so `select` agrees before and after, the map
 * only in `--map` (mode 0600), non-CT instances skipped with one line each, a burned-in CT slice
 * refusing the study with nothing written, TIFF slices down to their pixel tags with the pixels
 * geotiff reads unchanged.
 */
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { fromArrayBuffer } from 'geotiff';
import { beforeAll, describe, expect, it } from 'vitest';
import { deidentifyStudy, writeMapFile } from '../core/deidentify.js';
import { encodeDicomCt } from '../core/dicom/encode.js';
import { CT_IMAGE_STORAGE_UID } from '../core/dicom/profile.js';
import { BurnedInAnnotationError } from '../core/errors.js';
import { selectStudy } from '../core/study.js';
import { deidentifyTiff, TIFF_PIXEL_TAGS } from '../core/tiff/deidentify.js';
import { CLI, runCli } from './helpers/cli.js';
import { FOLDER, files, IDENTITY, otherDicom, writeDicoms, writeTiffs } from './helpers/deid-study.js';
import { tempDir } from './helpers/tmp.js';

const work = tempDir('covidct-deid-study-');
const FIXTURES_DICOM = join(import.meta.dirname, 'fixtures', 'dicom');

const study = join(work, 'study');
beforeAll(() => {
  mkdirSync(join(study, FOLDER), { recursive: true });
  mkdirSync(join(study, `${FOLDER}_tiff`), { recursive: true });
  writeDicoms(join(study, FOLDER), 8, 5);
  writeTiffs(join(study, `${FOLDER}_tiff`), 4);
});

describe.skipIf(!existsSync(CLI))('covidct deidentify', () => {
  it('writes neutral names in covidct order; select agrees; the map goes only to --map, mode 0600', async () => {
    const out = join(work, 'out');
    const map = join(work, 'private', 'map.json');
    mkdirSync(join(work, 'private'));
    const run = runCli(['deidentify', study, out, '--map', map, '--json']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({
      series: [
        { id: 'series-1', slices: 8 },
        { id: 'series-2', slices: 4 },
      ],
      slices: 12,
      skipped: 0,
    });
    expect(files(out)).toEqual([
      ...Array.from({ length: 8 }, (_, i) => `series-1/slice-000${i + 1}.dcm`),
      ...Array.from({ length: 4 }, (_, i) => `series-2/slice-000${i + 1}.tif`),
    ]);
    // Nothing identifying in OUT: paths, bytes of every file, the printed summary.
    for (const f of files(out)) {
      const text = `${f}\n${readFileSync(join(out, f)).toString('latin1')}`;
      expect(
        IDENTITY.filter((s) => text.includes(s)),
        f,
      ).toEqual([]);
    }
    expect(IDENTITY.filter((s) => run.stdout.includes(s))).toEqual([]);
    // Same selection before and after, slice for slice.
    const before = await selectStudy(study);
    const after = await selectStudy(out);
    const shape = (s: Awaited<ReturnType<typeof selectStudy>>) =>
      s.series.map((x) => ({
        threshold: x.threshold,
        selectedCount: x.selectedCount,
        slices: x.slices.map((y) => [y.darkPixels, y.selected, y.instanceNumber, y.sliceLocation]),
      }));
    expect(shape(after)).toEqual(shape(before));
    expect(after.series.map((s) => s.id)).toEqual(['series-1', 'series-2']);
    // The map: mode 0600, original path ↔ neutral name in covidct's order (instance 1 first).
    expect(statSync(map).mode & 0o777).toBe(0o600);
    const mapping = JSON.parse(readFileSync(map, 'utf8')) as {
      series: { id: string; source: string; slices: { output: string; source: string }[] }[];
      uids: { original: string; replacement: string }[];
    };
    expect(mapping.series[0]!.source).toBe(FOLDER);
    expect(mapping.series[0]!.slices[0]).toEqual({
      output: 'series-1/slice-0001.dcm',
      source: `${FOLDER}/${FOLDER}_08.dcm`,
    });
    expect(mapping.series[0]!.slices[1]!.source).toBe(`${FOLDER}/${FOLDER}_07.dcm.gz`);
    expect(mapping.uids.length).toBeGreaterThan(8);
    // OUT not empty: refused, one line.
    const again = runCli(['deidentify', study, out]);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(`covidct: ${out}: exists and is not empty, expected a new or empty folder\n`);
    // The map inside OUT would leave with it: refused.
    const inside = runCli([
      'deidentify',
      study,
      join(work, 'out-2'),
      '--map',
      join(work, 'out-2', 'map.json'),
    ]);
    expect(inside.code).toBe(1);
    expect(inside.stderr).toMatch(/map\.json: the map file must not be inside OUT/);
    expect(existsSync(join(work, 'out-2'))).toBe(false);
    // An existing map may be the only way back for an earlier OUT: refused, nothing written.
    const mapBefore = readFileSync(map, 'utf8');
    const taken = runCli(['deidentify', study, join(work, 'out-3'), '--map', map]);
    expect(taken.code).toBe(1);
    expect(taken.stderr).toBe(
      `covidct: ${map}: exists: it may be the only way back for an earlier run; give a new file for the map\n`,
    );
    expect(readFileSync(map, 'utf8')).toBe(mapBefore);
    expect(existsSync(join(work, 'out-3'))).toBe(false);
    // A map that cannot be written stops the run before OUT is written (the way back is not lost).
    const nowhere = runCli([
      'deidentify',
      study,
      join(work, 'out-4'),
      '--map',
      join(work, 'no-such-dir', 'm.json'),
    ]);
    expect(nowhere.code).toBe(1);
    expect(nowhere.stderr.trim().split('\n')).toHaveLength(1);
    expect(nowhere.stderr).toContain('m.json');
    expect(existsSync(join(work, 'out-4'))).toBe(false);
    // upload claims its map first too: refused before anything is read or sent (no API here).
    const upload = runCli(['upload', study, '--api', 'http://127.0.0.1:9', '--key', 'k', '--map', map]);
    expect(upload.code).toBe(1);
    expect(upload.stderr).toContain(`${map}: exists: it may be the only way back`);
    expect(readFileSync(map, 'utf8')).toBe(mapBefore);
    // A run that fails after the map was claimed leaves no empty map behind.
    const failed = runCli([
      'deidentify',
      join(work, 'no-such-study'),
      join(work, 'out-5'),
      '--map',
      join(work, 'm5.json'),
    ]);
    expect(failed.code).toBe(1);
    expect(existsSync(join(work, 'm5.json'))).toBe(false);
  });

  it('skips instances that are not CT images, one stderr line each naming the file', () => {
    const mixed = join(work, 'mixed');
    mkdirSync(join(mixed, 's'), { recursive: true });
    writeDicoms(join(mixed, 's'), 3, 9);
    writeFileSync(join(mixed, 's', 'dose-screen.dcm'), otherDicom('1.2.840.10008.5.1.4.1.1.7', 'CT'));
    writeFileSync(join(mixed, 's', 'dose-report.dcm'), otherDicom('1.2.840.10008.5.1.4.1.1.88.67', 'SR'));
    writeFileSync(join(mixed, 's', 'report.dcm'), otherDicom('1.2.840.10008.5.1.4.1.1.104.1', 'DOC', true));
    const out = join(work, 'mixed-out');
    const run = runCli(['deidentify', mixed, out, '--json']);
    expect(run.code).toBe(0);
    const lines = run.stderr.trim().split('\n').sort();
    expect(lines).toHaveLength(3);
    for (const [i, name] of ['dose-report.dcm', 'dose-screen.dcm', 'report.dcm'].entries()) {
      expect(lines[i]).toMatch(new RegExp(`^covidct: ${join(mixed, 's', name)}: skipped, not a CT image`));
    }
    expect(JSON.parse(run.stdout)).toMatchObject({ slices: 3, skipped: 3 });
    expect(files(out)).toEqual([
      'series-1/slice-0001.dcm',
      'series-1/slice-0002.dcm',
      'series-1/slice-0003.dcm',
    ]);
  });

  it('a CT slice with burned-in annotation refuses the study: one line naming it, nothing written', async () => {
    const burned = join(work, 'burned');
    mkdirSync(join(burned, 'a'), { recursive: true });
    mkdirSync(join(burned, 'b'), { recursive: true });
    writeDicoms(join(burned, 'a'), 3, 11);
    writeFileSync(join(burned, 'b', 'x.dcm'), otherDicom(CT_IMAGE_STORAGE_UID, 'CT', true));
    const out = join(work, 'burned-out');
    const run = runCli(['deidentify', burned, out]);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(
      `covidct: ${join(burned, 'b', 'x.dcm')}: BurnedInAnnotation (0028,0301) is YES, its pixels may show patient identity; the study is refused, nothing of it is written or sent\n`,
    );
    expect(existsSync(out)).toBe(false);
    // An OUT that existed empty stays empty.
    mkdirSync(out);
    await expect(deidentifyStudy(burned, out)).rejects.toBeInstanceOf(BurnedInAnnotationError);
    expect(readdirSync(out)).toEqual([]);
  });

  it('a secret file keeps new UIDs stable across runs; without one they differ', () => {
    const secret = join(work, 'secret');
    writeFileSync(secret, Buffer.alloc(32, 9), { mode: 0o600 });
    const uidsOf = (out: string, extra: string[]) => {
      const map = `${out}.map.json`;
      expect(runCli(['deidentify', join(study, FOLDER), out, '--map', map, ...extra]).code).toBe(0);
      return (JSON.parse(readFileSync(map, 'utf8')) as { uids: unknown[] }).uids;
    };
    const one = uidsOf(join(work, 'k1'), ['--uid-secret-file', secret]);
    const two = uidsOf(join(work, 'k2'), ['--uid-secret-file', secret]);
    const three = uidsOf(join(work, 'k3'), []);
    expect(two).toEqual(one);
    expect(three).not.toEqual(one);
    writeFileSync(join(work, 'short'), 'abc', { mode: 0o600 });
    const short = runCli([
      'deidentify',
      join(study, FOLDER),
      join(work, 'k4'),
      '--uid-secret-file',
      join(work, 'short'),
    ]);
    expect(short.code).toBe(1);
    expect(short.stderr).toMatch(/short: UID secret file holds 3 bytes, expected at least 16/);
  });

  it('a secret file its group or others can open is refused, one line naming it, nothing written', () => {
    const secret = join(work, 'open-secret');
    writeFileSync(secret, Buffer.alloc(32, 9));
    chmodSync(secret, 0o640);
    const out = join(work, 'k5');
    const run = runCli(['deidentify', join(study, FOLDER), out, '--uid-secret-file', secret]);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(
      `covidct: ${secret}: UID secret file has mode 0640, open to group or others; expected 0600 or 0400 (\`chmod 600 FILE\`)\n`,
    );
    expect(existsSync(out)).toBe(false);
  });

  it('skips CT report pages (ImageType) and slices covidct cannot read, one stderr line each naming the file', () => {
    const mixed = join(work, 'pages');
    mkdirSync(join(mixed, 's'), { recursive: true });
    mkdirSync(join(mixed, 't'), { recursive: true });
    writeDicoms(join(mixed, 's'), 3, 13);
    // A dose screen stored as CT Image Storage: a readable CT slice but for its ImageType.
    const screen = Buffer.from(
      encodeDicomCt(new Uint16Array(64 * 64).fill(1024), 64, 64, {
        studyInstanceUid: '1.2.3',
        seriesInstanceUid: '1.2.3.4',
        sopInstanceUid: '1.2.3.4.99',
        instanceNumber: 99,
        sliceLocation: 99,
        imagePositionPatient: [0, 0, 99],
        pixelSpacing: [0.7, 0.7],
        patientName: 'JOHN^DOE',
        patientId: 'ZZ-PID-4411',
      }),
    );
    const at = screen.indexOf('ORIGINAL\\PRIMARY\\AXIAL');
    expect(at).toBeGreaterThan(0);
    screen.write('DERIVED\\SECONDARY\\DOSE', at, 'latin1');
    writeFileSync(join(mixed, 's', 'zz-dose-screen.dcm'), screen);
    // CT Image Storage in a transfer syntax covidct does not decode (MPEG-2).
    copyFileSync(join(FIXTURES_DICOM, 'reject-mpeg2-ct.dcm'), join(mixed, 's', 'zz-mpeg2.dcm'));
    // A JPEG-compressed TIFF (compression 7), with an APP1 segment in its strip.
    writeFileSync(join(mixed, 't', 'zz-jpeg.tif'), jpegTiff());
    const out = join(work, 'pages-out');
    const run = runCli(['deidentify', mixed, out, '--json']);
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stderr.trim().split('\n').sort();
    expect(lines).toEqual([
      expect.stringMatching(
        new RegExp(
          `^covidct: ${join(mixed, 's', 'zz-dose-screen.dcm')}: skipped, a report or screen page, not a CT slice \\(ImageType DERIVED\\\\SECONDARY\\\\DOSE contains SECONDARY\\)$`,
        ),
      ),
      expect.stringMatching(
        new RegExp(
          `^covidct: ${join(mixed, 's', 'zz-mpeg2.dcm')}: skipped, covidct cannot read it \\(.+\\)$`,
        ),
      ),
      expect.stringMatching(
        new RegExp(
          `^covidct: ${join(mixed, 't', 'zz-jpeg.tif')}: skipped, covidct cannot read it \\(TIFF compression 7 \\(JPEG\\)`,
        ),
      ),
    ]);
    expect(JSON.parse(run.stdout)).toMatchObject({ slices: 3, skipped: 3 });
    expect(files(out)).toEqual([
      'series-1/slice-0001.dcm',
      'series-1/slice-0002.dcm',
      'series-1/slice-0003.dcm',
    ]);
    expect(Buffer.concat(files(out).map((f) => readFileSync(join(out, f)))).toString('latin1')).not.toMatch(
      /ZZDOE|ZZ-PID/,
    );
  });
});

describe('map file', () => {
  it('replaces an existing file atomically with mode 0600', async () => {
    const path = join(work, 'old-map.json');
    writeFileSync(path, 'old');
    chmodSync(path, 0o644);
    await writeMapFile(path, study, {
      out: join(work, 'x'),
      series: [],
      skipped: [],
      uids: [['1.2', '2.25.1']],
    });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(path, 'utf8')).uids).toEqual([{ original: '1.2', replacement: '2.25.1' }]);
    expect(readdirSync(work).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});

/**
 * A classic little-endian TIFF, 8×8, compression 7 (JPEG), one strip that starts like a JPEG with
 * an APP1 EXIF segment and a COM segment naming the patient (deidentifyTiff does not decode it).
 */
function jpegTiff(): Uint8Array {
  const strip = Buffer.concat([
    Buffer.from([0xff, 0xd8, 0xff, 0xe1, 0x00, 0x16]),
    Buffer.from('Exif\0\0ZZDOE_EXIF_NAME', 'latin1'),
    Buffer.from([0xff, 0xfe, 0x00, 0x10]),
    Buffer.from('ZZDOE_COMMENT', 'latin1'),
    Buffer.from([0xff, 0xd9]),
  ]);
  const entries: [number, number, number][] = [
    [256, 3, 8],
    [257, 3, 8],
    [258, 3, 16],
    [259, 3, 7],
    [262, 3, 1],
    [273, 4, 0], // strip offset, set below
    [277, 3, 1],
    [278, 3, 8],
    [279, 4, strip.length],
  ];
  const ifdAt = 8;
  const stripAt = ifdAt + 2 + entries.length * 12 + 4;
  const out = Buffer.alloc(stripAt + strip.length);
  out.write('II', 0, 'latin1');
  out.writeUInt16LE(42, 2);
  out.writeUInt32LE(ifdAt, 4);
  out.writeUInt16LE(entries.length, ifdAt);
  entries.forEach(([t, type, value], i) => {
    const at = ifdAt + 2 + i * 12;
    out.writeUInt16LE(t, at);
    out.writeUInt16LE(type, at + 2);
    out.writeUInt32LE(1, at + 4);
    if (type === 3) out.writeUInt16LE(value, at + 8);
    else out.writeUInt32LE(t === 273 ? stripAt : value, at + 8);
  });
  strip.copy(out, stripAt);
  return new Uint8Array(out);
}

describe('TIFF slices', () => {
  it('a compression covidct cannot decode (JPEG) is refused, naming the file; its segments are not copied', () => {
    const bytes = jpegTiff();
    expect(Buffer.from(bytes).toString('latin1')).toContain('ZZDOE_EXIF_NAME');
    expect(() => deidentifyTiff(bytes, 'scan.tif')).toThrow(
      /^scan\.tif: TIFF compression 7 \(JPEG\) is not supported, expected none, LZW, Deflate or PackBits; not de-identified$/,
    );
  });

  it('keep only the pixel tags, the byte order and the pixels geotiff reads', async () => {
    const folder = join(study, `${FOLDER}_tiff`);
    for (const name of readdirSync(folder)) {
      const original = readFileSync(join(folder, name));
      expect(original.toString('latin1')).toContain('ZZ_TIFF_ARTIST');
      const { bytes, removedTags } = deidentifyTiff(original, name);
      expect(removedTags).toEqual(expect.arrayContaining([269, 270, 271, 272, 305, 306, 315, 316]));
      expect(Buffer.from(bytes).toString('latin1')).not.toMatch(/ZZ/);
      expect(Buffer.from(bytes.subarray(0, 2)).toString('latin1')).toBe('MM');
      const read = async (b: Uint8Array) => {
        const image = await (await fromArrayBuffer(new Uint8Array(b).buffer)).getImage();
        const tags = Object.keys(image.getFileDirectory());
        return { tags, rasters: Array.from((await image.readRasters())[0] as Uint16Array) };
      };
      const [a, b] = [await read(original), await read(bytes)];
      expect(b.rasters).toEqual(a.rasters);
      const tagIds = Object.keys(
        (await (await fromArrayBuffer(new Uint8Array(bytes).buffer)).getImage()).fileDirectory,
      );
      expect(tagIds.length).toBeLessThanOrEqual(TIFF_PIXEL_TAGS.size);
      expect(tagIds).not.toContain('Artist');
      expect(tagIds).not.toContain('ImageDescription');
    }
  });
});
