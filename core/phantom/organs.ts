/**
 * Drawing a phantom slice's fixed anatomy, organ by organ, over the canvas: table, abdomen,
 * mediastinum, lungs, heart and great vessels, airways and bones. Each draws in HU and labels the
 * pixels it owns; render.ts calls them in order and adds pulmonary vessels and lesions.
 */
import { type Anatomy, INSIDE_BODY, L, LUNG_FULL, type SliceFrame, SOFT_OR_FAT, smooth } from './anatomy.js';
import {
  ANY,
  type Canvas,
  fillCapsule,
  fillEllipse,
  fillRotatedEllipse,
  fillSuperellipse,
  maskOf,
} from './raster.js';

export function drawTable(c: Canvas, an: Anatomy, f: SliceFrame): void {
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

export type Map1 = (x: number) => number;

export function drawAbdomen(c: Canvas, an: Anatomy, f: SliceFrame, X: Map1, Y: Map1, s: number): void {
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

export function drawMediastinumBehind(
  c: Canvas,
  an: Anatomy,
  f: SliceFrame,
  X: Map1,
  Y: Map1,
  s: number,
): void {
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

export function drawLungs(c: Canvas, an: Anatomy, f: SliceFrame): void {
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

export function drawHeartAndVessels(
  c: Canvas,
  an: Anatomy,
  f: SliceFrame,
  X: Map1,
  Y: Map1,
  s: number,
): void {
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

export function drawAirways(c: Canvas, an: Anatomy, f: SliceFrame, X: Map1, Y: Map1, s: number): void {
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

export function drawBones(c: Canvas, an: Anatomy, f: SliceFrame, X: Map1, Y: Map1, s: number): void {
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
