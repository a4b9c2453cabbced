/**
 * PS3.15 Table E.1-1's Basic Profile as data (core/dicom/profile.ts): every row of the source with
 * its edition, choices resolved by what the CT image IOD needs, names on one line; and which CT
 * instances are report or screen pages (core/dicom/deidentify.ts).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { inspectDicom, reportPageReason } from '../core/dicom/deidentify.js';
import {
  CT_IMAGE_STORAGE_UID,
  PROFILE_ATTRIBUTES,
  PROFILE_EDITION,
  profileAttribute,
  resolveAction,
} from '../core/dicom/profile.js';
import { EXPLICIT_VR_LE } from '../core/dicom/syntax.js';
import { plantedMeta } from './helpers/deid-data-set.js';
import { encodeFile, tag } from './helpers/dicom-builder.js';

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
