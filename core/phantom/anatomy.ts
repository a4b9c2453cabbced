/**
 * A phantom's anatomy: every random choice of a series, drawn once from the seed (body, lungs,
 * vessel trees, lesions), and where the body and each lung are at one position along the series.
 */
import type { PhantomOptions } from './phantom-spec.js';
import { PhantomLabel } from './phantom-spec.js';
import { createRng, hash32, type Rng } from './random.js';
import { maskOf } from './raster.js';

// ---------------------------------------------------------------------------------------------
// Anatomy: every random choice of a series, drawn once. Positions are in body-normalised units
// (u across, −1…1 right to left of the image; v front to back, −1 anterior … +1 posterior) or in
// lung-normalised units (lu lateral-positive, lv posterior-positive, z along the lung's height).
// `t` is the position along the series, 0 at the neck and 1 in the upper abdomen.

export const L = PhantomLabel;
export const LUNG_LIKE = maskOf(L.LUNG, L.VESSEL, L.GGO, L.CONSOLIDATION);
export const INSIDE_BODY = maskOf(L.FAT, L.SOFT_TISSUE, L.BONE, L.MARROW);
export const SOFT_OR_FAT = maskOf(L.FAT, L.SOFT_TISSUE);

/** One vessel segment in lung-normalised coordinates. */
export interface VesselSegment {
  readonly side: number;
  readonly a: readonly [number, number, number];
  readonly b: readonly [number, number, number];
  /** Radius in pixels. */
  readonly radius: number;
}

/** One lesion: a lobulated ellipsoid near the pleura. */
export interface Lesion {
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

export interface Anatomy {
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

export function drawAnatomy(o: Required<PhantomOptions>): Anatomy {
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
// Where things are in one slice.

export const smooth = (e0: number, e1: number, x: number): number => {
  const k = Math.max(0, Math.min(1, (x - e0) / (e1 - e0)));
  return k * k * (3 - 2 * k);
};

/** Where the body and each lung are at one t. */
export interface SliceFrame {
  readonly t: number;
  readonly cx: number;
  readonly cy: number;
  /** Body half-width and half-height at this t. */
  readonly at: number;
  readonly bt: number;
  /** Per lung (0 = image left): open (0…1), centre and half-sizes in body units; full-size centre and half-sizes. */
  readonly lungs: readonly LungFrame[];
}

export interface LungFrame {
  readonly sign: number;
  readonly open: number;
  readonly uc: number;
  readonly vc: number;
  readonly ru: number;
  readonly rv: number;
  /** Dome radius in lung-normalised units (0: no dome in this slice). */
  readonly dome: number;
}

export const LUNG_FULL = { uc: 0.47, vc: -0.03, ru: 0.385, rv: 0.84 } as const;
/** The lung's t span mapped to its normalised height z = −1…1 (for vessels). */
export const lungZ = (an: Anatomy, side: number, t: number): number => {
  const top = an.apexT[side]!;
  const bottom = an.domeT[side]! + an.domeSpan;
  return ((t - top) / (bottom - top)) * 2 - 1;
};

export function frameAt(an: Anatomy, t: number): SliceFrame {
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
