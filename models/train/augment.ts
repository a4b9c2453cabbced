/**
 * The authors' augmentation (Keras `ImageDataGenerator(horizontal_flip=True, vertical_flip=True,
 * zoom_range=0.05, rotation_range=360, width_shift_range=0.05, height_shift_range=0.05,
 * shear_range=0.05)`) on raw CT values: one random affine per image, applied as ONE inverse-affine
 * resampling of the Float32/Uint16 pixels, with Keras's defaults of bilinear interpolation
 * (`interpolation_order=1`) and `fill_mode='nearest'` (edges repeat). Nothing is scaled or
 * quantised to 8 bits: the output is float32 raw values (HU + 1024), as the paper insists.
 *
 * Differences from Keras, on purpose: rotations turn about the true image centre `(n − 1) / 2`
 * (Keras's `transform_matrix_offset_center` uses `n / 2 + 0.5`, half a pixel off, so its 90° turn
 * is not `rot90`), and flips are folded into the same resampling (Keras flips after it; the
 * result is the same). Parameters are drawn in Keras's order from a seeded {@link TrainRng}.
 */
import type { TrainRng } from './random.js';

/** The augmentation ranges, in Keras's units. */
export interface AugmentConfig {
  readonly horizontalFlip: boolean;
  readonly verticalFlip: boolean;
  /** Degrees: rotation drawn from U(−r, r). */
  readonly rotationRange: number;
  /** Zoom drawn per axis from U(1 − z, 1 + z). */
  readonly zoomRange: number;
  /** Fraction of the width (columns), drawn from U(−s, s). */
  readonly widthShiftRange: number;
  /** Fraction of the height (rows). */
  readonly heightShiftRange: number;
  /** Shear angle in DEGREES (Keras's unit: the authors' 0.05 is a twentieth of a degree). */
  readonly shearRange: number;
}

/** The authors' settings. */
export const PAPER_AUGMENTATION: AugmentConfig = {
  horizontalFlip: true,
  verticalFlip: true,
  rotationRange: 360,
  zoomRange: 0.05,
  widthShiftRange: 0.05,
  heightShiftRange: 0.05,
  shearRange: 0.05,
};

/** No augmentation. */
export const NO_AUGMENTATION: AugmentConfig = {
  horizontalFlip: false,
  verticalFlip: false,
  rotationRange: 0,
  zoomRange: 0,
  widthShiftRange: 0,
  heightShiftRange: 0,
  shearRange: 0,
};

/** One image's transform, in Keras's terms (`get_random_transform`). */
export interface AffineParams {
  /** Rotation in degrees. */
  readonly theta: number;
  /** Shift along rows, in pixels (Keras's `tx`). */
  readonly tx: number;
  /** Shift along columns, in pixels (`ty`). */
  readonly ty: number;
  /** Shear in degrees. */
  readonly shear: number;
  /** Zoom along rows (`zx`) and columns (`zy`); > 1 shows less of the image (samples farther out). */
  readonly zx: number;
  readonly zy: number;
  /** Mirror left–right (columns). */
  readonly flipHorizontal: boolean;
  /** Mirror top–bottom (rows). */
  readonly flipVertical: boolean;
}

/** The identity transform. */
export const IDENTITY: AffineParams = {
  theta: 0,
  tx: 0,
  ty: 0,
  shear: 0,
  zx: 1,
  zy: 1,
  flipHorizontal: false,
  flipVertical: false,
};

/** Draw one image's transform as Keras does, in Keras's order, for an image of `height × width`. */
export function randomAffine(
  rng: TrainRng,
  config: AugmentConfig,
  height: number,
  width: number,
): AffineParams {
  const u = (r: number) => (r ? rng.uniform(-r, r) : 0);
  const theta = u(config.rotationRange);
  const hs = config.heightShiftRange;
  const ws = config.widthShiftRange;
  const tx = u(hs) * (hs < 1 ? height : 1);
  const ty = u(ws) * (ws < 1 ? width : 1);
  const shear = u(config.shearRange);
  const z = config.zoomRange;
  const zx = z ? rng.uniform(1 - z, 1 + z) : 1;
  const zy = z ? rng.uniform(1 - z, 1 + z) : 1;
  const flipHorizontal = config.horizontalFlip ? rng.next() < 0.5 : false;
  const flipVertical = config.verticalFlip ? rng.next() < 0.5 : false;
  return { theta, tx, ty, shear, zx, zy, flipHorizontal, flipVertical };
}

/** A 2×3 map from output (row, col) to input (row, col): `in = [a b; d e]·out + [c; f]`. */
export interface InverseMap {
  readonly a: number;
  readonly b: number;
  readonly c: number;
  readonly d: number;
  readonly e: number;
  readonly f: number;
}

type M3 = readonly [number, number, number, number, number, number, number, number, number];

function mul(p: M3, q: M3): M3 {
  const r: number[] = [];
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++) {
      r.push(p[i * 3]! * q[j]! + p[i * 3 + 1]! * q[3 + j]! + p[i * 3 + 2]! * q[6 + j]!);
    }
  }
  return r as unknown as M3;
}

/** sin/cos with the quarter turns exact, so a 90° rotation resamples exactly onto the grid. */
function sinCos(degrees: number): [number, number] {
  const q = degrees / 90;
  if (Number.isInteger(q)) {
    const k = ((q % 4) + 4) % 4;
    return [[0, 1, 0, -1][k]!, [1, 0, -1, 0][k]!];
  }
  const r = (degrees * Math.PI) / 180;
  return [Math.sin(r), Math.cos(r)];
}

