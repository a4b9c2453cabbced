/**
 * Recognising DICOM bytes cheaply, with or without the 128-byte preamble and file meta.
 */

/** How the first data element of a file without a preamble is encoded. */
export interface LeadingEncoding {
  /** The file starts with file meta (group 0002), which is always explicit VR little endian. */
  readonly meta: boolean;
  readonly littleEndian: boolean;
  readonly explicitVr: boolean;
}

// Every VR of DICOM PS3.5 6.2, as the two ASCII bytes read little endian.
const VRS = new Set(
  'AE AS AT CS DA DS DT FL FD IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV'
    .split(' ')
    .map((vr) => vr.charCodeAt(0) | (vr.charCodeAt(1) << 8)),
);

/** True when the file has the DICM marker after a 128-byte preamble. */
export function hasPreamble(bytes: Uint8Array): boolean {
  return (
    bytes.length >= 132 &&
    bytes[128] === 0x44 &&
    bytes[129] === 0x49 &&
    bytes[130] === 0x43 &&
    bytes[131] === 0x4d
  );
}

/**
 * The encoding of a file that starts straight with a data element of group 0002 (file meta) or
 * 0008 (the first group of every image), or undefined when the first 8 bytes are no such element.
 */
export function leadingEncoding(bytes: Uint8Array): LeadingEncoding | undefined {
  if (bytes.length < 8) return undefined;
  const b0 = bytes[0]!;
  const b1 = bytes[1]!;
  const explicitVr = VRS.has(bytes[4]! | (bytes[5]! << 8));
  if (b0 === 0x02 && b1 === 0x00)
    return explicitVr ? { meta: true, littleEndian: true, explicitVr } : undefined;
  const littleEndian = b0 === 0x08 && b1 === 0x00;
  const bigEndian = b0 === 0x00 && b1 === 0x08;
  if (!littleEndian && !bigEndian) return undefined;
  if (!explicitVr) {
    // An implicit element has a 32-bit length here: it must fit the file (or be undefined, 0xFFFFFFFF).
    const view = new DataView(bytes.buffer, bytes.byteOffset, 8);
    const length = view.getUint32(4, littleEndian);
    if (length !== 0xffffffff && length > bytes.length - 8) return undefined;
  }
  return { meta: false, littleEndian, explicitVr };
}

/**
 * A cheap test for DICOM bytes: "DICM" at offset 128, or, for files without the preamble and file
 * meta, a plausible first element of group 0x0002 or 0x0008 in little or big endian, explicit or
 * implicit VR. It reads at most the first 132 bytes.
 */
export function isDicom(bytes: Uint8Array): boolean {
  return hasPreamble(bytes) || leadingEncoding(bytes) !== undefined;
}
