/**
 * The Grad-CAM overlays as Secondary Capture images (result-objects.ts), with the not-for-diagnostic
 * notice burned into every one.
 */
import { InputError } from '../errors.js';
import { deriveUid, isDicomImageSize } from './encode.js';
import { drawable, GLYPH_HEIGHT, rasterize, textWidth } from './font.js';
import {
  NOT_FOR_DIAGNOSTIC_USE,
  type OverlayInput,
  SECONDARY_CAPTURE_STORAGE,
  type WrittenObject,
} from './result-model.js';
import { common, type Item, requireUid, writeObject } from './result-shared.js';

/**
 * `rgb` with `text` burned into a black banner across the top: white 5×7 glyphs, scaled to about
 * 60 % of the width, wrapped at spaces when one line does not fit. Pixels outside the banner are unchanged.
 */
export function burnInNotice(rgb: Uint8Array, width: number, height: number, text: string): Uint8Array {
  if (!drawable(text))
    throw new RangeError(`burnInNotice: no glyph for some character of ${JSON.stringify(text)}`);
  const margin = 2;
  const fits = (line: string, scale: number) => textWidth(line) * scale + 2 * margin <= width;
  const lines: string[] = [];
  for (const word of text.split(' ')) {
    const last = lines.at(-1);
    if (last !== undefined && fits(`${last} ${word}`, 1)) lines[lines.length - 1] = `${last} ${word}`;
    else lines.push(word);
  }
  if (!lines.every((l) => fits(l, 1))) {
    throw new RangeError(`burnInNotice: a ${width}-pixel wide image cannot hold ${JSON.stringify(text)}`);
  }
  const widest = Math.max(...lines.map(textWidth));
  // About 60 % of the width: legible on a 512-pixel slice (scale 2) without hiding much of it.
  const scale = Math.max(1, Math.floor((0.6 * (width - 2 * margin)) / widest));
  const lineHeight = (GLYPH_HEIGHT + 2) * scale;
  const bannerHeight = lines.length * lineHeight + 2 * margin;
  if (bannerHeight > height) {
    throw new RangeError(`burnInNotice: a ${height}-pixel high image cannot hold ${JSON.stringify(text)}`);
  }
  const out = Uint8Array.from(rgb);
  out.fill(0, 0, bannerHeight * width * 3);
  lines.forEach((line, row) => {
    const x0 = Math.floor((width - textWidth(line) * scale) / 2);
    const y0 = margin + row * lineHeight + scale;
    rasterize(line, (gx, gy) => {
      for (let dy = 0; dy < scale; dy++) {
        for (let dx = 0; dx < scale; dx++) {
          const o = ((y0 + gy * scale + dy) * width + x0 + gx * scale + dx) * 3;
          out[o] = 255;
          out[o + 1] = 255;
          out[o + 2] = 255;
        }
      }
    });
  });
  return out;
}

/**
 * A Secondary Capture image (RGB, 8 bits) of one Grad-CAM overlay with "NOT FOR DIAGNOSTIC USE"
 * burned into its pixels (BurnedInAnnotation YES), referencing the original CT image it was
 * computed on (Source Image Sequence), in the original study under its identity. UIDs derive
 * from the study, the run and the source image.
 */
export function buildOverlaySecondaryCapture(input: OverlayInput): WrittenObject {
  const { identity, width, height } = input;
  requireUid('identity.studyInstanceUid', identity.studyInstanceUid);
  requireUid('source.sopClassUid', input.source.sopClassUid);
  requireUid('source.sopInstanceUid', input.source.sopInstanceUid);
  if (!/^[0-9a-f]{64}$/.test(input.runDigest)) {
    throw new InputError('runDigest', 'expected the 64 hex digits resultRunDigest gives');
  }
  if (!isDicomImageSize(width, height)) {
    throw new InputError('overlay', `bad size ${width}×${height}`);
  }
  if (input.rgb.length !== width * height * 3) {
    throw new InputError(
      'overlay',
      `${width}×${height} RGB needs ${width * height * 3} bytes, got ${input.rgb.length}`,
    );
  }
  const seriesInstanceUid = deriveUid(
    'covidct-result',
    identity.studyInstanceUid,
    input.runDigest,
    'overlay-series',
  );
  const sopInstanceUid = deriveUid(
    'covidct-result',
    identity.studyInstanceUid,
    input.runDigest,
    'overlay',
    input.source.sopInstanceUid,
  );
  const pixels = burnInNotice(input.rgb, width, height, NOT_FOR_DIAGNOSTIC_USE);
  const padded = new Uint8Array(pixels.length + (pixels.length % 2));
  padded.set(pixels);
  const dataset: Item = {
    ...common(identity, SECONDARY_CAPTURE_STORAGE, sopInstanceUid, input.decidedAt),
    Modality: 'OT',
    ConversionType: 'WSD',
    SeriesInstanceUID: seriesInstanceUid,
    SeriesNumber: String(input.seriesNumber ?? 9902),
    SeriesDescription: 'covidct Grad-CAM overlay (NOT FOR DIAGNOSTIC USE)',
    InstanceNumber: String(input.instanceNumber ?? 1),
    PatientOrientation: '',
    // Laterality is Type 2C on a paired body part: the chest is not one, which dciodvfy reads from here.
    BodyPartExamined: 'CHEST',
    ImageType: ['DERIVED', 'SECONDARY'],
    DerivationDescription: 'covidct Grad-CAM heatmap blended over the lung-windowed slice',
    BurnedInAnnotation: 'YES',
    RecognizableVisualFeatures: 'NO',
    LossyImageCompression: '00',
    SourceImageSequence: [
      {
        ReferencedSOPClassUID: input.source.sopClassUid,
        ReferencedSOPInstanceUID: input.source.sopInstanceUid,
      },
    ],
    SamplesPerPixel: 3,
    PhotometricInterpretation: 'RGB',
    PlanarConfiguration: 0,
    Rows: height,
    Columns: width,
    BitsAllocated: 8,
    BitsStored: 8,
    HighBit: 7,
    PixelRepresentation: 0,
    PixelData: [padded.buffer],
    _vrMap: { PixelData: 'OB' },
  };
  return writeObject(SECONDARY_CAPTURE_STORAGE, sopInstanceUid, seriesInstanceUid, dataset, identity);
}
