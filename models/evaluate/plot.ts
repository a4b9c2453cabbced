/**
 * A PNG of the patient-level threshold sweep, drawn with pngjs: x = vote threshold (0…1), y = the
 * fraction of COVID patients decided COVID (red) and of normal patients decided normal (blue), on
 * a grid every 0.1, with a dashed grey line at the chosen threshold. No text: the command prints
 * the legend.
 */
import { PNG } from 'pngjs';
import type { PatientTable } from '../../core/metrics.js';

/** The plot's colours, for the legend. */
export const SWEEP_PLOT_LEGEND = {
  covid: 'red: COVID patients decided COVID (of all COVID patients)',
  normal: 'blue: normal patients decided normal (of all normal patients)',
  threshold: 'dashed grey: the chosen threshold',
} as const;

type Rgb = readonly [number, number, number];

/** Draw the sweep; returns PNG bytes. */
export function renderSweepPng(
  sweep: readonly PatientTable[],
  threshold: number,
  size: { readonly width?: number; readonly height?: number } = {},
): Uint8Array {
  const width = size.width ?? 640;
  const height = size.height ?? 400;
  const png = new PNG({ width, height });
  png.data.fill(255);
  const margin = 40;
  const x0 = margin;
  const x1 = width - margin / 2;
  const y0 = height - margin;
  const y1 = margin / 2;
  const px = (t: number) => x0 + t * (x1 - x0);
  const py = (v: number) => y0 + v * (y1 - y0);
  const set = (x: number, y: number, c: Rgb) => {
    const xi = Math.round(x);
    const yi = Math.round(y);
    if (xi < 0 || yi < 0 || xi >= width || yi >= height) return;
    const i = (yi * width + xi) * 4;
    png.data[i] = c[0];
    png.data[i + 1] = c[1];
    png.data[i + 2] = c[2];
    png.data[i + 3] = 255;
  };
  const line = (xa: number, ya: number, xb: number, yb: number, c: Rgb, thick = 1, dash = 0) => {
    const n = Math.max(1, Math.ceil(Math.hypot(xb - xa, yb - ya)));
    for (let k = 0; k <= n; k++) {
      if (dash > 0 && Math.floor(k / dash) % 2 === 1) continue;
      const x = xa + ((xb - xa) * k) / n;
      const y = ya + ((yb - ya) * k) / n;
      for (let d = -(thick >> 1); d <= thick >> 1; d++) {
        set(x, y + d, c);
        set(x + d, y, c);
      }
    }
  };
  const grid: Rgb = [225, 225, 225];
  for (let k = 0; k <= 10; k++) {
    line(px(k / 10), py(0), px(k / 10), py(1), grid);
    line(px(0), py(k / 10), px(1), py(k / 10), grid);
  }
  const axis: Rgb = [0, 0, 0];
  line(px(0), py(0), px(1), py(0), axis, 2);
  line(px(0), py(0), px(0), py(1), axis, 2);
  for (let k = 0; k <= 10; k++) {
    line(px(k / 10), py(0), px(k / 10), py(0) + (k % 5 === 0 ? 8 : 4), axis);
    line(px(0), py(k / 10), px(0) - (k % 5 === 0 ? 8 : 4), py(k / 10), axis);
  }
  line(px(threshold), py(0), px(threshold), py(1), [140, 140, 140], 1, 4);
  const series = (value: (t: PatientTable) => number | null, c: Rgb) => {
    let prev: [number, number] | undefined;
    for (const t of sweep) {
      const v = value(t);
      if (v === null) {
        prev = undefined;
        continue;
      }
      const p: [number, number] = [px(t.threshold), py(v)];
      if (prev) line(prev[0], prev[1], p[0], p[1], c, 3);
      for (let d = -2; d <= 2; d++) line(p[0] - 2, p[1] + d, p[0] + 2, p[1] + d, c);
      prev = p;
    }
  };
  const frac = (n: number, d: number) => (d === 0 ? null : n / d);
  series((t) => frac(t.covidCorrect, t.covidCorrect + t.covidMissed), [220, 30, 30]);
  series((t) => frac(t.normalCorrect, t.normalCorrect + t.normalFlagged), [30, 70, 220]);
  return new Uint8Array(PNG.sync.write(png));
}
