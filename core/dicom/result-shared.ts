/**
 * What the result SR and the overlay Secondary Captures (result-objects.ts) share: the study's identity
 * elements as the original's bytes, the run digest their UIDs derive from, the Patient / General Study /
 * SOP Common modules, and writing one object as a Part 10 file.
 */
import { createHash } from 'node:crypto';
import { InputError } from '../errors.js';
import { COVIDCT_IMPLEMENTATION_UID, COVIDCT_IMPLEMENTATION_VERSION } from './encode.js';
import {
  type CovidctResult,
  IDENTITY_ATTRIBUTES,
  type IdentityKeyword,
  type StudyIdentity,
  type WrittenObject,
} from './result-model.js';
import { type RawElement, writePart10 } from './write-dataset.js';

/** Whether the character set is UTF-8 (ISO_IR 192) rather than one where only ASCII is safe to generate. */
export function isUtf8(identity: StudyIdentity): boolean {
  return (identity.specificCharacterSet ?? '').split('\\').some((v) => v.trim() === 'ISO_IR 192');
}

/**
 * covidct's own text in the object's character set: dcmjs writes UTF-8, which is right under
 * ISO_IR 192 and for ASCII; under any other set a non-ASCII character becomes "?" rather than
 * bytes the set does not define.
 */
export function ownText(identity: StudyIdentity, text: string): string {
  return isUtf8(identity) ? text : text.replace(/[^\x20-\x7e]/g, '?');
}

/** The identity as raw elements: SpecificCharacterSet and every attribute given or of Type 2. */
export function identityElements(identity: StudyIdentity): RawElement[] {
  const utf8 = isUtf8(identity);
  const out: RawElement[] = [];
  const charset = identity.specificCharacterSet ?? '';
  if (charset !== '') {
    out.push({ tag: 0x00080005, vr: 'CS', value: new TextEncoder().encode(charset) });
  }
  for (const [keyword, spec] of Object.entries(IDENTITY_ATTRIBUTES) as [
    IdentityKeyword,
    (typeof IDENTITY_ATTRIBUTES)[IdentityKeyword],
  ][]) {
    const given = identity.attributes[keyword];
    if (given === undefined && spec.type === 3) continue;
    let value: Uint8Array;
    if (given === undefined) value = new Uint8Array(0);
    else if (typeof given === 'string') {
      if (!utf8 && /[^\x20-\x7e]/.test(given)) {
        throw new InputError(
          `identity.${keyword}`,
          `text outside ASCII under SpecificCharacterSet "${charset}": pass the original value bytes`,
        );
      }
      value = new TextEncoder().encode(given);
    } else value = given;
    if (value.length > 0xfffe) throw new InputError(`identity.${keyword}`, 'value longer than 65534 bytes');
    out.push({ tag: spec.tag, vr: spec.vr, value });
  }
  return out;
}

/** Recursively sorted JSON, so equal content hashes equally whatever the key order. */
export function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** What of a result the SR states (and so what identifies a run). */
export function statedContent(result: CovidctResult): unknown {
  if (result.status === 'FAILED') {
    return {
      status: result.status,
      studyId: result.studyId,
      reason: result.reason,
      model: result.model,
      intendedUse: result.intendedUse,
    };
  }
  return {
    status: result.status,
    studyId: result.studyId,
    decision: result.decision,
    covidFraction: result.covidFraction,
    covidCount: result.covidCount,
    classifiedCount: result.classifiedCount,
    selectedCount: result.selectedCount,
    failedCount: result.failedCount,
    threshold: result.threshold,
    model: result.model,
    intendedUse: result.intendedUse,
    series: result.series.map((s) => ({
      id: s.id,
      status: s.status,
      reason: s.reason,
      selectionThreshold: s.selectionThreshold,
      selectedCount: s.selectedCount,
      covidCount: s.covidCount,
      classifiedCount: s.classifiedCount,
      covidFraction: s.covidFraction,
      decision: s.decision,
    })),
  };
}

/**
 * The digest that names a run: SHA-256 (hex) of the study UID, the decision time and what the SR
 * states. The same run gives the same digest, so the same result UIDs; any other content another.
 */
export function resultRunDigest(studyInstanceUid: string, result: CovidctResult, decidedAt: Date): string {
  return createHash('sha256')
    .update(
      canonical({ studyInstanceUid, decidedAt: decidedAt.toISOString(), result: statedContent(result) }),
    )
    .digest('hex');
}

/** DICOM DA and TM (UTC) of `date`. */
export function dateTime(date: Date): { date: string; time: string } {
  const iso = date.toISOString();
  return { date: iso.slice(0, 10).replace(/-/g, ''), time: iso.slice(11, 19).replace(/:/g, '') };
}

/** A number as a DS value (at most 16 characters, no exponent for the values used here). */
export function ds(value: number): string {
  for (let digits = 10; digits > 1; digits--) {
    const text = String(Number(value.toPrecision(digits)));
    if (text.length <= 16 && !/e/i.test(text)) return text;
  }
  throw new RangeError(`${value} does not fit a DS value`);
}

export type Item = Record<string, unknown>;

/** Patient, General Study, SOP Common and equipment attributes both objects share. */
export function common(
  identity: StudyIdentity,
  sopClassUid: string,
  sopInstanceUid: string,
  decidedAt: Date,
): Item {
  const { date, time } = dateTime(decidedAt);
  return {
    SOPClassUID: sopClassUid,
    SOPInstanceUID: sopInstanceUid,
    StudyInstanceUID: identity.studyInstanceUid,
    InstanceCreationDate: date,
    InstanceCreationTime: time,
    TimezoneOffsetFromUTC: '+0000',
    ContentDate: date,
    ContentTime: time,
    Manufacturer: 'covidct',
    SoftwareVersions: COVIDCT_IMPLEMENTATION_VERSION,
  };
}

export function requireUid(field: string, uid: string): void {
  if (!/^[0-9]+(\.[0-9]+)*$/.test(uid) || uid.length > 64) {
    throw new InputError(
      field,
      `expected a DICOM UID (digits and dots, at most 64 characters), got ${JSON.stringify(uid)}`,
    );
  }
}

/** One result object as a Part 10 file with covidct's file meta and the study's identity elements. */
export function writeObject(
  sopClassUid: string,
  sopInstanceUid: string,
  seriesInstanceUid: string,
  dataset: Parameters<typeof writePart10>[1],
  identity: StudyIdentity,
): WrittenObject {
  const bytes = writePart10(
    {
      sopClassUid,
      sopInstanceUid,
      implementationClassUid: COVIDCT_IMPLEMENTATION_UID,
      implementationVersionName: COVIDCT_IMPLEMENTATION_VERSION,
    },
    dataset,
    identityElements(identity),
  );
  return {
    bytes,
    studyInstanceUid: identity.studyInstanceUid,
    seriesInstanceUid,
    sopClassUid,
    sopInstanceUid,
  };
}
