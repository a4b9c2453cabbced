/**
 * De-identification of DICOM files (core/dicom/deidentify.ts) by PS3.15 Table E.1-1's Basic Profile:
 *
 * - the table is in the project as data, whole (every row of the source) with its edition;
 * - a planted data set (identity across the table, sequences three deep, private blocks inside
 *   items, explicit UN elements and a UN sequence, trailing padding, group lengths, a planted file
 *   meta) loses every planted value in each transfer syntax, keeps the rest byte for byte, and
 *   pydicom (Debian's /usr/bin/python3) reads it back with the actions the table asks;
 * - UIDs are replaced by a keyed hash, consistently across files and references;
 * - the real fixtures in every transfer syntax keep their pixels and header facts.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync, inflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { decodeDicom } from '../core/dicom/decode.js';
import {
  BASIC_PROFILE_CODE,
  DEIDENTIFICATION_METHOD,
  deidentifyDicom,
  inspectDicom,
  isCtImage,
  mapDicomUids,
  reportPageReason,
} from '../core/dicom/deidentify.js';
import { COVIDCT_IMPLEMENTATION_UID, encodeDicomCt } from '../core/dicom/encode.js';
import {
  CT_IMAGE_STORAGE_UID,
  PROFILE_ATTRIBUTES,
  PROFILE_EDITION,
  profileAttribute,
  resolveAction,
} from '../core/dicom/profile.js';
import { EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE } from '../core/dicom/syntax.js';
import { UidMapper } from '../core/dicom/uids.js';
import { InputError } from '../core/errors.js';
import { type El, type Enc, encodeEl, encodeFile, tag } from './helpers/dicom-builder.js';
import { tempDir } from './helpers/tmp.js';

const FIXTURES = join(import.meta.dirname, 'fixtures', 'dicom');
const work = tempDir('covidct-deid-');

/** pydicom's JSON of each file: `{ meta, data }` (PS3.18 JSON, binary values inline). */
function pydicomJson(paths: readonly string[]): { meta: Json; data: Json }[] {
  const script = `
import json, sys, pydicom
out = []
for p in sys.argv[1:]:
    d = pydicom.dcmread(p, force=True)
    out.append({'meta': d.file_meta.to_json_dict(bulk_data_threshold=10**9), 'data': d.to_json_dict(bulk_data_threshold=10**9)})
print(json.dumps(out))
`;
  const run = spawnSync('/usr/bin/python3', ['-W', 'ignore', '-c', script, ...paths], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (run.status !== 0) throw new Error(`pydicom failed: ${run.stderr}`);
  return JSON.parse(run.stdout) as { meta: Json; data: Json }[];
}
type Json = Record<string, { vr: string; Value?: unknown[]; InlineBinary?: string }>;
const value = (ds: Json, key: string) => ds[key]?.Value;
const items = (ds: Json, key: string) => (ds[key]?.Value ?? []) as Json[];

describe('PS3.15 Table E.1-1 as data', () => {
  it('holds every row of the source, with its edition (2021b or later), and resolves masks', () => {
    const file = JSON.parse(
      readFileSync(join(import.meta.dirname, '..', 'core', 'dicom', 'confidentiality-profile.json'), 'utf8'),
    ) as { edition: string; count: number; attributes: unknown[] };
    // innolitics/dicom-standard's confidentiality_profile_attributes.json has 621 rows (2024b).
    expect(file.count).toBe(621);
    expect(file.attributes).toHaveLength(621);
    expect(PROFILE_ATTRIBUTES).toHaveLength(621);
    expect(new Set(PROFILE_ATTRIBUTES.map((a) => a.tag)).size).toBe(621);
    expect(PROFILE_EDITION).toMatch(/^20\d\d[a-e]$/);
    expect(PROFILE_EDITION >= '2021b').toBe(true);
    const counts = new Map<string, number>();
    for (const a of PROFILE_ATTRIBUTES) counts.set(a.action, (counts.get(a.action) ?? 0) + 1);
    expect(Object.fromEntries(counts)).toEqual({
      X: 384,
      D: 92,
      U: 54,
      Z: 42,
      'X/D': 22,
      'X/Z': 11,
      'X/Z/D': 8,
      'Z/D': 6,
      'X/Z/U*': 2,
    });
    // The values planted in the real series of the issue are all in the table.
    const named = (t: number) => profileAttribute(t)?.name;
    expect(named(tag(0x0008, 0x009c))).toBe("Consulting Physician's Name");
    expect(named(tag(0x0040, 0xa075))).toBe('Verifying Observer Name');
    expect(named(tag(0x4000, 0x4000))).toBe('Text Comments');
    expect(named(tag(0x0010, 0x21d0))).toBe('Last Menstrual Date');
    expect(named(tag(0x6002, 0x4000))).toBe('Overlay Comments');
    expect(named(tag(0x601e, 0x3000))).toBe('Overlay Data');
    expect(named(tag(0x5004, 0x0123))).toBe('Curve Data');
    expect(profileAttribute(tag(0x0018, 0x0050))).toBeUndefined(); // Slice Thickness: kept
    expect(profileAttribute(tag(0x0008, 0x0016))).toBeUndefined(); // SOP Class UID: kept
  });

  it('resolves choices by what the CT image IOD needs: type 2 empty, type 3 removed', () => {
    const row = (t: number) => profileAttribute(t)!;
    expect(resolveAction(row(tag(0x0010, 0x0020)), CT_IMAGE_STORAGE_UID, true)).toBe('Z'); // Patient ID Z/D
    expect(resolveAction(row(tag(0x0008, 0x0022)), CT_IMAGE_STORAGE_UID, true)).toBe('X'); // Acquisition Date X/Z
    expect(resolveAction(row(tag(0x0008, 0x0080)), CT_IMAGE_STORAGE_UID, true)).toBe('X'); // Institution X/Z/D
    expect(resolveAction(row(tag(0x0008, 0x1140)), CT_IMAGE_STORAGE_UID, true)).toBe('X'); // X/Z/U*
    expect(resolveAction(row(tag(0x0018, 0x1000)), '1.2.840.10008.5.1.4.1.1.2.1', true)).toBe('D'); // Enhanced CT type 1
    expect(resolveAction(row(tag(0x0040, 0xa123)), CT_IMAGE_STORAGE_UID, false)).toBe('D');
  });
});

const ORIGINAL = {
  sopA: '1.2.826.0.1.3680043.99.1.1',
  sopB: '1.2.826.0.1.3680043.99.1.2',
  study: '1.2.826.0.1.3680043.99.2',
  series: '1.2.826.0.1.3680043.99.3',
  frame: '1.2.826.0.1.3680043.99.4',
};

/** Every planted identifying value: none may be anywhere in the output. */
const PLANTED = [
  'PLANT_SRC_AE',
  'PLANT_PRIVATE_INFO',
  'PLANT_IMPL',
  '20200101',
  '20200102',
  'PLANT_ACCESSION',
  'PLANT_INSTITUTION',
  'PLANT^CONSULTING',
  'PLANT^DEEP^PERSON',
  'PLANT^DEEP^NAME',
  'PLANT_DEEP_ADDRESS',
  'PLANT_PRIVATE_CREATOR',
  'PLANT_PRIVATE_VALUE',
  'PLANT^PATIENT',
  'PLANT_PID',
  'PLANT_UN_ADDRESS',
  'PLANT_OTHER_ID',
  'PLANT^UN^NESTED',
  'PLANT_CREATOR_TOP',
  'PLANT_PRIVATE_TOP',
  'PLANT_TEXT_COMMENTS',
  'PLANT_OVERLAY_COMMENTS',
  'PLANT_OVERLAY_DESCRIPTION',
  'PLANT_PADDING',
  'PLANT_REQUEST',
  '1.2.826.0.1.3680043.99.77',
  ...Object.values(ORIGINAL),
];

const PIXELS = new Uint8Array(32).map((_, i) => (i * 37 + 11) & 0xff);
const THICKNESS: El = { tag: tag(0x0018, 0x0050), vr: 'DS', value: '1.25' };

/**
 * A CT data set with identity planted across the table; `explicitUn` adds explicit-VR UN elements
 * (in implicit VR every element is written without its VR anyway).
 */
function planted(sop: string, referenced: string, explicitUn: boolean): El[] {
  const un = (vr: string) => (explicitUn ? 'UN' : vr);
  return [
    { tag: tag(0x0000, 0x0002), vr: 'UI', value: '1.2.826.0.1.3680043.99.77' }, // a command element
    { tag: tag(0x0008, 0x0000), vr: 'UL', value: new Uint8Array([0, 0, 0, 0]) }, // group length
    { tag: tag(0x0008, 0x0005), vr: 'CS', value: 'ISO_IR 100' },
    { tag: tag(0x0008, 0x0008), vr: 'CS', value: 'ORIGINAL\\PRIMARY\\AXIAL' },
    { tag: tag(0x0008, 0x0016), vr: 'UI', value: CT_IMAGE_STORAGE_UID },
    { tag: tag(0x0008, 0x0018), vr: 'UI', value: sop },
    { tag: tag(0x0008, 0x0020), vr: 'DA', value: '20200101' }, // Z
    { tag: tag(0x0008, 0x0022), vr: 'DA', value: '20200102' }, // X/Z → X
    { tag: tag(0x0008, 0x0050), vr: 'SH', value: 'PLANT_ACCESSION' }, // Z
    { tag: tag(0x0008, 0x0060), vr: 'CS', value: 'CT' },
    { tag: tag(0x0008, 0x0080), vr: 'LO', value: 'PLANT_INSTITUTION' }, // X/Z/D → X
    { tag: tag(0x0008, 0x009c), vr: 'PN', value: 'PLANT^CONSULTING' }, // Z
    {
      // Referenced Series Sequence (kept, not in the table), three deep, undefined lengths.
      tag: tag(0x0008, 0x1115),
      vr: 'SQ',
      undefinedLength: true,
      items: [
        [
          {
            tag: tag(0x0008, 0x114a),
            vr: 'SQ',
            items: [
              // Referenced Instance Sequence (kept)
              [
                { tag: tag(0x0008, 0x1150), vr: 'UI', value: CT_IMAGE_STORAGE_UID },
                { tag: tag(0x0008, 0x1155), vr: 'UI', value: referenced }, // U
                {
                  tag: tag(0x0008, 0x1199),
                  vr: 'SQ',
                  items: [
                    // Referenced SOP Sequence (kept): depth 3
                    [
                      { tag: tag(0x0008, 0x0081), vr: 'ST', value: 'PLANT_DEEP_ADDRESS' }, // X
                      { tag: tag(0x0010, 0x0010), vr: 'PN', value: 'PLANT^DEEP^NAME' }, // Z
                      { tag: tag(0x0040, 0xa123), vr: 'PN', value: 'PLANT^DEEP^PERSON' }, // D
                    ],
                  ],
                },
                { tag: tag(0x0009, 0x0010), vr: 'LO', value: 'PLANT_PRIVATE_CREATOR' }, // private in an item
                { tag: tag(0x0009, 0x1001), vr: 'LO', value: 'PLANT_PRIVATE_VALUE' },
              ],
            ],
          },
          { tag: tag(0x0020, 0x000e), vr: 'UI', value: ORIGINAL.series }, // U inside a sequence
        ],
      ],
    },
    {
      // A UN sequence kept by the table, its content implicit VR: rewritten inside.
      tag: tag(0x0008, 0x1199), // Referenced SOP Sequence, not in the table
      vr: un('SQ'),
      undefinedLength: true,
      items: [
        [
          { tag: tag(0x0008, 0x1155), vr: 'UI', value: referenced },
          { tag: tag(0x0010, 0x0010), vr: 'PN', value: 'PLANT^UN^NESTED' },
        ],
      ],
    },
    { tag: tag(0x0010, 0x0010), vr: 'PN', value: 'PLANT^PATIENT' }, // Z
    { tag: tag(0x0010, 0x0020), vr: 'LO', value: 'PLANT_PID' }, // Z/D → Z
    {
      tag: tag(0x0010, 0x1002), // Other Patient IDs Sequence: X, whole
      vr: un('SQ'),
      undefinedLength: true,
      items: [[{ tag: tag(0x0010, 0x0020), vr: 'LO', value: 'PLANT_OTHER_ID' }]],
    },
    { tag: tag(0x0010, 0x1040), vr: un('LO'), value: 'PLANT_UN_ADDRESS' }, // X by tag, as UN
    THICKNESS,
    { tag: tag(0x0020, 0x000d), vr: 'UI', value: ORIGINAL.study },
    { tag: tag(0x0020, 0x000e), vr: 'UI', value: ORIGINAL.series },
    { tag: tag(0x0020, 0x0013), vr: 'IS', value: '1' },
    { tag: tag(0x0020, 0x0052), vr: 'UI', value: ORIGINAL.frame },
    { tag: tag(0x0028, 0x0002), vr: 'US', value: new Uint8Array([1, 0]) },
    { tag: tag(0x0028, 0x0004), vr: 'CS', value: 'MONOCHROME2' },
    { tag: tag(0x0028, 0x0010), vr: 'US', value: new Uint8Array([4, 0]) },
    { tag: tag(0x0028, 0x0011), vr: 'US', value: new Uint8Array([4, 0]) },
    { tag: tag(0x0028, 0x0100), vr: 'US', value: new Uint8Array([16, 0]) },
    { tag: tag(0x0028, 0x0101), vr: 'US', value: new Uint8Array([16, 0]) },
    { tag: tag(0x0028, 0x0102), vr: 'US', value: new Uint8Array([15, 0]) },
    { tag: tag(0x0028, 0x0103), vr: 'US', value: new Uint8Array([0, 0]) },
    { tag: tag(0x0029, 0x0010), vr: 'LO', value: 'PLANT_CREATOR_TOP' },
    { tag: tag(0x0029, 0x1010), vr: 'LO', value: 'PLANT_PRIVATE_TOP' },
    {
      tag: tag(0x0040, 0x0275), // Request Attributes Sequence: X
      vr: 'SQ',
      items: [[{ tag: tag(0x0040, 0x1001), vr: 'SH', value: 'PLANT_REQUEST' }]],
    },
    { tag: tag(0x4000, 0x4000), vr: 'LT', value: 'PLANT_TEXT_COMMENTS' },
    // Not in the table: the whole overlay plane goes (its data is X, the module would be invalid).
    { tag: tag(0x6000, 0x0022), vr: 'LO', value: 'PLANT_OVERLAY_DESCRIPTION' },
    { tag: tag(0x6000, 0x4000), vr: 'LT', value: 'PLANT_OVERLAY_COMMENTS' },
    { tag: tag(0x7fe0, 0x0010), vr: 'OW', value: PIXELS },
    { tag: tag(0xfffc, 0xfffc), vr: 'OB', value: 'PLANT_PADDING' },
  ];
}

function plantedMeta(sop: string, syntax: string): El[] {
  return [
    { tag: tag(0x0002, 0x0001), vr: 'OB', value: new Uint8Array([0, 1]) },
    { tag: tag(0x0002, 0x0002), vr: 'UI', value: CT_IMAGE_STORAGE_UID },
    { tag: tag(0x0002, 0x0003), vr: 'UI', value: sop },
    { tag: tag(0x0002, 0x0010), vr: 'UI', value: syntax },
    { tag: tag(0x0002, 0x0012), vr: 'UI', value: '1.2.826.0.1.3680043.99.9' },
    { tag: tag(0x0002, 0x0013), vr: 'SH', value: 'PLANT_IMPL' },
    { tag: tag(0x0002, 0x0016), vr: 'AE', value: 'PLANT_SRC_AE' },
    { tag: tag(0x0002, 0x0100), vr: 'UI', value: '1.2.826.0.1.3680043.99.8' },
    { tag: tag(0x0002, 0x0102), vr: 'OB', value: 'PLANT_PRIVATE_INFO' },
  ];
}

/** Name, transfer syntax, encoding, deflated, with explicit UN elements. */
const SYNTAXES: [string, string, Enc, boolean, boolean][] = [
  ['explicit VR little endian', EXPLICIT_VR_LE, { explicit: true, little: true }, false, true],
  ['implicit VR little endian', IMPLICIT_VR_LE, { explicit: false, little: true }, false, false],
  // pydicom 2.3 cannot read a UN sequence in big endian (dcmdump can): UN in big endian is checked
  // on the bytes below.
  ['explicit VR big endian', EXPLICIT_VR_BE, { explicit: true, little: false }, false, false],
  [
    'deflated explicit VR little endian',
    '1.2.840.10008.1.2.1.99',
    { explicit: true, little: true },
    true,
    true,
  ],
];

function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('latin1');
}

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

