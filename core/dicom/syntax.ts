/**
 * DICOM transfer syntaxes covidct knows by name, and how their pixel data is decoded.
 */

/** How a transfer syntax's pixel data is read. */
export type PixelEncoding =
  | 'native-le'
  | 'native-be'
  | 'rle'
  | 'jpeg-lossless'
  | 'jpeg-ls'
  | 'jpeg2000'
  | 'jpeg-lossy'
  | 'unsupported';

/** The UIDs covidct branches on. */
export const IMPLICIT_VR_LE = '1.2.840.10008.1.2';
export const EXPLICIT_VR_LE = '1.2.840.10008.1.2.1';
export const DEFLATED_EXPLICIT_VR_LE = '1.2.840.10008.1.2.1.99';
export const EXPLICIT_VR_BE = '1.2.840.10008.1.2.2';

interface SyntaxInfo {
  readonly name: string;
  readonly encoding: PixelEncoding;
}

// Names as in DICOM PS3.6 Table A-1, shortened where the standard's are long.
const SYNTAXES: Readonly<Record<string, SyntaxInfo>> = {
  [IMPLICIT_VR_LE]: { name: 'Implicit VR Little Endian', encoding: 'native-le' },
  [EXPLICIT_VR_LE]: { name: 'Explicit VR Little Endian', encoding: 'native-le' },
  [DEFLATED_EXPLICIT_VR_LE]: { name: 'Deflated Explicit VR Little Endian', encoding: 'native-le' },
  [EXPLICIT_VR_BE]: { name: 'Explicit VR Big Endian', encoding: 'native-be' },
  '1.2.840.10008.1.2.5': { name: 'RLE Lossless', encoding: 'rle' },
  '1.2.840.10008.1.2.4.50': { name: 'JPEG Baseline (Process 1)', encoding: 'jpeg-lossy' },
  '1.2.840.10008.1.2.4.51': { name: 'JPEG Extended (Process 2 & 4)', encoding: 'jpeg-lossy' },
  '1.2.840.10008.1.2.4.57': { name: 'JPEG Lossless (Process 14)', encoding: 'jpeg-lossless' },
  '1.2.840.10008.1.2.4.70': {
    name: 'JPEG Lossless (Process 14, Selection Value 1)',
    encoding: 'jpeg-lossless',
  },
  '1.2.840.10008.1.2.4.80': { name: 'JPEG-LS Lossless', encoding: 'jpeg-ls' },
  '1.2.840.10008.1.2.4.81': { name: 'JPEG-LS Near-Lossless', encoding: 'jpeg-ls' },
  '1.2.840.10008.1.2.4.90': { name: 'JPEG 2000 (Lossless Only)', encoding: 'jpeg2000' },
  '1.2.840.10008.1.2.4.91': { name: 'JPEG 2000', encoding: 'jpeg2000' },
  '1.2.840.10008.1.2.4.92': {
    name: 'JPEG 2000 Part 2 Multi-component (Lossless Only)',
    encoding: 'unsupported',
  },
  '1.2.840.10008.1.2.4.93': { name: 'JPEG 2000 Part 2 Multi-component', encoding: 'unsupported' },
  '1.2.840.10008.1.2.4.94': { name: 'JPIP Referenced', encoding: 'unsupported' },
  '1.2.840.10008.1.2.4.95': { name: 'JPIP Referenced Deflate', encoding: 'unsupported' },
  '1.2.840.10008.1.2.4.100': { name: 'MPEG2 Main Profile / Main Level', encoding: 'unsupported' },
  '1.2.840.10008.1.2.4.101': { name: 'MPEG2 Main Profile / High Level', encoding: 'unsupported' },
  '1.2.840.10008.1.2.4.102': { name: 'MPEG-4 AVC/H.264 High Profile', encoding: 'unsupported' },
  '1.2.840.10008.1.2.4.103': { name: 'MPEG-4 AVC/H.264 BD-compatible', encoding: 'unsupported' },
  '1.2.840.10008.1.2.4.110': { name: 'JPEG XL Lossless', encoding: 'unsupported' },
  '1.2.840.10008.1.2.4.111': { name: 'JPEG XL JPEG Recompression', encoding: 'unsupported' },
  '1.2.840.10008.1.2.4.112': { name: 'JPEG XL', encoding: 'unsupported' },
  '1.2.840.10008.1.2.4.201': { name: 'High-Throughput JPEG 2000 (Lossless Only)', encoding: 'unsupported' },
  '1.2.840.10008.1.2.4.202': {
    name: 'High-Throughput JPEG 2000 with RPCL Options (Lossless Only)',
    encoding: 'unsupported',
  },
  '1.2.840.10008.1.2.4.203': { name: 'High-Throughput JPEG 2000', encoding: 'unsupported' },
  '1.2.840.10008.1.2.8.1': { name: 'Deflated Image Frame Compression', encoding: 'unsupported' },
};

/** The syntax's name and pixel encoding; unknown UIDs are unsupported and named by their UID. */
export function transferSyntax(uid: string): SyntaxInfo {
  return SYNTAXES[uid] ?? { name: 'unknown transfer syntax', encoding: 'unsupported' };
}

/** `Name (UID)`, as messages show a transfer syntax. */
export function describeSyntax(uid: string): string {
  return `${transferSyntax(uid).name} (${uid})`;
}
