/**
 * Rendering one phantom slice: the organs in order (organs.ts), the pulmonary vessels and lesions
 * that cross slices, the ground truth measured on the labels, then blur, noise and the raw domain.
 */
import { REFERENCE_REGION } from '../selection.js';
import { RAW_HU_OFFSET } from '../slice.js';
import { type Anatomy, frameAt, L, LUNG_FULL, LUNG_LIKE, lungZ, type SliceFrame, smooth } from './anatomy.js';
import {
  drawAbdomen,
  drawAirways,
  drawBones,
  drawHeartAndVessels,
  drawLungs,
  drawMediastinumBehind,
  drawTable,
} from './organs.js';
import {
  MIN_LESION_PIXELS,
  OPEN_LUNG_FRACTION,
  PHANTOM_EXTENT_MM,
  PHANTOM_PIXEL_SPACING,
  type PhantomInfo,
  type PhantomSlice,
  type PhantomTruth,
} from './phantom-spec.js';
import { createRng, hash32 } from './random.js';
import { type Canvas, fillCapsule, fillSuperellipse } from './raster.js';

/** Buffers reused from slice to slice of one phantom: allocating 1.5 MB per slice costs more than drawing it. */
export interface Workspace {
  readonly canvas: Canvas;
  readonly scratch: Float32Array;
}

export function renderSlice(
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
