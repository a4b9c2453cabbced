/**
 * Explicit → implicit VR little endian at the byte level (core/dicom/implicit.ts), the form the
 * gateway sends result objects in when a PACS accepts only Implicit VR Little Endian. The SR and
 * an overlay Secondary Capture (with an ISO 2022 IR 87 patient name as raw bytes) are converted and
 * checked from the outside: pydicom reads every element of both files equal (at any depth, value
 * bytes exact), dciodvfy reports no error, dcmdump reads the file. Unit cases pin the byte layout
 * against test/helpers/dicom-builder.ts's own implicit encoding of the same elements.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  COVIDCT_IMPLEMENTATION_UID,
  concatBytes,
  EXPLICIT_VR_LITTLE_ENDIAN,
  encodeElement,
} from '../core/dicom/encode.js';
import { explicitToImplicitLittleEndian, part10DataSet } from '../core/dicom/implicit.js';
import {
  buildOverlaySecondaryCapture,
  buildResultSr,
  type CompletedResult,
} from '../core/dicom/result-objects.js';
import { IMPLICIT_VR_LE } from '../core/dicom/syntax.js';
import { CorruptFileError, UnsupportedTransferSyntaxError } from '../core/errors.js';
import { type El, encodeDataSet, encodeEl, tag } from './helpers/dicom-builder.js';
import { JIS_IDENTITY as IDENTITY, JIS_NAME, latin1 } from './helpers/identities.js';
import { tempDir } from './helpers/tmp.js';

const work = tempDir('covidct-implicit-');
const EXPLICIT = { explicit: true, little: true };
const IMPLICIT = { explicit: false, little: true };

const RESULT: CompletedResult = {
  status: 'COMPLETE',
  studyId: 'st-0001',
  decision: 'covid',
  covidFraction: 0.5,
  covidCount: 4,
  classifiedCount: 8,
  selectedCount: 9,
  failedCount: 1,
  threshold: 0.3,
  model: { id: 'seeded-demo-7', sha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' },
  intendedUse: { diagnostic: false, statement: 'demonstration model trained on synthetic phantoms' },
  series: [
    {
      id: 'se-a',
      status: 'SELECTED',
      selectionThreshold: 1500,
      selectedCount: 9,
      covidCount: 4,
      classifiedCount: 8,
      covidFraction: 0.5,
      decision: 'covid',
    },
  ],
};
const DECIDED = new Date('2026-12-04T10:20:30Z');

/** A Part 10 file around a data set in `syntax` (file meta with its group length). */
function withMeta(
  dataSet: Uint8Array,
  syntax: string,
  sopClassUid: string,
  sopInstanceUid: string,
): Uint8Array {
  const ui = (s: string) => latin1(s.length % 2 ? `${s}\0` : s);
  const meta = concatBytes([
    encodeElement(tag(2, 1), 'OB', new Uint8Array([0, 1]), EXPLICIT),
    encodeElement(tag(2, 2), 'UI', ui(sopClassUid), EXPLICIT),
    encodeElement(tag(2, 3), 'UI', ui(sopInstanceUid), EXPLICIT),
    encodeElement(tag(2, 0x10), 'UI', ui(syntax), EXPLICIT),
    encodeElement(tag(2, 0x12), 'UI', ui(COVIDCT_IMPLEMENTATION_UID), EXPLICIT),
  ]);
  const length = new Uint8Array(4);
  new DataView(length.buffer).setUint32(0, meta.length, true);
  const preamble = new Uint8Array(132);
  preamble.set(latin1('DICM'), 128);
  return concatBytes([preamble, encodeElement(tag(2, 0), 'UL', length, EXPLICIT), meta, dataSet]);
}

/**
 * pydicom's view of each file: its transfer syntax and every element at any depth as
 * [path, value bytes (hex) as stored], sequences walked; pixel array shape where there are pixels.
 */
const READ_ALL = `
import json, sys
import pydicom
from pydicom.dataelem import RawDataElement

def walk(ds, path, out):
    for tag in sorted(ds.keys()):
        raw = ds.get_item(tag)
        elem = ds[tag]
        key = path + "/" + format(int(tag), "08x")
        if elem.VR == "SQ":
            out.append([key, "SQ", len(elem.value)])
            for i, item in enumerate(elem.value):
                walk(item, key + "[" + str(i) + "]", out)
        else:
            if isinstance(raw, RawDataElement):
                # An empty value reads as None in implicit VR and b"" in explicit: both no bytes.
                out.append([key, bytes(raw.value or b"").hex()])
            elif elem.value in ("", None):
                out.append([key, ""])
            else:
                # Read eagerly (SpecificCharacterSet): compare the decoded value.
                out.append([key, "value " + repr(elem.value)])

result = {}
for f in sys.argv[1:]:
    ds = pydicom.dcmread(f)
    out = []
    walk(ds, "", out)
    entry = {"syntax": str(ds.file_meta.TransferSyntaxUID), "elements": out,
             "patientName": str(ds.get("PatientName", ""))}
    if "PixelData" in ds:
        entry["shape"] = list(ds.pixel_array.shape)
    result[f] = entry
print(json.dumps(result))
`;

