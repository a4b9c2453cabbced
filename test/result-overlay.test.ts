/**
 * covidct's Grad-CAM overlay as a DICOM Secondary Capture (core/dicom/result-objects.ts): dciodvfy
 * finds no error, RGB with burned-in annotation referencing its source image, "NOT FOR DIAGNOSTIC
 * USE" in its pixels and the overlay unchanged elsewhere.
 */
import { describe, expect, it } from 'vitest';
import { rasterize } from '../core/dicom/font.js';
import {
  buildOverlaySecondaryCapture,
  burnInNotice,
  NOT_FOR_DIAGNOSTIC_USE,
  resultRunDigest,
} from '../core/dicom/result-objects.js';
import {
  CT_IMAGE,
  DECIDED,
  DEMO,
  dciodvfyErrors,
  overlay,
  type Read,
  UTF8_IDENTITY,
  writeAndRead,
} from './helpers/result-objects.js';

describe('Grad-CAM overlay as Secondary Capture', () => {
  // 448 wide: the notice drawn at scale 2.
  const width = 448;
  const height = 160;
  const rgb = overlay(width, height);
  const runDigest = resultRunDigest(UTF8_IDENTITY.studyInstanceUid, DEMO, DECIDED);
  const source = { sopClassUid: CT_IMAGE, sopInstanceUid: '1.2.826.0.1.3680043.8.498.99.7' };
  const sc = buildOverlaySecondaryCapture({
    identity: UTF8_IDENTITY,
    runDigest,
    source,
    rgb,
    width,
    height,
    decidedAt: DECIDED,
  });
  const narrow = overlay(64, 64);
  const small = buildOverlaySecondaryCapture({
    identity: UTF8_IDENTITY,
    runDigest,
    source: { ...source, sopInstanceUid: '1.2.826.0.1.3680043.8.498.99.8' },
    rgb: narrow,
    width: 64,
    height: 64,
    decidedAt: DECIDED,
    instanceNumber: 2,
  });
  const { files, read } = writeAndRead(sc, small);
  const [s, t] = read as [Read, Read];

  it('passes dciodvfy without errors', () => {
    for (const file of files) expect(dciodvfyErrors(file), file).toEqual([]);
  });

  it('is an RGB Secondary Capture with burned-in annotation, referencing its source image', () => {
    expect(s.sopClass).toBe('1.2.840.10008.5.1.4.1.1.7');
    expect(s.burnedIn).toBe('YES');
    expect(s.photometric).toBe('RGB');
    expect(s.shape).toEqual([height, width, 3]);
    expect(s.sources).toEqual([{ sopClass: CT_IMAGE, sop: source.sopInstanceUid }]);
    expect(s.study).toBe(UTF8_IDENTITY.studyInstanceUid);
    expect(s.seriesDescription).toMatch(/NOT FOR DIAGNOSTIC USE/);
    // One series per run; one instance per source image.
    expect(t.series).toBe(s.series);
    expect(t.sop).not.toBe(s.sop);
  });

  it('carries "NOT FOR DIAGNOSTIC USE" in its pixels, and the overlay unchanged elsewhere', () => {
    const check = (r: Read, input: Uint8Array, w: number, lines: string[]) => {
      const pixels = Buffer.from(r.pixels!, 'hex');
      expect(pixels.length).toBe(input.length);
      const changedRows = new Set<number>();
      let white = 0;
      for (let i = 0; i < input.length; i += 3) {
        if (pixels[i] !== input[i] || pixels[i + 1] !== input[i + 1] || pixels[i + 2] !== input[i + 2]) {
          changedRows.add(Math.floor(i / 3 / w));
        }
        if (pixels[i] === 255 && pixels[i + 1] === 255 && pixels[i + 2] === 255) white++;
      }
      // Only a banner across the top changes, and the render without text has no white there.
      const banner = Math.max(...changedRows) + 1;
      expect([...changedRows].sort((a, b) => a - b)).toEqual([...Array(banner).keys()]);
      expect(banner).toBeLessThan(input.length / 3 / w / 2);
      // White pixels are exactly the glyphs of the notice, each font pixel a scale × scale block.
      let fontPixels = 0;
      for (const line of lines) rasterize(line, () => fontPixels++);
      const scale = Math.sqrt(white / fontPixels);
      expect(Number.isInteger(scale) && scale >= 1, `white ${white}, font pixels ${fontPixels}`).toBe(true);
    };
    check(s, rgb, width, [NOT_FOR_DIAGNOSTIC_USE]);
    // 64 pixels wide: wrapped onto three lines.
    check(t, narrow, 64, ['NOT FOR', 'DIAGNOSTIC', 'USE']);
    expect(burnInNotice(rgb, width, height, NOT_FOR_DIAGNOSTIC_USE)).toEqual(
      new Uint8Array(Buffer.from(s.pixels!, 'hex')),
    );
  });
});