describe('CT instances that are report or screen pages', () => {
  it('ImageType SECONDARY, SCREEN SAVE, CSA REPORT or a dose marker says so; an axial slice does not', () => {
    const page = (imageType: string[]) =>
      reportPageReason({ sopClassUid: CT_IMAGE_STORAGE_UID, modality: 'CT', imageType });
    expect(page(['ORIGINAL', 'PRIMARY', 'AXIAL', 'CT_SOM5 SPI'])).toBeUndefined();
    expect(page(['DERIVED', 'SECONDARY', 'SCREEN SAVE'])).toMatch(/contains SECONDARY/);
    expect(page(['ORIGINAL', 'PRIMARY', 'OTHER', 'CSA REPORT'])).toMatch(/contains CSA REPORT/);
    expect(page(['DERIVED', 'PRIMARY', 'DOSE_INFO'])).toMatch(/contains DOSE_INFO/);
    const bytes = encodeFile(
      plantedMeta('1.3.6.1.4.1.77001.8', EXPLICIT_VR_LE),
      [
        { tag: tag(0x0008, 0x0008), vr: 'CS', value: 'DERIVED\\SECONDARY\\SCREEN SAVE' },
        { tag: tag(0x0008, 0x0016), vr: 'UI', value: CT_IMAGE_STORAGE_UID },
      ],
      { explicit: true, little: true },
    );
    expect(inspectDicom(bytes, 'dose.dcm').imageType).toEqual(['DERIVED', 'SECONDARY', 'SCREEN SAVE']);
  });
});

describe('table names', () => {
  it('are one line each, so messages naming a row stay one line', () => {
    expect(PROFILE_ATTRIBUTES.filter((row) => /\s{2,}|\n/.test(row.name)).map((r) => r.tag)).toEqual([]);
    expect(profileAttribute(tag(0x0088, 0x0200))?.name).toBe('Icon Image Sequence (see Note 11)');
  });
});
