/**
 * Synthetic chest CT series ("phantoms") with ground truth, for tests, demos and benchmarks where
 * real patient data cannot go.
 *
 * A phantom is a neck-to-abdomen series of 512×512 axial slices in the paper's raw domain
 * (`raw = HU + 1024`, uint16): air around a body with subcutaneous fat, muscle, ribs, sternum,
 * scapulae, spine and table; two lungs (≈ −850 HU) with branching vessels, trachea and bronchi,
 * mediastinum and heart between them; the lungs open from narrow apices at the top and close at the
 * bottom as the diaphragm domes (liver on the right, stomach and spleen on the left) rise through
 * them. COVID phantoms add peripheral, bilateral ground-glass opacities (−700…−300 HU) and
 * consolidation (−100…+50 HU) in the middle slices. Scanner noise is Gaussian, 15–25 HU.
 *
 * Everything is drawn from the seed with the phantom's own generator ({@link createRng}): the same
 * options give the same bytes. The anatomy comes from the seed alone, so `covid: true` and
 * `covid: false` with one seed are the same body with and without lesions.
 *
 * Ground truth per slice: `lungOpen` when lung (parenchyma, vessels and lesions) covers at least
 * {@link OPEN_LUNG_FRACTION} of the paper's selection region (rows 240…339, columns 120…369) —
 * the slices a radiologist would want classified; `lesion` when the slice shows at least
 * {@link MIN_LESION_PIXELS} pixels of lesion.
 */
import { InputError } from '../errors.js';
import { drawAnatomy, L } from './anatomy.js';
import {
  DEFAULT_PHANTOM_SLICES,
  MAX_PHANTOM_SLICES,
  PHANTOM_EXTENT_MM,
  PHANTOM_PIXEL_SPACING,
  PHANTOM_SIZE,
  type Phantom,
  type PhantomInfo,
  type PhantomOptions,
  type PhantomSeries,
  type PhantomSlice,
} from './phantom-spec.js';
import { createRng, hash32 } from './random.js';
import { createCanvas } from './raster.js';
import { renderSlice, type Workspace } from './render.js';

// The sizes, labels and types live in phantom-spec.ts (the drawing modules use them too); this is their public face.
export {
  DEFAULT_PHANTOM_SLICES,
  MAX_PHANTOM_SLICES,
  MIN_LESION_PIXELS,
  OPEN_LUNG_FRACTION,
  PHANTOM_EXTENT_MM,
  PHANTOM_PIXEL_SPACING,
  PHANTOM_SIZE,
  type Phantom,
  type PhantomInfo,
  PhantomLabel,
  type PhantomLabelValue,
  type PhantomOptions,
  type PhantomSeries,
  type PhantomSlice,
  type PhantomTruth,
} from './phantom-spec.js';

/** Check options and fill in defaults. Throws an {@link InputError} naming the bad option. */
export function resolvePhantomOptions(options: PhantomOptions): Required<PhantomOptions> {
  const { seed, covid } = options;
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new InputError('seed', `must be a whole number from 0 to ${Number.MAX_SAFE_INTEGER}, got ${seed}`);
  }
  const slices = options.slices ?? DEFAULT_PHANTOM_SLICES;
  if (!Number.isInteger(slices) || slices < 1 || slices > MAX_PHANTOM_SLICES) {
    throw new InputError('slices', `must be a whole number from 1 to ${MAX_PHANTOM_SLICES}, got ${slices}`);
  }
  const noise = options.noiseHu;
  if (noise !== undefined && !(Number.isFinite(noise) && noise >= 0 && noise <= 500)) {
    throw new InputError('noiseHu', `must be a number from 0 to 500, got ${noise}`);
  }
  const anatomyRng = createRng(hash32(seed, 1));
  // The first anatomy draw is the noise level, so an explicit noiseHu leaves the anatomy unchanged.
  const drawnNoise = anatomyRng.range(15, 25);
  return { seed, covid: covid === true, slices, table: options.table ?? true, noiseHu: noise ?? drawnNoise };
}

/** Generate a whole series in memory (60 slices ≈ 31 MB of pixels). */
export function generatePhantomSeries(options: PhantomOptions): PhantomSeries {
  const phantom = createPhantom(options);
  return { ...phantom.info, slices: [...phantom.slices()] };
}

/** Create a phantom whose slices are drawn on demand. */
export function createPhantom(options: PhantomOptions): Phantom {
  const resolved = resolvePhantomOptions(options);
  const anatomy = drawAnatomy(resolved);
  const info: PhantomInfo = {
    seed: resolved.seed,
    covid: resolved.covid,
    sliceCount: resolved.slices,
    width: PHANTOM_SIZE,
    height: PHANTOM_SIZE,
    pixelSpacing: [PHANTOM_PIXEL_SPACING, PHANTOM_PIXEL_SPACING],
    sliceThickness: PHANTOM_EXTENT_MM / resolved.slices,
    noiseHu: resolved.noiseHu,
    table: resolved.table,
  };
  let ws: Workspace | undefined;
  const slice = (index: number, opts?: { readonly labels?: boolean }): PhantomSlice => {
    if (!Number.isInteger(index) || index < 0 || index >= info.sliceCount) {
      throw new RangeError(`phantom slice index ${index} is outside 0…${info.sliceCount - 1}`);
    }
    ws ??= {
      canvas: createCanvas(PHANTOM_SIZE, PHANTOM_SIZE, -1000, L.AIR),
      scratch: new Float32Array(PHANTOM_SIZE * PHANTOM_SIZE),
    };
    return renderSlice(anatomy, info, index, opts?.labels === true, ws);
  };
  return {
    info,
    slice,
    *slices(opts) {
      for (let i = 0; i < info.sliceCount; i++) yield slice(i, opts);
    },
  };
}
