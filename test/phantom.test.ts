import { describe, expect, it } from 'vitest';
import { InputError } from '../core/errors.js';
import {
  createPhantom,
  generatePhantomSeries,
  PhantomLabel as L,
  MIN_LESION_PIXELS,
  OPEN_LUNG_FRACTION,
  type PhantomLabelValue,
  resolvePhantomOptions,
} from '../core/phantom/phantom.js';
import { createRng, hash32 } from '../core/phantom/random.js';
import { countDarkPixels, REFERENCE_REGION, selectByCounts } from '../core/selection.js';
import type { RawRows } from '../core/slice.js';

const HEADER = {
  file: 'phantom',
  format: 'tiff',
  width: 512,
  height: 512,
  rescaleSlope: 1,
  rescaleIntercept: -1024,
} as const;
const rows = (pixels: Uint16Array): RawRows => ({ header: HEADER, rowStart: 0, rowCount: 512, pixels });

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

/** HU of the pixels with one label. */
function huOf(pixels: Uint16Array, labels: Uint8Array, label: PhantomLabelValue): number[] {
  const out: number[] = [];
  for (let i = 0; i < labels.length; i++) if (labels[i] === label) out.push(pixels[i]! - 1024);
  return out;
}

describe('phantom random', () => {
  it('is deterministic and roughly uniform and normal', () => {
    const a = createRng(42);
    const b = createRng(42);
    const xs = Array.from({ length: 20000 }, () => a.next());
    expect(xs.slice(0, 5)).toEqual(Array.from({ length: 5 }, () => b.next()));
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(mean).toBeCloseTo(0.5, 1);
    const ns = Array.from({ length: 20000 }, () => a.normal());
    const m = ns.reduce((s, x) => s + x, 0) / ns.length;
    const sd = Math.sqrt(ns.reduce((s, x) => s + (x - m) ** 2, 0) / ns.length);
    expect(Math.abs(m)).toBeLessThan(0.03);
    expect(sd).toBeGreaterThan(0.97);
    expect(sd).toBeLessThan(1.03);
    expect(hash32(1, 2)).not.toBe(hash32(2, 1));
    expect(hash32(1)).not.toBe(hash32(1 + 2 ** 32));
  });
});

describe('phantom options', () => {
  it('rejects bad options with one-line input errors', () => {
    expect(() => resolvePhantomOptions({ seed: -1, covid: false })).toThrow(InputError);
    expect(() => resolvePhantomOptions({ seed: 1.5, covid: false })).toThrow(/seed: must be a whole number/);
    expect(() => resolvePhantomOptions({ seed: 1, covid: false, slices: 0 })).toThrow(
      /slices: must be a whole number from 1 to 1000, got 0/,
    );
    expect(() => resolvePhantomOptions({ seed: 1, covid: false, slices: 1001 })).toThrow(InputError);
    expect(() => createPhantom({ seed: 1, covid: false, slices: 3 }).slice(3)).toThrow(RangeError);
  });

  it('draws the noise level from the seed unless given', () => {
    const r = resolvePhantomOptions({ seed: 9, covid: true });
    expect(r.noiseHu).toBeGreaterThanOrEqual(15);
    expect(r.noiseHu).toBeLessThanOrEqual(25);
    expect(r.slices).toBe(60);
    expect(resolvePhantomOptions({ seed: 9, covid: true, noiseHu: 0 }).noiseHu).toBe(0);
  });
});

