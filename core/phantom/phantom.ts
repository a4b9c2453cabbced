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
import { REFERENCE_REGION } from '../selection.js';
import { RAW_HU_OFFSET } from '../slice.js';
import { createRng, hash32, type Rng } from './random.js';
import {
  ANY,
  type Canvas,
  createCanvas,
  fillCapsule,
  fillEllipse,
  fillRotatedEllipse,
  fillSuperellipse,
  maskOf,
} from './raster.js';

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

// ---------------------------------------------------------------------------------------------
// Anatomy: every random choice of a series, drawn once. Positions are in body-normalised units
// (u across, −1…1 right to left of the image; v front to back, −1 anterior … +1 posterior) or in
// lung-normalised units (lu lateral-positive, lv posterior-positive, z along the lung's height).
// `t` is the position along the series, 0 at the neck and 1 in the upper abdomen.

const L = PhantomLabel;
const LUNG_LIKE = maskOf(L.LUNG, L.VESSEL, L.GGO, L.CONSOLIDATION);
const INSIDE_BODY = maskOf(L.FAT, L.SOFT_TISSUE, L.BONE, L.MARROW);
const SOFT_OR_FAT = maskOf(L.FAT, L.SOFT_TISSUE);

/** One vessel segment in lung-normalised coordinates. */
interface VesselSegment {
  readonly side: number;
  readonly a: readonly [number, number, number];
  readonly b: readonly [number, number, number];
  /** Radius in pixels. */
  readonly radius: number;
}

/** One lesion: a lobulated ellipsoid near the pleura. */
interface Lesion {
  readonly side: number;
  /** Centre in lung-normalised coordinates. */
  readonly lu: number;
  readonly lv: number;
  /** Centre along the series and half-extent, in t units. */
  readonly t: number;
  readonly tHalf: number;
  /** In-plane radius in pixels at the centre. */
  readonly radius: number;
  /** Target HU of the ground glass, and of the consolidated core (NaN when none). */
  readonly ggoHu: number;
  readonly consHu: number;
  /** Consolidated core radius as a fraction of the lesion radius. */
  readonly core: number;
  /** Lobulation: amplitude and phase of harmonics 2, 3, 5. */
  readonly lobes: readonly number[];
}

interface Anatomy {
  readonly covid: boolean;
  readonly seed: number;
  readonly table: boolean;
  readonly noiseHu: number;
  /** Body half-width and half-height in pixels, centre x and posterior surface y. */
  readonly a: number;
  readonly b: number;
  readonly cx: number;
  readonly back: number;
  /** Inner (muscle) boundary as a fraction of the body outline. */
  readonly muscle: number;
  readonly fatHu: number;
  readonly muscleHu: number;
  readonly lungHu: number;
  /** Per side (index 0 = image left = patient right, 1 = image right): apex start and dome top. */
  readonly apexT: readonly [number, number];
  readonly openSpan: number;
  readonly domeT: readonly [number, number];
  readonly domeSpan: number;
  readonly heartT: readonly [number, number];
  readonly carinaT: number;
  readonly ribPhase: number;
  readonly vertebraPhase: number;
  readonly vessels: readonly VesselSegment[];
  readonly lesions: readonly Lesion[];
  readonly bowelGas: readonly (readonly [number, number, number, number])[];
}

function drawAnatomy(o: Required<PhantomOptions>): Anatomy {
  const r = createRng(hash32(o.seed, 1));
  r.next(); // the noise level, drawn in resolvePhantomOptions
  const scale = r.range(0.88, 1.04);
  const aspect = r.range(0.94, 1.06);
  const a = 222 * scale;
  const b = 158 * scale * aspect;
  const cx = 256 + r.range(-14, 14);
  const back = 258 + 158 + r.range(-12, 12);
  const apex = r.range(0.09, 0.12);
  const dome = r.range(0.53, 0.58);
  const anatomy = {
    covid: o.covid,
    seed: o.seed,
    table: o.table,
    noiseHu: o.noiseHu,
    a,
    b,
    cx,
    back,
    muscle: r.range(0.88, 0.94),
    fatHu: r.range(-115, -85),
    muscleHu: r.range(35, 50),
    lungHu: r.range(-885, -855),
    apexT: [apex, apex + r.range(0, 0.015)] as const,
    openSpan: r.range(0.13, 0.16),
    domeT: [dome, dome + r.range(0.02, 0.045)] as const,
    domeSpan: r.range(0.17, 0.21),
    heartT: [apex + r.range(0.2, 0.24), dome + r.range(0.05, 0.08)] as const,
    carinaT: apex + r.range(0.17, 0.21),
    ribPhase: r.next(),
    vertebraPhase: r.next(),
  };
  const vessels = drawVesselTrees(r);
  const bowelGas: [number, number, number, number][] = [];
  for (let k = 0; k < 10; k++) {
    bowelGas.push([r.range(-0.5, 0.55), r.range(-0.7, 0.1), r.range(0.8, 1.05), r.range(3, 9)]);
  }
  // Lesions come from their own stream, so a COVID phantom is the normal one plus lesions.
  const lesions = o.covid ? drawLesions(createRng(hash32(o.seed, 2)), anatomy.apexT, anatomy.domeT) : [];
  return { ...anatomy, vessels, lesions, bowelGas };
}

