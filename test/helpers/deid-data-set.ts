/**
 * The planted data set the de-identification tests build (identity across PS3.15 Table E.1-1,
 * sequences three deep, private blocks inside items, explicit UN elements, trailing padding, a
 * planted file meta) in each transfer syntax, and pydicom's reading of a file as PS3.18 JSON.
 */
import { spawnSync } from 'node:child_process';
import { CT_IMAGE_STORAGE_UID } from '../../core/dicom/profile.js';
import { EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE } from '../../core/dicom/syntax.js';
import { type El, type Enc, tag } from './dicom-builder.js';

/** pydicom's JSON of each file: `{ meta, data }` (PS3.18 JSON, binary values inline). */
export function pydicomJson(paths: readonly string[]): { meta: Json; data: Json }[] {
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
/** The `Value` of the element `key` (8 hex digits) in pydicom's JSON. */
export const value = (ds: Json, key: string) => ds[key]?.Value;
/** The items of the sequence `key` in pydicom's JSON (none if absent). */
export const items = (ds: Json, key: string) => (ds[key]?.Value ?? []) as Json[];

/** The UIDs of the planted files before de-identification. */
export const ORIGINAL = {
  sopA: '1.2.826.0.1.3680043.99.1.1',
  sopB: '1.2.826.0.1.3680043.99.1.2',
  study: '1.2.826.0.1.3680043.99.2',
  series: '1.2.826.0.1.3680043.99.3',
  frame: '1.2.826.0.1.3680043.99.4',
};

/** Every planted identifying value: none may be anywhere in the output. */
export const PLANTED = [
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

/** The planted pixel data (32 bytes), kept byte for byte. */
export const PIXELS = new Uint8Array(32).map((_, i) => (i * 37 + 11) & 0xff);
/** A non-identifying element the profile keeps (SliceThickness). */
export const THICKNESS: El = { tag: tag(0x0018, 0x0050), vr: 'DS', value: '1.25' };

/**
 * A CT data set with identity planted across the table; `explicitUn` adds explicit-VR UN elements
 * (in implicit VR every element is written without its VR anyway).
 */
export function planted(sop: string, referenced: string, explicitUn: boolean): El[] {
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

/** A planted file meta for `sop` in `syntax`, with identifying implementation and source values. */
export function plantedMeta(sop: string, syntax: string): El[] {
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
export const SYNTAXES: [string, string, Enc, boolean, boolean][] = [
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

/** The bytes as Latin-1 text, to search for planted values. */
export function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('latin1');
}
