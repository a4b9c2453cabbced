/**
 * Slices into network inputs for training and evaluation: decode (core/read.ts), resize to the
 * model's input when it differs (area averaging, float32, never quantised), augment, and pack
 * batches. Batches are loaded one ahead of the step that uses them; a dataset never sits in memory.
 */
import type { LabelledSlice } from '../../core/dataset.js';
import { InputError } from '../../core/errors.js';
import { readSlice } from '../../core/read.js';
import { type AffineParams, applyAffine, resizeArea } from './augment.js';

/** Reads one slice as `size × size` float32 raw values. */
export type PixelLoader = (path: string, size: number) => Promise<Float32Array>;

/** The default loader: any TIFF or DICOM slice, resized by area averaging when it is not `size × size`. */
export async function loadSlicePixels(path: string, size: number): Promise<Float32Array> {
  const rows = await readSlice(path);
  const { width, height } = rows.header;
  if (rows.pixels.length !== width * height) {
    throw new InputError(path, `decoded ${rows.pixels.length} values for a ${width}×${height} slice`);
  }
  return resizeArea(rows.pixels, height, width, size, size);
}

/** A packed batch: NHWC float32 pixels and one-hot targets (index 0 COVID). */
export interface Batch {
  readonly count: number;
  readonly pixels: Float32Array;
  readonly targets: Float32Array;
  /** Class index per slice (0 COVID, 1 normal). */
  readonly classes: Uint8Array;
}

/** Load and pack `items` (optionally each with its transform) into one batch. */
export async function loadBatch(
  items: readonly LabelledSlice[],
  size: number,
  loader: PixelLoader,
  transforms?: readonly AffineParams[],
): Promise<Batch> {
  const per = size * size;
  const pixels = new Float32Array(items.length * per);
  const targets = new Float32Array(items.length * 2);
  const classes = new Uint8Array(items.length);
  await Promise.all(
    items.map(async (item, i) => {
      const image = await loader(item.path, size);
      if (image.length !== per) {
        throw new InputError(item.path, `loader gave ${image.length} values, expected ${size}×${size}`);
      }
      const t = transforms?.[i];
      if (t === undefined) pixels.set(image, i * per);
      else applyAffine(image, size, size, t, pixels.subarray(i * per, (i + 1) * per));
      const cls = item.label === 'covid' ? 0 : 1;
      classes[i] = cls;
      targets[i * 2 + cls] = 1;
    }),
  );
  return { count: items.length, pixels, targets, classes };
}

/**
 * Iterate batches of `order` (indexes into `items`), loading batch k+1 while batch k is used.
 * `transformsFor(start, count)` gives the transforms of a batch's slices (or undefined for none).
 */
export async function* batches(
  items: readonly LabelledSlice[],
  order: readonly number[],
  batchSize: number,
  size: number,
  loader: PixelLoader,
  transformsFor?: (start: number, count: number) => AffineParams[],
): AsyncGenerator<Batch & { readonly start: number }> {
  const starts: number[] = [];
  for (let s = 0; s < order.length; s += batchSize) starts.push(s);
  const load = (s: number) => {
    const idx = order.slice(s, s + batchSize);
    const batch = loadBatch(
      idx.map((i) => items[i]!),
      size,
      loader,
      transformsFor?.(s, idx.length),
    );
    // Failures surface when awaited; keep Node from reporting them as unhandled meanwhile.
    batch.catch(() => {});
    return batch;
  };
  let next = starts.length > 0 ? load(starts[0]!) : undefined;
  for (let k = 0; k < starts.length; k++) {
    const current = await next!;
    next = k + 1 < starts.length ? load(starts[k + 1]!) : undefined;
    yield { ...current, start: starts[k]! };
  }
}
