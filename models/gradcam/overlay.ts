/**
 * Grad-CAM overlays: the slice in the lung window as grey, a turbo-coloured heatmap blended over it
 * with opacity proportional to the heat (cold areas show the CT unchanged), as a PNG (pure-JS pngjs).
 */
import { PNG } from 'pngjs';
import { RAW_HU_OFFSET } from '../../core/slice.js';

/** A CT display window in Hounsfield units. */
export interface CtWindow {
  /** Window centre (level), HU. */
  readonly center: number;
  /** Window width, HU. */
  readonly width: number;
}

/** The lung window the dataset's DICOM headers give: centre −600 HU, width 1200 HU. */
export const LUNG_WINDOW: CtWindow = { center: -600, width: 1200 };

/**
 * One raw value (HU + 1024) through a display window: 0 at and below `center − width/2`, 1 at and
 * above `center + width/2`, linear between.
 */
export function windowRaw(raw: number, window: CtWindow = LUNG_WINDOW): number {
  const v = (raw - RAW_HU_OFFSET - (window.center - window.width / 2)) / window.width;
  return clamp01(v);
}

/** Clamp to 0…1; NaN becomes 0 (a NaN heat value must not poison a pixel). */
function clamp01(v: number): number {
  return Number.isNaN(v) ? 0 : Math.min(1, Math.max(0, v));
}

/** A whole raw slice through a display window as 8-bit grey (round(255 × {@link windowRaw})). */
export function windowToGrey(pixels: Uint16Array, window: CtWindow = LUNG_WINDOW): Uint8Array {
  const grey = new Uint8Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) grey[i] = Math.round(255 * windowRaw(pixels[i]!, window));
  return grey;
}

/**
 * The turbo colormap (Google's polynomial approximation, Mikhailov 2019) at `t` in 0…1, as RGB 0…1:
 * dark blue → cyan → green → yellow → red, perceptually smoother than jet.
 */
export function turbo(t: number): [number, number, number] {
  const x = clamp01(t);
  const r =
    0.13572138 +
    x * (4.6153926 + x * (-42.66032258 + x * (132.13108234 + x * (-152.94239396 + x * 59.28637943))));
  const g =
    0.09140261 + x * (2.19418839 + x * (4.84296658 + x * (-14.18503333 + x * (4.27729857 + x * 2.82956604))));
  const b =
    0.1066733 +
    x * (12.64194608 + x * (-60.58204836 + x * (110.36276771 + x * (-89.90310912 + x * 27.34824973))));
  return [clamp01(r), clamp01(g), clamp01(b)];
}

/** Options of {@link renderOverlayPng}. */
export interface OverlayOptions {
  /** Display window of the slice; default {@link LUNG_WINDOW}. */
  readonly window?: CtWindow;
  /** Opacity of the colour where the heat is 1 (it falls linearly to 0 with the heat); default 0.6. */
  readonly maxAlpha?: number;
}

/**
 * Blend `heatmap` (width × height values in 0…1, row-major) over the windowed slice, as RGB bytes
 * (interleaved, row-major). Each pixel: a = maxAlpha × heat, colour = (1 − a) × grey + a ×
 * turbo(heat), so where the heat is 0 the pixel is exactly the windowed grey.
 */
export function renderOverlayRgb(
  pixels: Uint16Array,
  width: number,
  height: number,
  heatmap: Float32Array,
  options: OverlayOptions = {},
): Uint8Array {
  const n = width * height;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`renderOverlay: bad size ${width}×${height}`);
  }
  if (pixels.length !== n || heatmap.length !== n) {
    throw new RangeError(
      `renderOverlay: ${width}×${height} needs ${n} pixels and heat values, got ${pixels.length} and ${heatmap.length}`,
    );
  }
  const maxAlpha = options.maxAlpha ?? 0.6;
  const window = options.window ?? LUNG_WINDOW;
  // 256-entry colour table: the heat is shown at 8 bits anyway, and this avoids 3 polynomials per pixel.
  const lut = new Float32Array(256 * 3);
  for (let i = 0; i < 256; i++) lut.set(turbo(i / 255), i * 3);

  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const grey = 255 * windowRaw(pixels[i]!, window);
    const heat = clamp01(heatmap[i]!);
    const a = maxAlpha * heat;
    const k = Math.round(heat * 255) * 3;
    const o = i * 3;
    out[o] = Math.round((1 - a) * grey + a * 255 * lut[k]!);
    out[o + 1] = Math.round((1 - a) * grey + a * 255 * lut[k + 1]!);
    out[o + 2] = Math.round((1 - a) * grey + a * 255 * lut[k + 2]!);
  }
  return out;
}

/** {@link renderOverlayRgb} encoded as an RGB PNG. */
export function renderOverlayPng(
  pixels: Uint16Array,
  width: number,
  height: number,
  heatmap: Float32Array,
  options: OverlayOptions = {},
): Uint8Array {
  const rgb = renderOverlayRgb(pixels, width, height, heatmap, options);
  const png = new PNG({ width, height, colorType: 2, inputColorType: 6, inputHasAlpha: true });
  const out = png.data;
  for (let i = 0; i < width * height; i++) {
    out[i * 4] = rgb[i * 3]!;
    out[i * 4 + 1] = rgb[i * 3 + 1]!;
    out[i * 4 + 2] = rgb[i * 3 + 2]!;
    out[i * 4 + 3] = 255;
  }
  const encoded = PNG.sync.write(png, { colorType: 2, inputColorType: 6, inputHasAlpha: true });
  return new Uint8Array(encoded.buffer, encoded.byteOffset, encoded.byteLength);
}
