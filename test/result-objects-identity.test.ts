/**
 * covidct's result as DICOM objects (core/dicom/result-objects.ts): identity bytes re-identified on
 * site in ISO_IR 192 and ISO 2022 IR 87 byte-exact, and UIDs that repeat for a run and change with
 * it, the previous SR referenced as predecessor.
 */
import { describe, expect, it } from 'vitest';
import {
  buildOverlaySecondaryCapture,
  buildResultSr,
  type CovidctResult,
  type StudyIdentity,
} from '../core/dicom/result-objects.js';
import { InputError } from '../core/errors.js';
import {
  CT_IMAGE,
  DECIDED,
  DEMO,
  dciodvfyErrors,
  dsrdumpErrors,
  FAILED,
  JIS_IDENTITY,
  overlay,
  UTF8_IDENTITY,
  utf8,
  writeAndRead,
} from './helpers/result-objects.js';

describe('identity, re-identified on site', () => {
  const objects = [UTF8_IDENTITY, JIS_IDENTITY].flatMap((identity) => {
    const sr = buildResultSr({ identity, result: DEMO, decidedAt: DECIDED });
    const sc = buildOverlaySecondaryCapture({
      identity,
      runDigest: sr.runDigest,
      source: { sopClassUid: CT_IMAGE, sopInstanceUid: '1.2.826.0.1.3680043.8.498.99.1' },
      rgb: overlay(160, 64),
      width: 160,
      height: 64,
      decidedAt: DECIDED,
    });
    return [sr, sc];
  });
  const { read } = writeAndRead(...objects);

  it('copies the Patient and General Study attributes byte-exact (ISO_IR 192 and ISO 2022 IR 87)', () => {
    const hexOf = (v: Uint8Array | string) => {
      const bytes = typeof v === 'string' ? utf8(v) : v;
      return Buffer.from(bytes.length % 2 ? [...bytes, 0x20] : bytes).toString('hex');
    };
    read.forEach((r, i) => {
      const identity = i < 2 ? UTF8_IDENTITY : JIS_IDENTITY;
      expect(r.study).toBe(identity.studyInstanceUid);
      expect(r.charset).toBe(identity.specificCharacterSet);
      for (const [keyword, value] of Object.entries(identity.attributes)) {
        expect(r.raw[keyword], keyword).toBe(hexOf(value));
      }
      // Type 2 attributes the original lacks are there, empty.
      if (identity === JIS_IDENTITY) expect(r.raw.AccessionNumber).toBe('');
    });
  });

  it('decodes to the names the hospital wrote', () => {
    expect(read[0]!.patientName).toBe('Müller^Jürgen=王^小東');
    expect(read[0]!.referringPhysicianName).toBe('Ødegård^Åse');
    expect(read[2]!.patientName).toBe('Yamada^Tarou=山田^太郎=やまだ^たろう');
    expect(read[3]!.patientName).toBe('Yamada^Tarou=山田^太郎=やまだ^たろう');
  });

  it('refuses text it cannot encode in the original character set, naming the attribute', () => {
    const identity: StudyIdentity = { ...JIS_IDENTITY, attributes: { PatientName: '山田^太郎' } };
    expect(() => buildResultSr({ identity, result: DEMO, decidedAt: DECIDED })).toThrow(InputError);
    expect(() => buildResultSr({ identity, result: DEMO, decidedAt: DECIDED })).toThrow(
      /identity\.PatientName/,
    );
    expect(() =>
      buildResultSr({
        identity: { ...UTF8_IDENTITY, studyInstanceUid: 'not-a-uid' },
        result: DEMO,
        decidedAt: DECIDED,
      }),
    ).toThrow(/identity\.studyInstanceUid/);
  });
});

describe('UIDs per run, and the predecessor', () => {
  const source = { sopClassUid: CT_IMAGE, sopInstanceUid: '1.2.826.0.1.3680043.8.498.99.9' };
  const rgb = overlay(160, 64);
  const run = (result: CovidctResult, decidedAt = DECIDED) => {
    const sr = buildResultSr({ identity: UTF8_IDENTITY, result, decidedAt });
    const sc = buildOverlaySecondaryCapture({
      identity: UTF8_IDENTITY,
      runDigest: sr.runDigest,
      source,
      rgb,
      width: 160,
      height: 64,
      decidedAt,
    });
    return { sr, sc };
  };

  it('the same run gives the same UIDs and the same bytes', () => {
    const a = run(DEMO);
    const b = run({ ...DEMO, series: DEMO.series.map((s) => ({ ...s })) });
    expect(b.sr.sopInstanceUid).toBe(a.sr.sopInstanceUid);
    expect(b.sr.seriesInstanceUid).toBe(a.sr.seriesInstanceUid);
    expect(b.sc.sopInstanceUid).toBe(a.sc.sopInstanceUid);
    expect(Buffer.from(b.sr.bytes).equals(Buffer.from(a.sr.bytes))).toBe(true);
    expect(Buffer.from(b.sc.bytes).equals(Buffer.from(a.sc.bytes))).toBe(true);
    expect(a.sc.seriesInstanceUid).not.toBe(a.sr.seriesInstanceUid);
  });

  it('another run (other figures, another decision time, another study id) gets new UIDs', () => {
    const a = run(DEMO);
    const others = [
      run({ ...DEMO, covidCount: 6 }),
      run(DEMO, new Date(DECIDED.getTime() + 1000)),
      run({ ...DEMO, studyId: 'st-0009' }),
      run(FAILED),
    ];
    const uids = new Set(
      [a, ...others].flatMap((r) => [
        r.sr.sopInstanceUid,
        r.sr.seriesInstanceUid,
        r.sc.sopInstanceUid,
        r.sc.seriesInstanceUid,
      ]),
    );
    expect(uids.size).toBe(4 * 5);
  });

  it('a new run references the previous SR (Predecessor Documents Sequence) and the evidence', () => {
    const first = run(DEMO).sr;
    const second = buildResultSr({
      identity: UTF8_IDENTITY,
      result: { ...DEMO, studyId: 'st-0010' },
      decidedAt: DECIDED,
      predecessor: first,
      evidence: [1, 2].map((n) => ({
        studyInstanceUid: UTF8_IDENTITY.studyInstanceUid,
        seriesInstanceUid: '1.2.826.0.1.3680043.8.498.50',
        sopClassUid: CT_IMAGE,
        sopInstanceUid: `1.2.826.0.1.3680043.8.498.50.${n}`,
      })),
    });
    const { files, read } = writeAndRead(second);
    expect(dciodvfyErrors(files[0]!)).toEqual([]);
    expect(dsrdumpErrors(files[0]!)).toEqual([]);
    expect(read[0]!.predecessors).toEqual([
      {
        study: UTF8_IDENTITY.studyInstanceUid,
        series: first.seriesInstanceUid,
        sopClass: '1.2.840.10008.5.1.4.1.1.88.33',
        sop: first.sopInstanceUid,
      },
    ]);
    expect(read[0]!.sop).not.toBe(first.sopInstanceUid);
    // The CT images analysed, as Current Requested Procedure Evidence.
    expect(read[0]!.evidence?.map((e) => [e.series, e.sop])).toEqual([
      ['1.2.826.0.1.3680043.8.498.50', '1.2.826.0.1.3680043.8.498.50.1'],
      ['1.2.826.0.1.3680043.8.498.50', '1.2.826.0.1.3680043.8.498.50.2'],
    ]);
  });
});