describe('phantom series', () => {
  it('gives identical bytes for the same seed and different bytes for another', () => {
    const a = generatePhantomSeries({ seed: 7, covid: true, slices: 8 });
    const b = generatePhantomSeries({ seed: 7, covid: true, slices: 8 });
    const c = generatePhantomSeries({ seed: 8, covid: true, slices: 8 });
    expect(a.slices).toHaveLength(8);
    for (let i = 0; i < 8; i++) {
      expect(Buffer.from(a.slices[i]!.pixels.buffer).equals(Buffer.from(b.slices[i]!.pixels.buffer))).toBe(
        true,
      );
      expect(a.slices[i]!.truth).toEqual(b.slices[i]!.truth);
      expect(Buffer.from(a.slices[i]!.pixels.buffer).equals(Buffer.from(c.slices[i]!.pixels.buffer))).toBe(
        false,
      );
    }
    // Lazy access in any order gives the same slice as the series in order.
    const lazy = createPhantom({ seed: 7, covid: true, slices: 8 });
    expect(Buffer.from(lazy.slice(5).pixels.buffer).equals(Buffer.from(a.slices[5]!.pixels.buffer))).toBe(
      true,
    );
    expect(a.slices.map((s) => s.instanceNumber)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(a.slices[0]!.sliceLocation).toBeGreaterThan(a.slices[7]!.sliceLocation);
    expect(a.sliceThickness).toBeCloseTo(300 / 8);
  });

  it('draws tissues in their Hounsfield ranges', () => {
    const p = createPhantom({ seed: 3, covid: true, slices: 60 });
    const mid = p.slice(24, { labels: true });
    const { pixels, labels } = mid;
    expect(labels).toBeDefined();
    const lab = labels!;
    const med = (l: PhantomLabelValue) => median(huOf(pixels, lab, l));
    expect(Math.abs(med(L.AIR) + 1000)).toBeLessThan(15);
    expect(med(L.FAT)).toBeGreaterThan(-130);
    expect(med(L.FAT)).toBeLessThan(-70);
    expect(med(L.SOFT_TISSUE)).toBeGreaterThan(20);
    expect(med(L.SOFT_TISSUE)).toBeLessThan(70);
    expect(med(L.LUNG)).toBeGreaterThan(-900);
    expect(med(L.LUNG)).toBeLessThan(-800);
    expect(med(L.BONE)).toBeGreaterThan(350); // thin cortex, softened by partial volume
    expect(med(L.MARROW)).toBeGreaterThan(150);
    // Every lung parenchyma pixel is dark in the paper's sense (< −724 HU) at this noise level,
    // except where partial volume with a vessel or a wall lifts it.
    const lung = huOf(pixels, lab, L.LUNG);
    expect(lung.filter((h) => h < -724).length / lung.length).toBeGreaterThan(0.9);
    // The body sits in air, with the table below it.
    expect(lab[0]).toBe(L.AIR);
    expect(lab[256 * 512 + 256]).not.toBe(L.AIR);
    expect(huOf(pixels, lab, L.TABLE).length).toBeGreaterThan(500);
  });

  it('adds noise of the requested level and nothing else', () => {
    const quiet = createPhantom({ seed: 11, covid: false, slices: 20, noiseHu: 0 }).slice(8).pixels;
    const noisy = createPhantom({ seed: 11, covid: false, slices: 20, noiseHu: 20 }).slice(8).pixels;
    let n = 0;
    let sum = 0;
    let sum2 = 0;
    for (let i = 0; i < quiet.length; i++) {
      if (quiet[i]! < 100) continue; // away from the clamp at raw 0
      const d = noisy[i]! - quiet[i]!;
      n++;
      sum += d;
      sum2 += d * d;
    }
    const mean = sum / n;
    const sd = Math.sqrt(sum2 / n - mean * mean);
    expect(Math.abs(mean)).toBeLessThan(0.3);
    expect(sd).toBeGreaterThan(19);
    expect(sd).toBeLessThan(21);
  });

  it('keeps ground truth consistent with the labels and the lesion HU ranges', () => {
    const covid = createPhantom({ seed: 21, covid: true, slices: 40 });
    const normal = createPhantom({ seed: 21, covid: false, slices: 40 });
    const region = REFERENCE_REGION;
    const area = (region.rowEnd - region.rowStart) * (region.colEnd - region.colStart);
    let lesionSlices = 0;
    let left = 0;
    let right = 0;
    const ggo: number[] = [];
    const cons: number[] = [];
    for (const s of covid.slices({ labels: true })) {
      const lab = s.labels!;
      let lung = 0;
      for (let y = region.rowStart; y < region.rowEnd; y++) {
        for (let x = region.colStart; x < region.colEnd; x++) {
          const l = lab[y * 512 + x]!;
          if (l === L.LUNG || l === L.VESSEL || l === L.GGO || l === L.CONSOLIDATION) lung++;
        }
      }
      expect(s.truth.lungFraction).toBeCloseTo(lung / area, 3);
      expect(s.truth.lungOpen).toBe(lung / area >= OPEN_LUNG_FRACTION);
      let lesion = 0;
      for (let i = 0; i < lab.length; i++) {
        if (lab[i] === L.GGO || lab[i] === L.CONSOLIDATION) {
          lesion++;
          if (i % 512 < 256) left++;
          else right++;
        }
      }
      expect(s.truth.lesionPixels).toBe(lesion);
      expect(s.truth.lesion).toBe(lesion >= MIN_LESION_PIXELS);
      if (s.truth.lesion) {
        lesionSlices++;
        // Lesions lie in lung: the slice shows lung somewhere.
        expect(lab.some((l) => l === L.LUNG)).toBe(true);
        ggo.push(...huOf(s.pixels, lab, L.GGO));
        cons.push(...huOf(s.pixels, lab, L.CONSOLIDATION));
      }
    }
    // Some, not all, of the middle slices; bilateral.
    expect(lesionSlices).toBeGreaterThan(4);
    expect(lesionSlices).toBeLessThan(30);
    expect(left).toBeGreaterThan(200);
    expect(right).toBeGreaterThan(200);
    // Ground glass −700…−300 HU, consolidation −100…+50 HU (medians; edges blend into lung).
    expect(median(ggo)).toBeGreaterThan(-700);
    expect(median(ggo)).toBeLessThan(-300);
    expect(cons.length).toBeGreaterThan(0);
    expect(median(cons)).toBeGreaterThan(-100);
    expect(median(cons)).toBeLessThan(50);
    // The normal series is the same body without lesions.
    for (const s of normal.slices()) expect(s.truth.lesion).toBe(false);
  });

  it('closes the lung at both ends of the series', () => {
    const p = createPhantom({ seed: 5, covid: false, slices: 60 });
    const truth = [...p.slices()].map((s) => s.truth);
    for (const i of [0, 1, 2, 57, 58, 59]) expect(truth[i]!.lungOpen).toBe(false);
    expect(truth[0]!.lungFraction).toBe(0);
    expect(truth[59]!.lungFraction).toBe(0);
    for (const i of [20, 25, 30]) expect(truth[i]!.lungOpen).toBe(true);
    const single = createPhantom({ seed: 5, covid: false, slices: 1 }).slice(0);
    expect(single.truth.lungOpen).toBe(true);
  });

  it("behaves under the paper's selection as real series do (the key report)", () => {
    const started = performance.now();
    let openSelected = 0;
    let openMissed = 0;
    let closedSelected = 0;
    let closedRejected = 0;
    let selectedTotal = 0;
    let slicesTotal = 0;
    const perSeries: string[] = [];
    for (let k = 0; k < 20; k++) {
      const covid = k < 10;
      const phantom = createPhantom({ seed: 100 + k, covid });
      const counts: number[] = [];
      const open: boolean[] = [];
      for (const s of phantom.slices()) {
        counts.push(countDarkPixels(rows(s.pixels)));
        open.push(s.truth.lungOpen);
      }
      const { selected } = selectByCounts(counts);
      let sel = 0;
      for (let i = 0; i < counts.length; i++) {
        if (selected[i]) sel++;
        if (open[i]) selected[i] ? openSelected++ : openMissed++;
        else selected[i] ? closedSelected++ : closedRejected++;
      }
      selectedTotal += sel;
      slicesTotal += counts.length;
      perSeries.push(`${covid ? 'C' : 'N'}${100 + k}:${sel}/${counts.length}`);
    }
    const openTotal = openSelected + openMissed;
    const closedTotal = closedSelected + closedRejected;
    const ms = performance.now() - started;
    console.log(
      `phantom selection report (20 series × 60 slices, 10 COVID + 10 normal): ` +
        `${selectedTotal}/${slicesTotal} slices selected (${((100 * selectedTotal) / slicesTotal).toFixed(1)} %); ` +
        `open-lung slices selected ${openSelected}/${openTotal} (${((100 * openSelected) / openTotal).toFixed(1)} %); ` +
        `closed slices selected ${closedSelected}/${closedTotal} (${((100 * closedSelected) / closedTotal).toFixed(1)} %); ` +
        `per series ${perSeries.join(' ')}; ${(ms / slicesTotal).toFixed(1)} ms per slice generated and counted`,
    );
    expect(openSelected / openTotal).toBeGreaterThanOrEqual(0.9);
    expect(closedSelected / closedTotal).toBeLessThanOrEqual(0.05);
    // Like real neck-to-abdomen series, somewhat under half of the slices are selected.
    expect(selectedTotal / slicesTotal).toBeGreaterThan(0.3);
    expect(selectedTotal / slicesTotal).toBeLessThan(0.6);
  });
});
