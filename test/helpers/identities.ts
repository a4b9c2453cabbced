/**
 * Study identities as hospitals write them, for the tests of what is re-identified on site: one in
 * ISO_IR 192 (UTF-8), one in ISO 2022 IR 87 (PS3.5 H.3.1's Japanese example), byte for byte.
 */
import type { StudyIdentity } from '../../core/dicom/result-objects.js';

/** Text as Latin-1 bytes. */
export const latin1 = (s: string) => new Uint8Array(Buffer.from(s, 'latin1'));
/** Text as UTF-8 bytes. */
export const utf8 = (s: string) => new Uint8Array(Buffer.from(s, 'utf8'));

/** PS3.5 H.3.1's example name: romaji, then kanji and kana behind ISO 2022 escape sequences. */
export const JIS_NAME = latin1(
  'Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B',
);

/** A study's identity as the hospital wrote it, in ISO_IR 192 (UTF-8). */
export const UTF8_IDENTITY: StudyIdentity = {
  studyInstanceUid: '1.2.826.0.1.3680043.8.498.11',
  specificCharacterSet: 'ISO_IR 192',
  attributes: {
    PatientName: utf8('Müller^Jürgen=王^小東'),
    PatientID: 'PID-0001',
    IssuerOfPatientID: 'Hôpital Test',
    PatientBirthDate: '19700101',
    PatientSex: 'M',
    AccessionNumber: 'ACC42',
    StudyID: 'S7',
    StudyDate: '20261204',
    StudyTime: '101500',
    ReferringPhysicianName: utf8('Ødegård^Åse'),
  },
};

/** A study's identity in ISO 2022 IR 87 (Japanese, PS3.5 H.3.1). */
export const JIS_IDENTITY: StudyIdentity = {
  studyInstanceUid: '1.2.826.0.1.3680043.8.498.12',
  specificCharacterSet: '\\ISO 2022 IR 87',
  attributes: {
    PatientName: JIS_NAME,
    PatientID: 'JP-77',
    PatientBirthDate: '19650505',
    PatientSex: 'F',
    StudyDate: '20261203',
    StudyTime: '0930',
    ReferringPhysicianName: latin1('Suzuki^Hanako=\x1b$BNkLZ\x1b(B^\x1b$B2Z;R\x1b(B'),
  },
};