function drawVesselTrees(r: Rng): VesselSegment[] {
  const out: VesselSegment[] = [];
  for (const side of [0, 1]) {
    // Roots at the hilum (medial, mid-height): upper lobe up, middle lateral and forward, lower down and back.
    const roots: [number, number, number][] = [
      [0.25, -0.3, -0.9],
      [0.5, 0.3, -0.8],
      [0.9, -0.45, 0.1],
      [0.8, 0.3, -0.1],
      [0.4, 0.4, 0.85],
      [0.5, -0.4, 0.7],
      [0.6, 0.7, 0.3],
    ];
    for (const d of roots) {
      const n = Math.hypot(d[0], d[1], d[2]);
      branch(r, out, side, [-0.55, 0.05, 0], [d[0] / n, d[1] / n, d[2] / n], r.range(0.3, 0.4), 3.2, 0);
    }
    // The peripheral vessels the tree is too coarse to reach: short thin segments spread through the
    // lung, so every slice shows the dotted texture of real lung.
    for (let k = 0; k < 1100; k++) {
      const rho = Math.cbrt(r.next()) * 1.05;
      const th = r.range(0, 2 * Math.PI);
      const ph = r.range(-1, 1);
      const q = Math.sqrt(1 - ph * ph);
      const p: [number, number, number] = [rho * q * Math.cos(th), rho * q * Math.sin(th), rho * ph];
      const len = r.range(0.03, 0.1);
      // Vessels run away from the hilum: cut across near it in z they show as dots, as in real CT.
      const d = [
        p[0] + 0.55 + 0.4 * r.normal(),
        p[1] - 0.05 + 0.4 * r.normal(),
        p[2] + 0.4 * r.normal(),
      ] as const;
      const dn = Math.hypot(d[0], d[1], d[2]) || 1;
      out.push({
        side,
        a: p,
        b: [p[0] + (d[0] / dn) * len, p[1] + (d[1] / dn) * len, p[2] + (d[2] / dn) * len],
        radius: r.range(0.6, 1.4),
      });
    }
  }
  return out;
}

function branch(
  r: Rng,
  out: VesselSegment[],
  side: number,
  p: readonly [number, number, number],
  d: readonly [number, number, number],
  len: number,
  radius: number,
  depth: number,
): void {
  const q: [number, number, number] = [p[0] + d[0] * len, p[1] + d[1] * len, p[2] + d[2] * len];
  out.push({ side, a: p, b: q, radius });
  if (depth >= 6) return;
  // Stop where the branch leaves the lung: its finer children would all be clipped anyway.
  if (q[0] * q[0] + q[1] * q[1] + q[2] * q[2] > 1.05) return;
  for (let k = 0; k < 2; k++) {
    // Turn by 20–45° about a random axis perpendicular to the parent.
    let ax = r.normal();
    let ay = r.normal();
    let az = r.normal();
    const dot = ax * d[0] + ay * d[1] + az * d[2];
    ax -= dot * d[0];
    ay -= dot * d[1];
    az -= dot * d[2];
    const an = Math.hypot(ax, ay, az) || 1;
    const ang = r.range(0.35, 0.8) * (k === 0 ? 1 : -1);
    const c = Math.cos(ang);
    const s = Math.sin(ang);
    const nd: [number, number, number] = [
      d[0] * c + (ax / an) * s,
      d[1] * c + (ay / an) * s,
      d[2] * c + (az / an) * s,
    ];
    branch(r, out, side, q, nd, len * r.range(0.7, 0.85), radius * 0.74, depth + 1);
  }
}

