/**
 * De-identification (core/dicom/deidentify.ts) of a planted data set in each transfer syntax:
 * every planted value gone, the rest byte for byte, pydicom (Debian's /usr/bin/python3) reading
 * back the actions the table asks; UIDs replaced by a keyed hash, consistently across files and
 * references; CT images told from the rest.
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  BASIC_PROFILE_CODE,
  DEIDENTIFICATION_METHOD,
  deidentifyDicom,
  inspectDicom,
  isCtImage,
} from '../core/dicom/deidentify.js';
import { COVIDCT_IMPLEMENTATION_UID } from '../core/dicom/encode.js';
import { CT_IMAGE_STORAGE_UID } from '../core/dicom/profile.js';
import { EXPLICIT_VR_BE, EXPLICIT_VR_LE } from '../core/dicom/syntax.js';
import { UidMapper } from '../core/dicom/uids.js';
import {
  items,
  latin1,
  ORIGINAL,
  PIXELS,
  PLANTED,
  planted,
  plantedMeta,
  pydicomJson,
  SYNTAXES,
  THICKNESS,
  value,
} from './helpers/deid-data-set.js';
import { type El, encodeEl, encodeFile, tag } from './helpers/dicom-builder.js';
import { tempDir } from './helpers/tmp.js';

const work = tempDir('covidct-deid-');

describe('a planted data set', () => {
  SYNTAXES.forEach(([name, syntax, enc, deflate, explicitUn]) => {
    it(`${name}: no planted value survives; the table's actions, UIDs consistent, the rest byte for byte`, () => {
      const uids = new UidMapper();
      // File A, and file B referencing A's instance (in two places, one inside a UN sequence).
      const a = encodeFile(
        plantedMeta(ORIGINAL.sopA, syntax),
        planted(ORIGINAL.sopA, ORIGINAL.sopB, explicitUn),
        enc,
        { deflate },
      );
      const b = encodeFile(
        plantedMeta(ORIGINAL.sopB, syntax),
        planted(ORIGINAL.sopB, ORIGINAL.sopA, explicitUn),
        enc,
        { deflate },
      );
      // The planted input really holds them.
      if (!deflate)
        for (const p of ['PLANT^DEEP^PERSON', 'PLANT_UN_ADDRESS', 'PLANT_SRC_AE'])
          expect(latin1(a)).toContain(p);
      const outA = deidentifyDicom(a, 'a.dcm', { uids });
      const outB = deidentifyDicom(b, 'b.dcm', { uids });
      const pathA = join(work, `a-${syntax}.dcm`);
      const pathB = join(work, `b-${syntax}.dcm`);
      writeFileSync(pathA, outA.bytes);
      writeFileSync(pathB, outB.bytes);

      // No planted value anywhere in the bytes (deflated data sets: in the inflated data set).
      for (const out of [outA.bytes, outB.bytes]) {
        const metaEnd = 132 + 12 + new DataView(out.buffer, out.byteOffset).getUint32(140, true);
        const text =
          latin1(out.subarray(0, metaEnd)) +
          latin1(deflate ? inflateRawSync(out.subarray(metaEnd)) : out.subarray(metaEnd));
        expect(PLANTED.filter((p) => text.includes(p))).toEqual([]);
        // Kept byte for byte: an element the table keeps, the pixel data.
        expect(text).toContain(latin1(encodeEl(THICKNESS, enc)));
        expect(text).toContain(latin1(PIXELS));
      }

      const [ja, jb] = pydicomJson([pathA, pathB]);
      const newA = value(ja!.data, '00080018')![0] as string;
      const newB = value(jb!.data, '00080018')![0] as string;
      expect(newA).toMatch(/^2\.25\.\d{1,39}$/);
      expect(newA).toBe(uids.map(ORIGINAL.sopA));
      // File meta rewritten: new instance UID, covidct's implementation, no AE titles, no private info.
      expect(Object.keys(ja!.meta).sort()).toEqual([
        '00020000',
        '00020001',
        '00020002',
        '00020003',
        '00020010',
        '00020012',
        '00020013',
      ]);
      expect(value(ja!.meta, '00020003')).toEqual([newA]);
      expect(value(ja!.meta, '00020010')).toEqual([syntax]);
      expect(value(ja!.meta, '00020012')).toEqual([COVIDCT_IMPLEMENTATION_UID]);
      // SOP class kept; the other UIDs replaced, the same in both files.
      expect(value(ja!.data, '00080016')).toEqual([CT_IMAGE_STORAGE_UID]);
      for (const key of ['0020000D', '0020000E', '00200052']) {
        expect(value(ja!.data, key)).toEqual(value(jb!.data, key));
        expect(value(ja!.data, key)).not.toEqual(value(jb!.data, '00080018'));
      }
      // References follow: B's reference to A is A's new UID, at depth 2 and inside the UN sequence.
      const series = items(jb!.data, '00081115')[0]!;
      expect(value(series, '0020000E')).toEqual(value(ja!.data, '0020000E'));
      const instance = items(series, '0008114A')[0]!;
      expect(value(instance, '00081155')).toEqual([newA]);
      expect(value(instance, '00081150')).toEqual([CT_IMAGE_STORAGE_UID]);
      expect(Object.keys(instance).filter((k) => k.startsWith('0009'))).toEqual([]); // private in an item
      // Depth 3: X removed, Z emptied, D a dummy.
      const deep = items(instance, '00081199')[0]!;
      expect(deep['00080081']).toBeUndefined();
      expect(value(deep, '00100010')).toBeUndefined();
      expect(deep['00100010']).toBeDefined();
      expect(value(deep, '0040A123')).toEqual([{ Alphabetic: 'ANONYMOUS' }]);
      expect(newB).toBe(uids.map(ORIGINAL.sopB));
      // Top level: Z kept empty, X gone, private gone, the markers written.
      for (const z of ['00080020', '00080050', '0008009C', '00100010', '00100020']) {
        expect(ja!.data[z], z).toBeDefined();
        expect(value(ja!.data, z), z).toBeUndefined();
      }
      for (const x of [
        '00080000',
        '00080022',
        '00080080',
        '00101002',
        '00101040',
        '00400275',
        '40004000',
        '60000022',
        '60004000',
        'FFFCFFFC',
      ]) {
        expect(ja!.data[x], x).toBeUndefined();
      }
      expect(Object.keys(ja!.data).filter((k) => Number.parseInt(k.slice(0, 4), 16) % 2 === 1)).toEqual([]);
      expect(value(ja!.data, '00120062')).toEqual(['YES']);
      expect(value(ja!.data, '00120063')).toEqual([DEIDENTIFICATION_METHOD]);
      const code = items(ja!.data, '00120064')[0]!;
      expect([value(code, '00080100'), value(code, '00080102'), value(code, '00080104')]).toEqual([
        [BASIC_PROFILE_CODE.value],
        [BASIC_PROFILE_CODE.scheme],
        [BASIC_PROFILE_CODE.meaning],
      ]);
      expect(outA.removed).toBeGreaterThan(10);
      expect(outA.uidsReplaced).toBeGreaterThanOrEqual(6);
    });
  });

  it('explicit VR big endian with UN elements (content implicit little endian): no planted value survives', () => {
    const enc = { explicit: true, little: false };
    const bytes = encodeFile(
      plantedMeta(ORIGINAL.sopA, EXPLICIT_VR_BE),
      planted(ORIGINAL.sopA, ORIGINAL.sopB, true),
      enc,
    );
    const text = latin1(bytes);
    for (const p of ['PLANT^UN^NESTED', 'PLANT_UN_ADDRESS', 'PLANT_OTHER_ID']) expect(text).toContain(p);
    const uids = new UidMapper();
    const out = latin1(deidentifyDicom(bytes, 'be.dcm', { uids }).bytes);
    expect(PLANTED.filter((p) => out.includes(p))).toEqual([]);
    expect(out).toContain(latin1(encodeEl(THICKNESS, enc)));
    expect(out).toContain(latin1(PIXELS));
    // The UID inside the UN sequence is replaced like the others.
    expect(out).toContain(uids.map(ORIGINAL.sopB));
  });

  it('the same secret gives the same UIDs; another secret or no secret, others', () => {
    const bytes = encodeFile(
      plantedMeta(ORIGINAL.sopA, EXPLICIT_VR_LE),
      planted(ORIGINAL.sopA, ORIGINAL.sopB, true),
      { explicit: true, little: true },
    );
    const secret = new Uint8Array(32).fill(7);
    const one = deidentifyDicom(bytes, 'a.dcm', { uids: new UidMapper(secret) }).bytes;
    const two = deidentifyDicom(bytes, 'a.dcm', { uids: new UidMapper(secret) }).bytes;
    const other = deidentifyDicom(bytes, 'a.dcm', { uids: new UidMapper(new Uint8Array(32).fill(8)) }).bytes;
    expect(Buffer.from(two).equals(Buffer.from(one))).toBe(true);
    expect(Buffer.from(other).equals(Buffer.from(one))).toBe(false);
    // Not an unkeyed hash: the UID is not derivable from the original alone.
    const mapper = new UidMapper(secret);
    const unkeyed = createHash('sha256').update(ORIGINAL.sopA).digest();
    expect(mapper.map(ORIGINAL.sopA)).not.toBe(
      `2.25.${BigInt(`0x${unkeyed.subarray(0, 16).toString('hex')}`)}`,
    );
    expect(mapper.map(`${ORIGINAL.sopA}\0`)).toBe(mapper.map(ORIGINAL.sopA));
    expect(() => new UidMapper(new Uint8Array(8))).toThrow(/expected at least 16/);
  });

  it('tells CT images from the rest, and reads burned-in annotation', () => {
    const facts = (b: Uint8Array) => inspectDicom(b, 'x.dcm');
    const meta = (sop: string) => [
      { tag: tag(0x0002, 0x0010), vr: 'UI', value: EXPLICIT_VR_LE },
      { tag: tag(0x0002, 0x0002), vr: 'UI', value: sop },
    ];
    const file = (data: El[], sop = CT_IMAGE_STORAGE_UID) =>
      encodeFile(meta(sop), data, { explicit: true, little: true });
    expect(
      isCtImage(facts(file([{ tag: tag(0x0008, 0x0016), vr: 'UI', value: CT_IMAGE_STORAGE_UID }]))),
    ).toBe(true);
    expect(
      isCtImage(facts(file([{ tag: tag(0x0008, 0x0016), vr: 'UI', value: '1.2.840.10008.5.1.4.1.1.2.1' }]))),
    ).toBe(true);
    // A secondary capture dose screen says modality CT: still not a CT image.
    expect(
      isCtImage(
        facts(
          file([
            { tag: tag(0x0008, 0x0016), vr: 'UI', value: '1.2.840.10008.5.1.4.1.1.7' },
            { tag: tag(0x0008, 0x0060), vr: 'CS', value: 'CT' },
          ]),
        ),
      ),
    ).toBe(false);
    expect(
      isCtImage(
        facts(file([{ tag: tag(0x0008, 0x0016), vr: 'UI', value: '1.2.840.10008.5.1.4.1.1.88.67' }])),
      ),
    ).toBe(false); // dose SR
    expect(
      isCtImage(
        facts(file([{ tag: tag(0x0008, 0x0016), vr: 'UI', value: '1.2.840.10008.5.1.4.1.1.104.1' }])),
      ),
    ).toBe(false); // PDF
    // No SOP class anywhere: modality decides.
    const bare = (modality: string) =>
      encodeFile(
        [{ tag: tag(0x0002, 0x0010), vr: 'UI', value: EXPLICIT_VR_LE }],
        [{ tag: tag(0x0008, 0x0060), vr: 'CS', value: modality }],
        { explicit: true, little: true },
      );
    expect(isCtImage(facts(bare('CT')))).toBe(true);
    expect(isCtImage(facts(bare('MR')))).toBe(false);
    expect(facts(file([{ tag: tag(0x0028, 0x0301), vr: 'CS', value: 'YES' }])).burnedInAnnotation).toBe(
      'YES',
    );
  });
});
