/**
 * What a phantom is, for its users: sizes, the ground truth's thresholds, the tissue labels and the
 * types of options, slices and series. Drawing them is phantom.ts (anatomy.ts, organs.ts, render.ts).
 */
/** Phantom slices are 512×512, the size the paper's network and selection region expect. */
export const PHANTOM_SIZE = 512;
/** Default number of slices in a series. */
export const DEFAULT_PHANTOM_SLICES = 60;
/** Most slices a phantom series may have. */
export const MAX_PHANTOM_SLICES = 1000;
/** Length of the body the series covers, neck to upper abdomen, in mm; slice spacing is this over the slice count. */
export const PHANTOM_EXTENT_MM = 300;
/** Pixel spacing in mm (a 360 mm field of view). */
export const PHANTOM_PIXEL_SPACING = 360 / 512;
/**
 * A slice is `lungOpen` when lung covers at least this fraction of the selection region. Chosen
 * where the lung area of the region climbs and falls steeply (apex and dome), so that the truth
 * does not hinge on a pixel here or there; on open slices lung covers about 65–80 % of the region.
 */
export const OPEN_LUNG_FRACTION = 0.5;
/** A slice has a lesion when at least this many pixels are ground glass or consolidation (≈ 15 mm²). */
export const MIN_LESION_PIXELS = 30;

/** Tissue labels of the label image that {@link Phantom.slice} returns on request. */
export const PhantomLabel = {
  /** Air around the body (−1000 HU). */
  AIR: 0,
  /** Subcutaneous, mediastinal and epicardial fat (≈ −100 HU). */
  FAT: 1,
  /** Muscle, organs, blood, mediastinum (≈ +40 HU). */
  SOFT_TISSUE: 2,
  /** Cortical bone (≈ +700 HU). */
  BONE: 3,
  /** Cancellous bone inside the cortex (≈ +230 HU). */
  MARROW: 4,
  /** Lung parenchyma (≈ −850 HU). */
  LUNG: 5,
  /** Pulmonary vessels inside the lung (≈ +40 HU before partial-volume blur). */
  VESSEL: 6,
  /** Ground-glass opacity (−700…−300 HU). */
  GGO: 7,
  /** Consolidation (−100…+50 HU). */
  CONSOLIDATION: 8,
  /** Gas inside the body: trachea, bronchi, stomach, bowel (≈ −1000 HU). */
  GAS: 9,
  /** The scanner table. */
  TABLE: 10,
} as const;

/** One of {@link PhantomLabel}'s values. */
export type PhantomLabelValue = (typeof PhantomLabel)[keyof typeof PhantomLabel];

/** What to generate. */
export interface PhantomOptions {
  /** Any non-negative safe integer; the whole series follows from it. */
  readonly seed: number;
  /** Add COVID-19 lesions (ground glass, consolidation) to the middle slices. */
  readonly covid: boolean;
  /** Number of slices, 1…1000 (default 60). The anatomy is the same; only the spacing changes. */
  readonly slices?: number;
  /** Draw the scanner table (default true). */
  readonly table?: boolean;
  /** Standard deviation of the scanner noise in HU (default: 15…25 drawn from the seed). */
  readonly noiseHu?: number;
}

/** Ground truth of one slice. */
export interface PhantomTruth {
  /** Lung covers at least {@link OPEN_LUNG_FRACTION} of the selection region. */
  readonly lungOpen: boolean;
  /** The slice shows at least {@link MIN_LESION_PIXELS} pixels of ground glass or consolidation. */
  readonly lesion: boolean;
  /** Fraction of the selection region covered by lung (parenchyma, vessels, lesions). */
  readonly lungFraction: number;
  /** Pixels labelled ground glass or consolidation in the whole slice. */
  readonly lesionPixels: number;
}

/** One generated slice. */
export interface PhantomSlice {
  /** 0-based position in the series, top (neck) first. */
  readonly index: number;
  /** DICOM InstanceNumber: `index + 1`. */
  readonly instanceNumber: number;
  /** Table position in mm, decreasing from head to feet as on a head-first supine scan. */
  readonly sliceLocation: number;
  /** Raw-domain pixels, 512×512 row-major. */
  readonly pixels: Uint16Array;
  readonly truth: PhantomTruth;
  /** The tissue label of every pixel ({@link PhantomLabel}), when asked for. */
  readonly labels?: Uint8Array;
}

/** Facts of a whole series. */
export interface PhantomInfo {
  readonly seed: number;
  readonly covid: boolean;
  readonly sliceCount: number;
  readonly width: number;
  readonly height: number;
  /** Row and column spacing in mm. */
  readonly pixelSpacing: readonly [number, number];
  /** Slice thickness and spacing in mm. */
  readonly sliceThickness: number;
  /** Scanner noise standard deviation in HU. */
  readonly noiseHu: number;
  readonly table: boolean;
}

/** A phantom whose slices are drawn on demand: a 1000-slice series need not sit in memory. */
export interface Phantom {
  readonly info: PhantomInfo;
  /** Draw slice `index` (0-based). `labels: true` also returns the tissue label image. */
  slice(index: number, options?: { readonly labels?: boolean }): PhantomSlice;
  /** Every slice in order, drawn one at a time. */
  slices(options?: { readonly labels?: boolean }): Generator<PhantomSlice>;
}

/** A whole series in memory. */
export interface PhantomSeries extends PhantomInfo {
  readonly slices: readonly PhantomSlice[];
}