/**
 * The output→input map of a transform on a `height × width` image (Keras's `apply_affine_transform`
 * matrix, centred, with the flips composed in front).
 */
export function inverseMap(p: AffineParams, height: number, width: number): InverseMap {
  const [s, c] = sinCos(p.theta);
  let m: M3 = [c, -s, 0, s, c, 0, 0, 0, 1];
  m = mul(m, [1, 0, p.tx, 0, 1, p.ty, 0, 0, 1]);
  const [ss, sc] = sinCos(p.shear);
  m = mul(m, [1, -ss, 0, 0, sc, 0, 0, 0, 1]);
  m = mul(m, [p.zx, 0, 0, 0, p.zy, 0, 0, 0, 1]);
  const or = (height - 1) / 2;
  const oc = (width - 1) / 2;
  m = mul(mul([1, 0, or, 0, 1, oc, 0, 0, 1], m), [1, 0, -or, 0, 1, -oc, 0, 0, 1]);
  // Flips act on the output: output (r, c) shows the unflipped result at (H−1−r, ·) / (·, W−1−c).
  const flip: M3 = [
    p.flipVertical ? -1 : 1,
    0,
    p.flipVertical ? height - 1 : 0,
    0,
    p.flipHorizontal ? -1 : 1,
    p.flipHorizontal ? width - 1 : 0,
    0,
    0,
    1,
  ];
  m = mul(m, flip);
  return { a: m[0], b: m[1], c: m[2], d: m[3], e: m[4], f: m[5] };
}

/** Snap a coordinate that is within rounding of a whole pixel onto it (exact flips and quarter turns). */
function snap(v: number): number {
  const r = Math.round(v);
  return Math.abs(v - r) < 1e-9 ? r : v;
}

/**
 * Apply a transform to one single-channel image (`height × width`, row-major, raw values) with
 * bilinear interpolation and edge-repeating fill, into a new Float32Array (or `out`).
 */
export function applyAffine(
  pixels: Float32Array | Uint16Array,
  height: number,
  width: number,
  params: AffineParams,
  out: Float32Array = new Float32Array(height * width),
): Float32Array {
  if (pixels.length !== height * width) {
    throw new RangeError(`applyAffine: ${pixels.length} values are not ${height}×${width}`);
  }
  const { a, b, c, d, e, f } = inverseMap(params, height, width);
  const maxR = height - 1;
  const maxC = width - 1;
  for (let r = 0; r < height; r++) {
    for (let col = 0; col < width; col++) {
      // fill_mode 'nearest': clamping the sample point equals repeating the edge pixels.
      let sr = snap(a * r + b * col + c);
      let sc = snap(d * r + e * col + f);
      sr = Math.max(0, Math.min(sr, maxR));
      sc = Math.max(0, Math.min(sc, maxC));
      const r0 = Math.floor(sr);
      const c0 = Math.floor(sc);
      const fr = sr - r0;
      const fc = sc - c0;
      const r1 = fr > 0 ? r0 + 1 : r0;
      const c1 = fc > 0 ? c0 + 1 : c0;
      const top = pixels[r0 * width + c0]! * (1 - fc) + pixels[r0 * width + c1]! * fc;
      const bottom = pixels[r1 * width + c0]! * (1 - fc) + pixels[r1 * width + c1]! * fc;
      out[r * width + col] = top * (1 - fr) + bottom * fr;
    }
  }
  return out;
}

/**
 * Resize a single-channel image by area averaging (each output pixel the mean of the input area it
 * covers), into float32: the raw values are averaged, never rounded or rescaled. Same size copies.
 */
export function resizeArea(
  pixels: Float32Array | Uint16Array,
  height: number,
  width: number,
  outHeight: number,
  outWidth: number,
): Float32Array {
  if (pixels.length !== height * width) {
    throw new RangeError(`resizeArea: ${pixels.length} values are not ${height}×${width}`);
  }
  if (outHeight === height && outWidth === width) return Float32Array.from(pixels);
  const rows = areaWeights(height, outHeight);
  const cols = areaWeights(width, outWidth);
  // Columns first into a float64 scratch of height × outWidth, then rows.
  const tmp = new Float64Array(height * outWidth);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < outWidth; x++) {
      let sum = 0;
      for (const [i, w] of cols[x]!) sum += pixels[y * width + i]! * w;
      tmp[y * outWidth + x] = sum;
    }
  }
  const out = new Float32Array(outHeight * outWidth);
  for (let y = 0; y < outHeight; y++) {
    for (let x = 0; x < outWidth; x++) {
      let sum = 0;
      for (const [i, w] of rows[y]!) sum += tmp[i * outWidth + x]! * w;
      out[y * outWidth + x] = sum;
    }
  }
  return out;
}

/** For each output index, the input indexes it covers and their weights (summing to 1). */
function areaWeights(inSize: number, outSize: number): [number, number][][] {
  const scale = inSize / outSize;
  const out: [number, number][][] = [];
  for (let o = 0; o < outSize; o++) {
    const start = o * scale;
    const end = (o + 1) * scale;
    const list: [number, number][] = [];
    if (scale <= 1) {
      // Upscaling: nearest input pixel (area of one input pixel covers several outputs).
      list.push([Math.min(inSize - 1, Math.floor((o + 0.5) * scale)), 1]);
    } else {
      for (let i = Math.floor(start); i < Math.min(inSize, Math.ceil(end)); i++) {
        const w = Math.min(end, i + 1) - Math.max(start, i);
        if (w > 1e-12) list.push([i, w / scale]);
      }
    }
    out.push(list);
  }
  return out;
}