interface PyRead {
  syntax: string;
  elements: [string, string, number?][];
  patientName: string;
  shape?: number[];
}

function pydicomRead(files: readonly string[]): Record<string, PyRead> {
  const run = spawnSync('/usr/bin/python3', ['-W', 'ignore', '-c', READ_ALL, ...files], {
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
  });
  if (run.status !== 0) throw new Error(`pydicom failed (${run.status}): ${run.stderr.slice(-2000)}`);
  return JSON.parse(run.stdout) as Record<string, PyRead>;
}

function overlayRgb(width: number, height: number): Uint8Array {
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 37 + (i >> 7)) & 0xff;
  return rgb;
}

describe('result objects in implicit VR little endian, read by pydicom, dciodvfy and dcmdump', () => {
  const sr = buildResultSr({ identity: IDENTITY, result: RESULT, decidedAt: DECIDED });
  const sc = buildOverlaySecondaryCapture({
    identity: IDENTITY,
    runDigest: sr.runDigest,
    source: { sopClassUid: '1.2.840.10008.5.1.4.1.1.2', sopInstanceUid: '1.2.826.0.1.3680043.8.498.99.1' },
    rgb: overlayRgb(96, 64),
    width: 96,
    height: 64,
    decidedAt: DECIDED,
  });
  const pairs = [sr, sc].map((object, i) => {
    const split = part10DataSet(object.bytes, `object-${i}.dcm`);
    const implicit = withMeta(
      explicitToImplicitLittleEndian(split.dataSet, `object-${i}.dcm`),
      IMPLICIT_VR_LE,
      split.sopClassUid,
      split.sopInstanceUid,
    );
    const explicitFile = join(work, `explicit-${i}.dcm`);
    const implicitFile = join(work, `implicit-${i}.dcm`);
    writeFileSync(explicitFile, object.bytes);
    writeFileSync(implicitFile, implicit);
    return { object, split, explicitFile, implicitFile };
  });
  const read = pydicomRead(pairs.flatMap((p) => [p.explicitFile, p.implicitFile]));

  it('part10DataSet gives the file meta facts and the data set after it', () => {
    for (const { object, split } of pairs) {
      expect(split.transferSyntaxUid).toBe(EXPLICIT_VR_LITTLE_ENDIAN);
      expect(split.sopClassUid).toBe(object.sopClassUid);
      expect(split.sopInstanceUid).toBe(object.sopInstanceUid);
      // The data set starts with group 0008 (SpecificCharacterSet first).
      expect([...split.dataSet.subarray(0, 4)]).toEqual([0x08, 0x00, 0x05, 0x00]);
    }
  });

  it('pydicom reads every element equal at any depth, the JIS patient name byte-exact', () => {
    for (const { explicitFile, implicitFile } of pairs) {
      const e = read[explicitFile]!;
      const i = read[implicitFile]!;
      expect(e.syntax).toBe(EXPLICIT_VR_LITTLE_ENDIAN);
      expect(i.syntax).toBe(IMPLICIT_VR_LE);
      expect(i.elements).toEqual(e.elements);
      const name = i.elements.find(([path]) => path === '/00100010')?.[1];
      expect(name).toBe(Buffer.from(JIS_NAME.length % 2 ? [...JIS_NAME, 0x20] : JIS_NAME).toString('hex'));
      expect(i.patientName).toBe('Yamada^Tarou=山田^太郎=やまだ^たろう');
      expect(i.shape).toEqual(e.shape);
    }
    // The SR's content tree is compared down to its leaves (TEXT values four content levels deep).
    const srPaths = read[pairs[0]!.implicitFile]!.elements.map(([path]) => path);
    expect(srPaths.filter((p) => p.endsWith('/0040a160')).length).toBeGreaterThan(3);
    expect(Math.max(...srPaths.map((p) => p.split('/0040a730').length - 1))).toBeGreaterThanOrEqual(3);
    expect(read[pairs[1]!.implicitFile]!.shape).toEqual([64, 96, 3]);
    expect(read[pairs[1]!.implicitFile]!.elements.find(([p]) => p === '/7fe00010')?.[1]).toBe(
      Buffer.from(part10PixelBytes(pairs[1]!.split.dataSet)).toString('hex'),
    );
  });

  it('dciodvfy reports no errors and dcmdump reads the file', () => {
    for (const [n, { implicitFile }] of pairs.entries()) {
      const dvfy = spawnSync('dciodvfy', [implicitFile], { encoding: 'utf8' });
      expect(dvfy.error).toBeUndefined();
      const errors = `${dvfy.stdout}\n${dvfy.stderr}`.split('\n').filter((l) => l.startsWith('Error'));
      expect(errors, implicitFile).toEqual([]);
      const dump = spawnSync('dcmdump', ['-q', implicitFile], { encoding: 'utf8' });
      expect(dump.status, dump.stderr).toBe(0);
      expect(dump.stderr).toBe('');
      expect(dump.stdout).toMatch(/# Dicom-Data-Set\n# Used TransferSyntax: Little Endian Implicit/);
      // The SR's content tree; the image's pixels.
      expect(dump.stdout).toMatch(n === 0 ? /\(0040,a730\) SQ/ : /\(7fe0,0010\) O[BW]/);
    }
  });
});

/** The PixelData value of an explicit VR little endian data set whose last element it is. */
function part10PixelBytes(dataSet: Uint8Array): Uint8Array {
  const view = new DataView(dataSet.buffer, dataSet.byteOffset, dataSet.byteLength);
  for (let at = dataSet.length - 12; at >= 0; at--) {
    if (
      view.getUint32(at, true) === 0x00107fe0 &&
      view.getUint32(at + 8, true) === dataSet.length - at - 12
    ) {
      return dataSet.subarray(at + 12);
    }
  }
  throw new Error('no PixelData at the end');
}

describe('explicitToImplicitLittleEndian, byte layout', () => {
  const code = (value: string): El[] => [
    { tag: tag(0x0008, 0x0100), vr: 'SH', value },
    { tag: tag(0x0008, 0x0102), vr: 'SH', value: 'DCM' },
    { tag: tag(0x0008, 0x0104), vr: 'LO', value: `meaning ${value}` },
  ];
  // Defined-length SQ, its items holding defined-length SQs: every length shrinks (SQ headers 12 → 8).
  const nested: El = {
    tag: tag(0x0040, 0xa730),
    vr: 'SQ',
    items: [
      [
        { tag: tag(0x0040, 0xa010), vr: 'CS', value: 'CONTAINS' },
        { tag: tag(0x0040, 0xa043), vr: 'SQ', items: [code('111001'), code('111002')] },
        {
          tag: tag(0x0040, 0xa730),
          vr: 'SQ',
          items: [[{ tag: tag(0x0040, 0xa043), vr: 'SQ', items: [code('x')] }]],
        },
      ],
      [{ tag: tag(0x0040, 0xa160), vr: 'UT', value: 'a long-VR text' }],
    ],
  };
  const convert = (els: readonly El[]) =>
    Buffer.from(explicitToImplicitLittleEndian(encodeDataSet(els, EXPLICIT), 'case.dcm')).toString('hex');
  const expected = (els: readonly El[]) => Buffer.from(encodeDataSet(els, IMPLICIT)).toString('hex');

  it('recomputes the lengths of defined-length sequences and nested items', () => {
    const els: El[] = [{ tag: tag(0x0008, 0x0060), vr: 'CS', value: 'SR' }, nested];
    expect(convert(els)).toBe(expected(els));
    // And pydicom reads the implicit file as the explicit one, item for item.
    const explicit = encodeDataSet(els, EXPLICIT);
    const files = ['nested-explicit.dcm', 'nested-implicit.dcm'].map((f) => join(work, f));
    writeFileSync(files[0]!, withMeta(explicit, EXPLICIT_VR_LITTLE_ENDIAN, '1.2.3', '1.2.3.4'));
    writeFileSync(
      files[1]!,
      withMeta(explicitToImplicitLittleEndian(explicit, 'case.dcm'), IMPLICIT_VR_LE, '1.2.3', '1.2.3.4'),
    );
    const read = pydicomRead(files);
    expect(read[files[1]!]!.elements).toEqual(read[files[0]!]!.elements);
    expect(read[files[1]!]!.elements.filter(([p]) => p.endsWith('/00080100'))).toHaveLength(3);
  });

  it('keeps undefined-length sequences and items undefined, with their delimiters', () => {
    const els: El[] = [
      { ...nested, undefinedLength: true },
      {
        tag: tag(0x0040, 0xa375),
        vr: 'SQ',
        undefinedLength: true,
        items: [[{ tag: tag(0x0008, 0x1199), vr: 'SQ', items: [code('y')] }]],
      },
    ];
    expect(convert(els)).toBe(expected(els));
  });

  it('copies long-VR OB / OW / UT / UN values byte for byte, including undefined-length UN content', () => {
    const ob = new Uint8Array(70_000).map((_, i) => (i * 13) & 0xff);
    const els: El[] = [
      { tag: tag(0x0009, 0x0010), vr: 'LO', value: 'PRIVATE' },
      { tag: tag(0x0009, 0x1001), vr: 'UN', value: new Uint8Array([1, 2, 3, 4]) },
      { tag: tag(0x0009, 0x1002), vr: 'UN', undefinedLength: true, items: [code('z')] },
      { tag: tag(0x0040, 0xa160), vr: 'UT', value: latin1('\x1b$B;3ED\x1b(B') },
      { tag: tag(0x0042, 0x0011), vr: 'OB', value: ob },
      { tag: tag(0x7fe0, 0x0010), vr: 'OW', value: ob.subarray(0, 1024) },
    ];
    expect(convert(els)).toBe(expected(els));
  });

  it('drops group lengths, at the top level and inside items', () => {
    const groupLength = (group: number): El => ({ tag: tag(group, 0), vr: 'UL', value: new Uint8Array(4) });
    const withLengths: El[] = [
      groupLength(0x0008),
      { tag: tag(0x0008, 0x0060), vr: 'CS', value: 'SR' },
      { ...nested, items: [[groupLength(0x0008), ...code('q')]] },
    ];
    const without: El[] = [
      { tag: tag(0x0008, 0x0060), vr: 'CS', value: 'SR' },
      { ...nested, items: [code('q')] },
    ];
    expect(convert(withLengths)).toBe(expected(without));
  });

  it('refuses encapsulated pixel data, naming the file', () => {
    const fragments = encodeEl(
      { tag: tag(0x7fe0, 0x0010), vr: 'OB', undefinedLength: true, items: [[]] },
      EXPLICIT,
    );
    const data = concatBytes([
      encodeDataSet([{ tag: tag(0x0028, 0x0010), vr: 'US', value: new Uint8Array(2) }], EXPLICIT),
      fragments,
    ]);
    expect(() => explicitToImplicitLittleEndian(data, 'scan.dcm')).toThrow(UnsupportedTransferSyntaxError);
    expect(() => explicitToImplicitLittleEndian(data, 'scan.dcm')).toThrow(/^scan\.dcm: encapsulated/);
  });

  it('a truncated or damaged data set is a CorruptFileError naming the file, at every cut', () => {
    const els: El[] = [
      { tag: tag(0x0008, 0x0060), vr: 'CS', value: 'SR' },
      nested,
      { ...nested, tag: tag(0x0040, 0xa731), undefinedLength: true },
      { tag: tag(0x7fe0, 0x0010), vr: 'OW', value: new Uint8Array(16) },
    ];
    const whole = encodeDataSet(els, EXPLICIT);
    const boundaries = new Set<number>([0]);
    let at = 0;
    for (const el of els) {
      at += encodeEl(el, EXPLICIT).length;
      boundaries.add(at);
    }
    for (let cut = 0; cut < whole.length; cut++) {
      const part = whole.slice(0, cut);
      if (boundaries.has(cut)) {
        expect(() => explicitToImplicitLittleEndian(part, 'cut.dcm'), `cut ${cut}`).not.toThrow();
        continue;
      }
      let caught: unknown;
      try {
        explicitToImplicitLittleEndian(part, 'cut.dcm');
      } catch (error) {
        caught = error;
      }
      expect(caught, `cut ${cut}`).toBeInstanceOf(CorruptFileError);
      expect((caught as Error).message).toMatch(/^cut\.dcm: /);
    }
    // Not an explicit VR element at all (an implicit data set handed in by mistake).
    const implicit = encodeDataSet(els, IMPLICIT);
    expect(() => explicitToImplicitLittleEndian(implicit, 'cut.dcm')).toThrow(CorruptFileError);
  });

  it('part10DataSet reads file meta without a group length, and refuses a truncated one', () => {
    const sr = buildResultSr({ identity: IDENTITY, result: RESULT, decidedAt: DECIDED });
    const bytes = sr.bytes;
    // (0002,0000) UL is the first element after "DICM": 12 bytes.
    expect([...bytes.subarray(132, 136)]).toEqual([2, 0, 0, 0]);
    const withoutLength = concatBytes([bytes.subarray(0, 132), bytes.subarray(144)]);
    const a = part10DataSet(bytes, 'sr.dcm');
    const b = part10DataSet(withoutLength, 'sr.dcm');
    expect(b.sopInstanceUid).toBe(sr.sopInstanceUid);
    expect(b.transferSyntaxUid).toBe(a.transferSyntaxUid);
    expect(Buffer.from(b.dataSet).equals(Buffer.from(a.dataSet))).toBe(true);
    expect(() => part10DataSet(bytes.subarray(0, 160), 'sr.dcm')).toThrow(CorruptFileError);
    expect(() => part10DataSet(bytes.subarray(0, 160), 'sr.dcm')).toThrow(/^sr\.dcm: /);
    expect(() => part10DataSet(bytes.subarray(132), 'sr.dcm')).toThrow(/^sr\.dcm: not a DICOM Part 10 file/);
  });
});