function drawLesions(r: Rng, apexT: readonly [number, number], domeT: readonly [number, number]): Lesion[] {
  const out: Lesion[] = [];
  for (const side of [0, 1]) {
    const count = 2 + Math.floor(r.next() * 4);
    const lo = apexT[side]! + 0.13;
    const hi = domeT[side]! - 0.01;
    for (let k = 0; k < count; k++) {
      // Peripheral (subpleural), mostly posterior and lateral, as COVID-19 pneumonia typically is.
      const theta = r.chance(0.7) ? r.range(-0.6, 1.9) : r.range(-Math.PI, Math.PI);
      const rho = r.range(0.75, 0.92);
      const kind = r.next();
      out.push({
        side,
        lu: rho * Math.cos(theta),
        lv: rho * Math.sin(theta),
        t: r.range(lo, hi),
        tHalf: r.range(0.03, 0.08),
        radius: r.range(20, 50),
        ggoHu: r.range(-620, -400),
        consHu: kind < 0.6 ? Number.NaN : r.range(-70, 20),
        core: kind < 0.6 ? 0 : kind < 0.9 ? r.range(0.35, 0.6) : 0.85,
        lobes: [
          r.range(0, 0.12),
          r.range(0, 6.3),
          r.range(0, 0.1),
          r.range(0, 6.3),
          r.range(0, 0.06),
          r.range(0, 6.3),
        ],
      });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Drawing one slice.

const smooth = (e0: number, e1: number, x: number): number => {
  const k = Math.max(0, Math.min(1, (x - e0) / (e1 - e0)));
  return k * k * (3 - 2 * k);
};

/** Where the body and each lung are at one t. */
interface SliceFrame {
  readonly t: number;
  readonly cx: number;
  readonly cy: number;
  /** Body half-width and half-height at this t. */
  readonly at: number;
  readonly bt: number;
  /** Per lung (0 = image left): open (0…1), centre and half-sizes in body units; full-size centre and half-sizes. */
  readonly lungs: readonly LungFrame[];
}

interface LungFrame {
  readonly sign: number;
  readonly open: number;
  readonly uc: number;
  readonly vc: number;
  readonly ru: number;
  readonly rv: number;
  /** Dome radius in lung-normalised units (0: no dome in this slice). */
  readonly dome: number;
}

const LUNG_FULL = { uc: 0.47, vc: -0.03, ru: 0.385, rv: 0.84 } as const;
/** The lung's t span mapped to its normalised height z = −1…1 (for vessels). */
const lungZ = (an: Anatomy, side: number, t: number): number => {
  const top = an.apexT[side]!;
  const bottom = an.domeT[side]! + an.domeSpan;
  return ((t - top) / (bottom - top)) * 2 - 1;
};

function frameAt(an: Anatomy, t: number): SliceFrame {
  // The neck and shoulders are flatter than the chest; the back rests on the table throughout.
  const at = an.a * (0.96 + 0.04 * smooth(0.05, 0.3, t));
  const bt = an.b * (0.8 + 0.2 * smooth(0.0, 0.28, t) + 0.04 * smooth(0.7, 1, t));
  const cy = an.back - bt;
  const lungs: LungFrame[] = [];
  for (const side of [0, 1]) {
    const sign = side === 0 ? -1 : 1;
    const g = Math.max(0, Math.min(1, (t - an.apexT[side]!) / an.openSpan));
    // Area grows about linearly from the apex: half-sizes with the square root.
    const open = Math.sqrt(g);
    const domeT = an.domeT[side]!;
    const dome = t > domeT ? 1.75 * Math.sqrt((t - domeT) / an.domeSpan) : 0;
    lungs.push({
      sign,
      open,
      uc: sign * (0.38 + (LUNG_FULL.uc - 0.38) * open),
      vc: 0.25 * (1 - open) + LUNG_FULL.vc * open,
      ru: LUNG_FULL.ru * (0.35 + 0.65 * open),
      rv: LUNG_FULL.rv * (0.3 + 0.7 * open),
      dome,
    });
  }
  return { t, cx: an.cx, cy, at, bt, lungs };
}

/** Buffers reused from slice to slice of one phantom: allocating 1.5 MB per slice costs more than drawing it. */
interface Workspace {
  readonly canvas: Canvas;
  readonly scratch: Float32Array;
}

function renderSlice(
  an: Anatomy,
  info: PhantomInfo,
  index: number,
  withLabels: boolean,
  ws: Workspace,
): PhantomSlice {
  const n = info.sliceCount;
  const t = n === 1 ? 0.45 : (index + 0.5) / n;
  const f = frameAt(an, t);
  const c = ws.canvas;
  c.hu.fill(-1000);
  c.label.fill(L.AIR);
  const X = (u: number) => f.cx + u * f.at;
  const Y = (v: number) => f.cy + v * f.bt;
  const s = an.a / 222; // pixels per nominal pixel, for small structures

  if (an.table) drawTable(c, an, f);
  // Body: fat outline, muscle inside.
  fillSuperellipse(c, f.cx, f.cy, f.at, f.bt, 2.2, 3.6, an.fatHu, L.FAT);
  fillSuperellipse(c, f.cx, f.cy, f.at * an.muscle, f.bt * an.muscle, 2.2, 3.6, an.muscleHu, L.SOFT_TISSUE);

  drawAbdomen(c, an, f, X, Y, s);
  drawMediastinumBehind(c, an, f, X, Y, s);
  drawLungs(c, an, f);
  drawHeartAndVessels(c, an, f, X, Y, s);
  drawAirways(c, an, f, X, Y, s);
  drawBones(c, an, f, X, Y, s);
  drawPulmonaryVessels(c, an, f, n);
  if (an.lesions.length > 0) drawLesions2d(c, an, f);

  const truth = measureTruth(c);
  const pixels = blurNoiseToRaw(c, ws.scratch, an.noiseHu, hash32(an.seed, 3, index));
  const spacing = PHANTOM_EXTENT_MM / n;
  return {
    index,
    instanceNumber: index + 1,
    sliceLocation: round3(-index * spacing),
    pixels,
    truth,
    ...(withLabels ? { labels: c.label.slice() } : {}),
  };
}

const round3 = (x: number) => Math.round(x * 1000) / 1000 + 0; // + 0 turns −0 into 0

function drawTable(c: Canvas, an: Anatomy, f: SliceFrame): void {
  // A curved tabletop under the back and a support beam below it.
  const half = an.a * 0.9;
  for (const [dy, thick, hu] of [
    [4, 4, 150],
    [34, 3, 250],
  ] as const) {
    const xa = Math.max(0, Math.ceil(f.cx - half));
    const xb = Math.min(c.width - 1, Math.floor(f.cx + half));
    for (let x = xa; x <= xb; x++) {
      const k = (x - f.cx) / half;
      const y0 = Math.round(an.back + dy - 22 * k * k * k * k);
      for (let y = Math.max(0, y0); y < Math.min(c.height, y0 + thick); y++) {
        c.hu[y * c.width + x] = hu;
        c.label[y * c.width + x] = L.TABLE;
      }
    }
  }
}

type Map1 = (x: number) => number;

function drawAbdomen(c: Canvas, an: Anatomy, f: SliceFrame, X: Map1, Y: Map1, s: number): void {
  const t = f.t;
  const dR = an.domeT[0]!;
  const dL = an.domeT[1]!;
  if (t > dR) {
    // Liver under the right dome (image left), growing as the dome descends.
    const g = smooth(dR, dR + 0.12, t);
    fillSuperellipse(
      c,
      X(-0.3),
      Y(-0.05),
      f.at * 0.58 * g,
      f.bt * 0.72 * g,
      2.3,
      2.3,
      62,
      L.SOFT_TISSUE,
      SOFT_OR_FAT,
    );
  }
  if (t > dL) {
    const g = smooth(dL, dL + 0.1, t);
    // Spleen posterior-left, stomach anterior-left with a gas cap.
    fillEllipse(c, X(0.56), Y(0.3), f.at * 0.16 * g, f.bt * 0.3 * g, 48, L.SOFT_TISSUE, SOFT_OR_FAT);
    const sx = X(0.3);
    const sy = Y(-0.3);
    fillEllipse(c, sx, sy, f.at * 0.24 * g, f.bt * 0.28 * g, 22, L.SOFT_TISSUE, SOFT_OR_FAT);
    if (g > 0.3) {
      const cap = f.bt * 0.28 * g;
      for (let y = Math.ceil(sy - cap); y < sy - cap * 0.45; y++) {
        const q = (y - sy) / cap;
        const half = f.at * 0.24 * g * Math.sqrt(Math.max(0, 1 - q * q)) - 3 * s;
        const x0 = Math.ceil(sx - half);
        for (let x = x0; x <= sx + half; x++) {
          c.hu[y * c.width + x] = -1000;
          c.label[y * c.width + x] = L.GAS;
        }
      }
    }
  }
  if (t > 0.82) {
    // Kidneys and a little bowel gas low in the series.
    const g = smooth(0.82, 0.9, t);
    for (const sign of [-1, 1]) {
      fillEllipse(
        c,
        X(sign * 0.36),
        Y(0.5),
        f.at * 0.12 * g,
        f.bt * 0.17 * g,
        32,
        L.SOFT_TISSUE,
        SOFT_OR_FAT,
      );
    }
    for (const [u, v, t0, r] of an.bowelGas) {
      if (t > t0 && t < t0 + 0.08) fillEllipse(c, X(u), Y(v), r * s, r * s, -1000, L.GAS, SOFT_OR_FAT);
    }
  }
}

function drawMediastinumBehind(c: Canvas, an: Anatomy, f: SliceFrame, X: Map1, Y: Map1, s: number): void {
  // Upper mediastinal fat with the great vessels in it, drawn before the lungs cut their outline.
  const t = f.t;
  const lo = an.apexT[0]! + 0.04;
  const hi = an.heartT[0]! + 0.08;
  if (t > lo && t < hi) {
    const g = smooth(lo, lo + 0.06, t);
    fillEllipse(c, X(0), Y(-0.35), f.at * 0.2 * g, f.bt * 0.38 * g, an.fatHu, L.FAT, SOFT_OR_FAT);
    fillEllipse(c, X(-0.1), Y(-0.32), 11 * s, 11 * s, 45, L.SOFT_TISSUE); // superior vena cava
    fillEllipse(c, X(0.02), Y(-0.45), 14 * s, 14 * s, 45, L.SOFT_TISSUE); // ascending aorta / arch
    if (t < an.carinaT) fillEllipse(c, X(0.1), Y(-0.2), 10 * s, 10 * s, 45, L.SOFT_TISSUE); // left carotid/subclavian
  }
}

function drawLungs(c: Canvas, an: Anatomy, f: SliceFrame): void {
  const w = c.width;
  const hu = c.hu;
  const lab = c.label;
  const P = 2.6;
  const spineU = 0;
  const spineV = 0.68;
  for (const lung of f.lungs) {
    if (lung.open <= 0) continue;
    const cx = f.cx + lung.uc * f.at;
    const cy = f.cy + lung.vc * f.bt;
    const rx = lung.ru * f.at;
    const ry = lung.rv * f.bt;
    // The dome: a disc in full-size lung-normalised coordinates, off-centre to the front and middle,
    // so that the posterior and lateral recesses close last, as they do.
    const dr2 = lung.dome * lung.dome;
    const dcu = f.cx + (lung.sign * LUNG_FULL.uc - lung.sign * 0.25 * LUNG_FULL.ru) * f.at;
    const dcv = f.cy + (LUNG_FULL.vc - 0.45 * LUNG_FULL.rv) * f.bt;
    const idu = 1 / (LUNG_FULL.ru * f.at);
    const idv = 1 / (LUNG_FULL.rv * f.bt);
    const medial = f.cx + lung.sign * 0.075 * f.at;
    const y0 = Math.max(0, Math.ceil(cy - ry));
    const y1 = Math.min(c.height - 1, Math.floor(cy + ry));
    for (let y = y0; y <= y1; y++) {
      const q = Math.abs(y - cy) / ry;
      const rest = 1 - q ** P;
      if (rest <= 0) continue;
      const half = rx * rest ** (1 / P);
      let xa = Math.ceil(cx - half);
      let xb = Math.floor(cx + half);
      if (lung.sign < 0) xb = Math.min(xb, Math.floor(medial));
      else xa = Math.max(xa, Math.ceil(medial));
      xa = Math.max(0, xa);
      xb = Math.min(w - 1, xb);
      const v = (y - f.cy) / f.bt;
      // Gravity: the dependent (posterior) lung is a little denser.
      const base = an.lungHu + 40 * Math.max(0, Math.min(1, (v + 0.2) / 1));
      const dv = (y - dcv) * idv;
      const sv = (v - spineV) / 0.26;
      for (let x = xa; x <= xb; x++) {
        const i = y * w + x;
        if (dr2 > 0) {
          const du = (x - dcu) * idu;
          if (du * du + dv * dv < dr2) continue;
        }
        const su = ((x - f.cx) / f.at - spineU) / 0.2;
        if (su * su + sv * sv < 1) continue;
        hu[i] = base;
        lab[i] = L.LUNG;
      }
    }
  }
}

function drawHeartAndVessels(c: Canvas, an: Anatomy, f: SliceFrame, X: Map1, Y: Map1, s: number): void {
  const t = f.t;
  const [h0, h1] = an.heartT;
  if (t > h0 && t < h1) {
    const k = Math.sin((Math.PI * (t - h0)) / (h1 - h0)) ** 0.45;
    const rx = f.at * 0.4 * k;
    const ry = f.bt * 0.46 * k;
    const hx = X(0.1);
    const hy = Y(-0.36);
    const tilt = -0.45;
    // Epicardial fat, then the heart; the fat shows as a thin dark rim against lung and muscle.
    fillRotatedEllipse(
      c,
      hx,
      hy,
      rx + 4 * s,
      ry + 4 * s,
      tilt,
      an.fatHu,
      L.FAT,
      ANY & ~maskOf(L.BONE, L.MARROW),
    );
    fillRotatedEllipse(c, hx, hy, rx, ry, tilt, 42, L.SOFT_TISSUE);
    if (k > 0.5) {
      // Chambers slightly brighter (contrast-free blood ≈ 45, myocardium ≈ 40) — barely visible, as on plain CT.
      fillRotatedEllipse(c, hx - 0.2 * rx, hy + 0.1 * ry, rx * 0.45, ry * 0.4, tilt, 50, L.SOFT_TISSUE);
    }
  }
  // Descending aorta beside the spine, and the oesophagus in front of it.
  if (t > an.apexT[0]! + 0.1) {
    const ab = t > an.domeT[1]! + 0.1;
    fillEllipse(c, X(ab ? 0.05 : 0.11), Y(ab ? 0.46 : 0.45), 13 * s, 13 * s, 45, L.SOFT_TISSUE);
  }
  if (t < an.domeT[1]! + 0.05) {
    fillEllipse(c, X(-0.04), Y(0.42), 8 * s, 7 * s, 35, L.SOFT_TISSUE);
  }
}

function drawAirways(c: Canvas, an: Anatomy, f: SliceFrame, X: Map1, Y: Map1, s: number): void {
  const t = f.t;
  const ct = an.carinaT;
  if (t < ct) {
    const v = -0.25 + 0.3 * (t / ct);
    fillEllipse(c, X(0), Y(v), 12 * s, 11 * s, 30, L.SOFT_TISSUE);
    fillEllipse(c, X(0), Y(v), 9.5 * s, 8.5 * s, -1000, L.GAS);
  } else if (t < ct + 0.07) {
    const k = (t - ct) / 0.07;
    for (const sign of [-1, 1]) {
      const u = sign * (0.05 + 0.2 * k);
      fillEllipse(c, X(u), Y(0.05), 8 * s, 8 * s, 30, L.SOFT_TISSUE);
      fillEllipse(c, X(u), Y(0.05), 6 * s, 6 * s, -1000, L.GAS);
    }
  }
}

function drawBones(c: Canvas, an: Anatomy, f: SliceFrame, X: Map1, Y: Map1, s: number): void {
  const t = f.t;
  const bone = 700;
  const marrow = 230;
  // Vertebra: body with cortex and marrow, or an intervertebral disc every ~25 mm.
  const disc = (t * 12 + an.vertebraPhase) % 1 < 0.16;
  const vx = X(0);
  const vy = Y(0.68);
  const vrx = f.at * 0.12;
  const vry = f.bt * 0.16;
  if (disc) fillEllipse(c, vx, vy, vrx, vry, 85, L.SOFT_TISSUE);
  else {
    fillEllipse(c, vx, vy, vrx, vry, bone, L.BONE);
    fillEllipse(c, vx, vy, vrx - 3 * s, vry - 3 * s, marrow, L.MARROW);
  }
  // Neural arch, canal, spinous and transverse processes.
  const ay = Y(0.88);
  fillEllipse(c, vx, ay, 17 * s, 13 * s, bone, L.BONE);
  fillEllipse(c, vx, ay, 10 * s, 8 * s, 15, L.SOFT_TISSUE);
  fillCapsule(c, vx, ay + 12 * s, vx, Y(0.985), 4 * s, bone, L.BONE);
  for (const sign of [-1, 1])
    fillCapsule(c, vx + sign * 12 * s, Y(0.82), X(sign * 0.17), Y(0.79), 4 * s, bone, L.BONE);

  const top = an.apexT[0]!;
  // Ribs: cross-sections around the chest wall, moving with t as the ribs slope.
  if (t > top - 0.05 && t < an.domeT[0]! + 0.3) {
    for (let j = 0; j < 7; j++) {
      const phi0 =
        (100 + j * 24 + 9 * Math.sin(2 * Math.PI * (t * 3.2 + an.ribPhase + j * 0.37))) * (Math.PI / 180);
      if (t > an.domeT[0]! + 0.15 && j > 4) continue; // low ribs stay posterior and lateral
      for (const sign of [-1, 1]) {
        const phi = sign < 0 ? phi0 : Math.PI - phi0;
        const ru = 0.875;
        const rv = 0.86;
        const u = ru * Math.cos(phi);
        const v = rv * Math.sin(phi);
        const rx = X(u);
        const ry = Y(v);
        const tangent = Math.atan2(rv * f.bt * Math.cos(phi), -ru * f.at * Math.sin(phi));
        fillRotatedEllipse(c, rx, ry, 8 * s, 5 * s, tangent, bone, L.BONE, INSIDE_BODY);
        fillRotatedEllipse(c, rx, ry, 5.5 * s, 2.8 * s, tangent, marrow, L.MARROW, INSIDE_BODY);
      }
    }
  }
  // Sternum in front.
  if (t > top + 0.05 && t < an.domeT[0]! + 0.05) {
    fillEllipse(c, X(0), Y(-0.905), 16 * s, 7 * s, bone, L.BONE, INSIDE_BODY);
    fillEllipse(c, X(0), Y(-0.905), 12 * s, 4 * s, marrow, L.MARROW, INSIDE_BODY);
  }
  // Clavicles at the top, scapulae behind the upper ribs.
  if (t < top + 0.06) {
    for (const sign of [-1, 1]) {
      fillCapsule(c, X(sign * 0.12), Y(-0.82), X(sign * 0.62), Y(-0.66), 6 * s, bone, L.BONE, INSIDE_BODY);
      fillCapsule(
        c,
        X(sign * 0.12),
        Y(-0.82),
        X(sign * 0.62),
        Y(-0.66),
        3 * s,
        marrow,
        L.MARROW,
        INSIDE_BODY,
      );
    }
  }
  if (t < top + 0.3) {
    for (const sign of [-1, 1]) {
      fillCapsule(c, X(sign * 0.4), Y(0.95), X(sign * 0.8), Y(0.62), 3.5 * s, bone, L.BONE, INSIDE_BODY);
    }
  }
}

function drawPulmonaryVessels(c: Canvas, an: Anatomy, f: SliceFrame, n: number): void {
  const t = f.t;
  // Half the slice thickness in t units; a vessel shows if it passes within that of the slice centre.
  const halfT = 0.5 / n;
  const mmPerT = PHANTOM_EXTENT_MM;
  for (const seg of an.vessels) {
    const lung = f.lungs[seg.side]!;
    if (lung.open <= 0) continue;
    const top = an.apexT[seg.side]!;
    const bottom = an.domeT[seg.side]! + an.domeSpan;
    const zPerT = 2 / (bottom - top);
    const z = lungZ(an, seg.side, t);
    // Slab half-thickness in z units: the slice half-thickness plus the vessel radius.
    const hz = (halfT + (seg.radius * PHANTOM_PIXEL_SPACING) / mmPerT) * zPerT;
    const za = seg.a[2];
    const zb = seg.b[2];
    const dz = zb - za;
    let s0: number;
    let s1: number;
    if (Math.abs(dz) < 1e-9) {
      if (Math.abs(za - z) > hz) continue;
      s0 = 0;
      s1 = 1;
    } else {
      const p = (z - hz - za) / dz;
      const q = (z + hz - za) / dz;
      s0 = Math.max(0, Math.min(p, q));
      s1 = Math.min(1, Math.max(p, q));
      if (s0 > s1) continue;
    }
    const sign = lung.sign;
    const mapX = (lu: number) => f.cx + (sign * LUNG_FULL.uc + sign * lu * LUNG_FULL.ru) * f.at;
    const mapY = (lv: number) => f.cy + (LUNG_FULL.vc + lv * LUNG_FULL.rv) * f.bt;
    const ax = seg.a[0] + (seg.b[0] - seg.a[0]) * s0;
    const ay = seg.a[1] + (seg.b[1] - seg.a[1]) * s0;
    const bx = seg.a[0] + (seg.b[0] - seg.a[0]) * s1;
    const by = seg.a[1] + (seg.b[1] - seg.a[1]) * s1;
    fillCapsule(c, mapX(ax), mapY(ay), mapX(bx), mapY(by), seg.radius, 40, L.VESSEL, LUNG_LIKE, true);
  }
}

function drawLesions2d(c: Canvas, an: Anatomy, f: SliceFrame): void {
  const w = c.width;
  const hu = c.hu;
  const lab = c.label;
  for (const les of an.lesions) {
    const dz = (f.t - les.t) / les.tHalf;
    if (dz <= -1 || dz >= 1) continue;
    const lung = f.lungs[les.side]!;
    if (lung.open <= 0) continue;
    const R = les.radius * Math.sqrt(1 - dz * dz);
    if (R < 2) continue;
    const cx = f.cx + (lung.uc + lung.sign * les.lu * lung.ru) * f.at;
    const cy = f.cy + (lung.vc + les.lv * lung.rv) * f.bt;
    const ext = R * 1.3;
    const x0 = Math.max(0, Math.ceil(cx - ext));
    const x1 = Math.min(w - 1, Math.floor(cx + ext));
    const y0 = Math.max(0, Math.ceil(cy - ext));
    const y1 = Math.min(c.height - 1, Math.floor(cy + ext));
    const [a2, p2, a3, p3, a5, p5] = les.lobes as [number, number, number, number, number, number];
    const base = an.lungHu + 20;
    for (let y = y0; y <= y1; y++) {
      for (let x = x0; x <= x1; x++) {
        const i = y * w + x;
        if (!((LUNG_LIKE >>> lab[i]!) & 1)) continue;
        const dx = x - cx;
        const dy = y - cy;
        const th = Math.atan2(dy, dx);
        const rr =
          R * (1 + a2 * Math.cos(2 * th + p2) + a3 * Math.cos(3 * th + p3) + a5 * Math.cos(5 * th + p5));
        const rho = Math.sqrt(dx * dx + dy * dy) / rr;
        if (rho >= 1) continue;
        // Flat top to 0.55 of the radius, soft edge beyond: ground glass fades into lung.
        const wgt = rho < 0.55 ? 1 : 1 - smooth(0.55, 1, rho);
        const g = base + wgt * (les.ggoHu - base);
        const current = lab[i]!;
        if (g > hu[i]!) hu[i] = g; // vessels stay visible through ground glass
        if (wgt >= 0.5 && current !== L.VESSEL && current !== L.CONSOLIDATION) lab[i] = L.GGO;
        if (les.core > 0) {
          const rc = rho / les.core;
          if (rc < 1) {
            const wc = rc < 0.6 ? 1 : 1 - smooth(0.6, 1, rc);
            hu[i] = hu[i]! + wc * (les.consHu - hu[i]!);
            if (wc >= 0.5) lab[i] = L.CONSOLIDATION;
          }
        }
      }
    }
  }
}

function measureTruth(c: Canvas): PhantomTruth {
  const r = REFERENCE_REGION;
  const lab = c.label;
  let lung = 0;
  for (let y = r.rowStart; y < r.rowEnd; y++) {
    const base = y * c.width;
    for (let x = r.colStart; x < r.colEnd; x++) if ((LUNG_LIKE >>> lab[base + x]!) & 1) lung++;
  }
  let lesion = 0;
  for (let i = 0; i < lab.length; i++) {
    const l = lab[i]!;
    if (l === L.GGO || l === L.CONSOLIDATION) lesion++;
  }
  const area = (r.rowEnd - r.rowStart) * (r.colEnd - r.colStart);
  const lungFraction = lung / area;
  return {
    lungOpen: lungFraction >= OPEN_LUNG_FRACTION,
    lesion: lesion >= MIN_LESION_PIXELS,
    lungFraction: Math.round(lungFraction * 1e4) / 1e4,
    lesionPixels: lesion,
  };
}

/** 65,536 standard normal values, drawn once with a fixed seed: the noise of every phantom picks from them. */
let gaussTable: Float32Array | undefined;

function gaussianTable(): Float32Array {
  if (gaussTable === undefined) {
    const r = createRng(0x6a09e667);
    gaussTable = new Float32Array(65536);
    for (let i = 0; i < gaussTable.length; i++) gaussTable[i] = r.normal();
  }
  return gaussTable;
}

/**
 * Blur (the scanner's partial-volume softness, kernel [1 2 1]/4 each way), add Gaussian noise and
 * map to the raw domain, fused into two passes because this is most of a slice's cost. Noise:
 * each mulberry32 draw (inlined) indexes the normal table twice, several times faster than
 * Box–Muller per pixel and indistinguishable from it at 16-bit precision.
 */
function blurNoiseToRaw(c: Canvas, scratch: Float32Array, sigma: number, seed: number): Uint16Array {
  const { width: w, height: h, hu } = c;
  // Horizontal pass into scratch; edges repeat the border pixel.
  for (let y = 0; y < h; y++) {
    const base = y * w;
    let prev = hu[base]!;
    let cur = prev;
    for (let x = 0; x < w; x++) {
      const next = x + 1 < w ? hu[base + x + 1]! : cur;
      scratch[base + x] = prev + 2 * cur + next;
      prev = cur;
      cur = next;
    }
  }
  const out = new Uint16Array(w * h);
  const table = gaussianTable();
  let state = seed | 0; // int32 throughout: uint32 values would leave V8's small-integer fast path
  // raw = HU + 1024, rounded: + 0.5 and truncation, which is exact for the non-negative values kept.
  const offset = RAW_HU_OFFSET + 0.5;
  for (let y = 0; y < h; y++) {
    const up = (y > 0 ? y - 1 : 0) * w;
    const mid = y * w;
    const down = (y + 1 < h ? y + 1 : y) * w;
    // Widths are even (512), so noise pairs never straddle rows.
    for (let x = 0; x < w; x += 2) {
      state = (state + 0x6d2b79f5) | 0;
      let t = state;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      t ^= t >>> 14;
      const i = mid + x;
      const va =
        (scratch[up + x]! + 2 * scratch[i]! + scratch[down + x]!) * 0.0625 +
        offset +
        sigma * table[t & 0xffff]!;
      out[i] = va < 0 ? 0 : va >= 65535 ? 65535 : va | 0;
      const vb =
        (scratch[up + x + 1]! + 2 * scratch[i + 1]! + scratch[down + x + 1]!) * 0.0625 +
        offset +
        sigma * table[t >>> 16]!;
      out[i + 1] = vb < 0 ? 0 : vb >= 65535 ? 65535 : vb | 0;
    }
  }
  return out;
}
