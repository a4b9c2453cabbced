/**
 * Write a DICOM Part 10 file (explicit VR little endian) from a dcmjs naturalized data set plus
 * elements given as raw value bytes.
 *
 * Why raw elements: dcmjs 0.50 writes every text value as UTF-8 whatever SpecificCharacterSet says,
 * so a patient name in ISO 2022 IR 87 (JIS X 0208 behind escape sequences) or ISO_IR 100 cannot go
 * through it byte-exact. The identity a result carries back into the hospital's study is copied
 * from the original instance as bytes, and written here element by element, in tag order with
 * what dcmjs writes (file meta, codes, sequences, pixel data).
 */
import dcmjs from 'dcmjs';
import { concatBytes, EXPLICIT_VR_LITTLE_ENDIAN, encodeElement } from './encode.js';

/** An element written from its value bytes as they are (top level only, short-length VRs). */
export interface RawElement {
  /** Group and element, e.g. 0x00100010. */
  readonly tag: number;
  /** A VR with a 16-bit length field in explicit VR: AE AS CS DA DS DT IS LO LT PN SH ST TM UI. */
  readonly vr: string;
  /** The value bytes; padded here to even length (space, or NUL for UI). */
  readonly value: Uint8Array;
}

const SHORT_VRS = new Set([
  'AE',
  'AS',
  'CS',
  'DA',
  'DS',
  'DT',
  'IS',
  'LO',
  'LT',
  'PN',
  'SH',
  'ST',
  'TM',
  'UI',
]);

/** The 8-hex-digit key dcmjs uses for `tag`. */
function tagKey(tag: number): string {
  return tag.toString(16).toUpperCase().padStart(8, '0');
}

function encodeRaw(element: RawElement): Uint8Array {
  if (!SHORT_VRS.has(element.vr)) throw new RangeError(`raw element VR ${element.vr} is not supported`);
  const pad = element.value.length % 2 === 1 ? 1 : 0;
  const length = element.value.length + pad;
  if (length > 0xfffe)
    throw new RangeError(`raw element ${tagKey(element.tag)} is ${length} bytes, at most 65534`);
  const value = new Uint8Array(length);
  value.set(element.value);
  if (pad === 1) value[element.value.length] = element.vr === 'UI' ? 0 : 0x20;
  return encodeElement(element.tag, element.vr, value, { little: true, explicit: true });
}

/**
 * The Part 10 bytes: preamble, "DICM", file meta (dcmjs adds the group length), then `dataset`
 * (naturalized keywords, as dcmjs's `denaturalizeDataset` takes them) and `raw` merged in tag order.
 * A tag in both is an error (one source of truth per element).
 */
export function writePart10(
  meta: {
    readonly sopClassUid: string;
    readonly sopInstanceUid: string;
    readonly implementationClassUid: string;
    readonly implementationVersionName: string;
  },
  dataset: Record<string, unknown>,
  raw: readonly RawElement[],
): Uint8Array {
  const { DicomDict, DicomMessage, DicomMetaDictionary, WriteBufferStream } = dcmjs.data;
  const metaDict = DicomMetaDictionary.denaturalizeDataset({
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: meta.sopClassUid,
    MediaStorageSOPInstanceUID: meta.sopInstanceUid,
    TransferSyntaxUID: EXPLICIT_VR_LITTLE_ENDIAN,
    ImplementationClassUID: meta.implementationClassUid,
    ImplementationVersionName: meta.implementationVersionName,
    _vrMap: {},
  });
  const head = new Uint8Array(new DicomDict(metaDict).write());
  const body = DicomMetaDictionary.denaturalizeDataset(dataset);
  const parts = new Map<string, () => Uint8Array>();
  for (const [key, element] of Object.entries(body)) {
    parts.set(key, () => {
      const stream = new WriteBufferStream(1024, true);
      DicomMessage.write({ [key]: element }, stream, EXPLICIT_VR_LITTLE_ENDIAN, {});
      return new Uint8Array(stream.getBuffer());
    });
  }
  for (const element of raw) {
    const key = tagKey(element.tag);
    if (parts.has(key)) throw new RangeError(`element ${key} given both raw and as a dcmjs value`);
    parts.set(key, () => encodeRaw(element));
  }
  return concatBytes([head, ...[...parts.keys()].sort().map((key) => parts.get(key)!())]);
}
