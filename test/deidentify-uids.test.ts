/**
 * De-identification (core/dicom/deidentify.ts) of UIDs the profile table has no row for, and of
 * text quoting a replaced UID (across the files of a study); the secret's minimum length.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { deidentifyDicom, mapDicomUids } from '../core/dicom/deidentify.js';
import { CT_IMAGE_STORAGE_UID } from '../core/dicom/profile.js';
import { EXPLICIT_VR_LE } from '../core/dicom/syntax.js';
import { UidMapper } from '../core/dicom/uids.js';
import { InputError } from '../core/errors.js';
import { latin1, plantedMeta, SYNTAXES } from './helpers/deid-data-set.js';
import { type El, encodeFile, tag } from './helpers/dicom-builder.js';
import { tempDir } from './helpers/tmp.js';

const work = tempDir('covidct-deid-');

/**
 * UIDs the table has no row for (found by review: SOPInstanceUIDOfConcatenationSource carried the
 * original SOP instance UID byte for byte, TableFrameOfReferenceUID, MultiFrameSourceSOPInstanceUID,
 * TargetFrameOfReferenceUID, ReferencedColorPaletteInstanceUID, ReferencedFiducialUID too), and
 * text that quotes a replaced UID.
 */
describe('UIDs outside the table, and text quoting a UID', () => {
  const U = {
    sop: '1.3.6.1.4.1.77001.1.1.1',
    study: '1.3.6.1.4.1.77001.2',
    target: '1.3.6.1.4.1.77001.3.3',
    table: '1.3.6.1.4.1.77001.4.4',
    palette: '1.9.77001.55',
    multi: '1.3.6.1.4.1.77001.6.6',
    fiducial: '1.3.6.1.4.1.77001.7.7',
  };
  /** The data set; `un`: write two UI elements as UN (a reader must know their tags). */
  const dataSet = (un: boolean): El[] => [
    { tag: tag(0x0008, 0x0016), vr: 'UI', value: CT_IMAGE_STORAGE_UID },
    { tag: tag(0x0008, 0x0018), vr: 'UI', value: U.sop },
    { tag: tag(0x0008, 0x0060), vr: 'CS', value: 'CT' },
    // LO, 64 characters at most: with the new UID this one would be 75, so it goes.
    { tag: tag(0x0008, 0x0070), vr: 'LO', value: `${'A'.repeat(30)} ${U.palette}` },
    { tag: tag(0x0018, 0x991e), vr: 'UI', value: U.target },
    { tag: tag(0x0020, 0x000d), vr: 'UI', value: U.study },
    { tag: tag(0x0020, 0x0242), vr: un ? 'UN' : 'UI', value: `${U.sop}\0` },
    { tag: tag(0x0020, 0x9313), vr: un ? 'UN' : 'UI', value: U.table },
    { tag: tag(0x0028, 0x0304), vr: 'UI', value: U.palette },
    { tag: tag(0x0028, 0x1055), vr: 'LO', value: `SRC ${U.study}` },
    {
      tag: tag(0x0028, 0x3010),
      vr: 'SQ',
      items: [
        [
          { tag: tag(0x0008, 0x1150), vr: 'UI', value: CT_IMAGE_STORAGE_UID },
          { tag: tag(0x0008, 0x1167), vr: 'UI', value: U.multi },
        ],
      ],
    },
    { tag: tag(0x0070, 0x031b), vr: 'UI', value: U.fiducial },
  ];
  /** Every UI value at any depth (pydicom), and two text values. */
  const read = (path: string) => {
    const script = `
import json, sys, pydicom
d = pydicom.dcmread(sys.argv[1], force=True)
uis = []
def walk(ds):
    for e in ds:
        if e.VR == 'SQ':
            for item in e.value: walk(item)
        elif e.VR == 'UI' and e.value:
            uis.extend(str(v) for v in (e.value if e.VM > 1 else [e.value]))
walk(d)
print(json.dumps({'uis': uis, 'explanation': str(d.get((0x0028, 0x1055)).value) if (0x0028, 0x1055) in d else None,
                  'manufacturer': (0x0008, 0x0070) in d}))
`;
    const run = spawnSync('/usr/bin/python3', ['-W', 'ignore', '-c', script, path], { encoding: 'utf8' });
    if (run.status !== 0) throw new Error(`pydicom failed: ${run.stderr}`);
    return JSON.parse(run.stdout) as { uis: string[]; explanation: string | null; manufacturer: boolean };
  };

  SYNTAXES.forEach(([name, syntax, enc, deflate, explicitUn]) => {
    it(`${name}: every UID is new or registered, text quoting one gets the new UID or goes`, () => {
      const uids = new UidMapper();
      const bytes = encodeFile(plantedMeta(U.sop, syntax), dataSet(explicitUn), enc, { deflate });
      const out = deidentifyDicom(bytes, 'u.dcm', { uids }).bytes;
      const metaEnd = 132 + 12 + new DataView(out.buffer, out.byteOffset).getUint32(140, true);
      const text = latin1(deflate ? inflateRawSync(out.subarray(metaEnd)) : out.subarray(metaEnd));
      expect(Object.entries(U).filter(([, uid]) => text.includes(uid))).toEqual([]);
      const path = join(work, `uids-${syntax}.dcm`);
      writeFileSync(path, out);
      const got = read(path);
      expect(got.uis.filter((u) => !u.startsWith('2.25.') && !u.startsWith('1.2.840.10008.'))).toEqual([]);
      // The registered ones stay (SOP class, referenced SOP class).
      expect(got.uis.filter((u) => u === CT_IMAGE_STORAGE_UID)).toHaveLength(2);
      // The concatenation source is the instance itself: the same new UID.
      expect(text).toContain(uids.map(U.sop));
      for (const uid of [U.target, U.table, U.multi, U.fiducial]) expect(got.uis).toContain(uids.map(uid));
      expect(got.manufacturer).toBe(false);
      // A text VR gets the new UID; where the file does not say the VR (implicit), the element goes.
      expect(got.explanation).toBe(enc.explicit ? `SRC ${uids.map(U.study)}` : null);
    });
  });

  it('a text in one file quoting a UID first seen in a later file is caught (the study maps every file first)', () => {
    const uids = new UidMapper();
    const enc = { explicit: true, little: true };
    const first = encodeFile(
      plantedMeta('1.3.6.1.4.1.77001.9.1', EXPLICIT_VR_LE),
      [
        { tag: tag(0x0008, 0x0016), vr: 'UI', value: CT_IMAGE_STORAGE_UID },
        { tag: tag(0x0008, 0x0018), vr: 'UI', value: '1.3.6.1.4.1.77001.9.1' },
        { tag: tag(0x0028, 0x1055), vr: 'LO', value: `SEE ${U.fiducial}` },
      ],
      enc,
    );
    const second = encodeFile(
      plantedMeta('1.3.6.1.4.1.77001.9.2', EXPLICIT_VR_LE),
      [
        { tag: tag(0x0008, 0x0016), vr: 'UI', value: CT_IMAGE_STORAGE_UID },
        { tag: tag(0x0008, 0x0018), vr: 'UI', value: '1.3.6.1.4.1.77001.9.2' },
        { tag: tag(0x0070, 0x031b), vr: 'UI', value: U.fiducial },
      ],
      enc,
    );
    mapDicomUids(first, 'first.dcm', uids);
    mapDicomUids(second, 'second.dcm', uids);
    const out = latin1(deidentifyDicom(first, 'first.dcm', { uids }).bytes);
    expect(out).not.toContain(U.fiducial);
    expect(out).toContain(`SEE ${uids.map(U.fiducial)}`);
  });

  it('a secret shorter than 16 bytes is a one-line InputError naming where it came from', () => {
    expect(() => new UidMapper(new Uint8Array(8), '/etc/secret')).toThrow(InputError);
    expect(() => new UidMapper(new Uint8Array(8), '/etc/secret')).toThrow(
      /^\/etc\/secret: the UID secret holds 8 bytes, expected at least 16/,
    );
  });
});
