/**
 * A PNG of a simulation run over time, drawn with pngjs: visible inference messages (the scaling
 * metric's numerator, blue, left axis) and running tasks (red), desired tasks (orange, dashed) and
 * GPU hosts (grey) on the right axis, with ticks, numbers and a legend in a small built-in
 * 3×5 pixel font (no font files).
 */
import { PNG } from 'pngjs';
import type { SimulationResult } from './result.js';

type Rgb = readonly [number, number, number];

const BLUE: Rgb = [31, 90, 200];
const RED: Rgb = [210, 40, 40];
const ORANGE: Rgb = [240, 150, 20];
const GREY: Rgb = [140, 140, 140];
const BLACK: Rgb = [0, 0, 0];
const GRID: Rgb = [228, 228, 228];

// 3×5 glyphs, rows top to bottom, '1' = ink.
const GLYPHS: Record<string, string> = {
  '0': '111101101101111',
  '1': '010110010010111',
  '2': '111001111100111',
  '3': '111001111001111',
  '4': '101101111001001',
  '5': '111100111001111',
  '6': '111100111101111',
  '7': '111001001010010',
  '8': '111101111101111',
  '9': '111101111001111',
  A: '010101111101101',
  B: '110101110101110',
  C: '011100100100011',
  D: '110101101101110',
  E: '111100110100111',
  F: '111100110100100',
  G: '011100101101011',
  H: '101101111101101',
  I: '111010010010111',
  J: '001001001101010',
  K: '101101110101101',
  L: '100100100100111',
  M: '101111111101101',
  N: '110101101101101',
  O: '010101101101010',
  P: '110101110100100',
  Q: '010101101110011',
  R: '110101110101101',
  S: '011100010001110',
  T: '111010010010010',
  U: '101101101101111',
  V: '101101101101010',
  W: '101101111111101',
  X: '101101010101101',
  Y: '101101010010010',
  Z: '111001010100111',
  '.': '000000000000010',
  ',': '000000000010100',
  ':': '000010000010000',
  '-': '000000111000000',
  '/': '001001010100100',
  '(': '010100100100010',
  ')': '010001001001010',
  '=': '000111000111000',
  '%': '101001010100101',
  ' ': '000000000000000',
};

/** A drawing surface with the few primitives the plot needs. */
class Canvas {
  readonly png: PNG;
  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    this.png = new PNG({ width, height });
    this.png.data.fill(255);
  }
  set(x: number, y: number, c: Rgb): void {
    const xi = Math.round(x);
    const yi = Math.round(y);
    if (xi < 0 || yi < 0 || xi >= this.width || yi >= this.height) return;
    const i = (yi * this.width + xi) * 4;
    this.png.data[i] = c[0];
    this.png.data[i + 1] = c[1];
    this.png.data[i + 2] = c[2];
    this.png.data[i + 3] = 255;
  }
  line(xa: number, ya: number, xb: number, yb: number, c: Rgb, thick = 1, dash = 0): void {
    const n = Math.max(1, Math.ceil(Math.hypot(xb - xa, yb - ya)));
    for (let k = 0; k <= n; k++) {
      if (dash > 0 && Math.floor(k / dash) % 2 === 1) continue;
      const x = xa + ((xb - xa) * k) / n;
      const y = ya + ((yb - ya) * k) / n;
      for (let d = 0; d < thick; d++) {
        this.set(x, y + d, c);
        this.set(x + d, y, c);
      }
    }
  }
  /** Text at (x, y) = top left, glyphs scaled by `scale`; returns its width. */
  text(x: number, y: number, text: string, c: Rgb, scale = 2): number {
    let cx = x;
    for (const ch of text.toUpperCase()) {
      const glyph = GLYPHS[ch] ?? GLYPHS[' '] ?? '';
      for (let r = 0; r < 5; r++) {
        for (let col = 0; col < 3; col++) {
          if (glyph[r * 3 + col] !== '1') continue;
          for (let dy = 0; dy < scale; dy++)
            for (let dx = 0; dx < scale; dx++) this.set(cx + col * scale + dx, y + r * scale + dy, c);
        }
      }
      cx += 4 * scale;
    }
    return cx - x;
  }
  static textWidth(text: string, scale = 2): number {
    return text.length * 4 * scale;
  }
}

/** A round axis maximum ≥ `value` and its tick step (1, 2 or 5 × 10^k, about 5 ticks). */
function niceAxis(value: number, wholeSteps: boolean): { max: number; step: number } {
  const v = Math.max(value, wholeSteps ? 1 : 1e-9);
  const raw = v / 5;
  const power = 10 ** Math.floor(Math.log10(raw));
  let step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  if (wholeSteps) step = Math.max(1, Math.round(step));
  return { max: Math.ceil(v / step) * step, step };
}

function label(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

/** Draw the run's timeline; returns PNG bytes. */
export function renderSimulationPng(
  result: Pick<SimulationResult, 'timeline'>,
  options: { readonly width?: number; readonly height?: number; readonly title?: string } = {},
): Uint8Array {
  const width = options.width ?? 900;
  const height = options.height ?? 480;
  const c = new Canvas(width, height);
  const points = result.timeline;
  const left = 70;
  const right = width - 60;
  const top = options.title === undefined ? 20 : 40;
  const bottom = height - 110;
  const tEnd = Math.max(60, points[points.length - 1]?.t ?? 60);
  const hours = tEnd > 3 * 3600;
  const unit = hours ? 3600 : 60;
  const xAxis = niceAxis(tEnd / unit, false);
  const yLeft = niceAxis(
    points.reduce((a, p) => Math.max(a, p.visible), 0),
    true,
  );
  const yRight = niceAxis(
    points.reduce((a, p) => Math.max(a, p.running, p.desired, p.hosts), 0),
    true,
  );
  const px = (t: number) => left + ((t / unit) * (right - left)) / xAxis.max;
  const pyL = (v: number) => bottom - (v * (bottom - top)) / yLeft.max;
  const pyR = (v: number) => bottom - (v * (bottom - top)) / yRight.max;

  if (options.title !== undefined) c.text(left, 12, options.title, BLACK);
  // Grid and ticks.
  for (let v = 0; v <= yLeft.max + 1e-9; v += yLeft.step) {
    const y = pyL(v);
    c.line(left, y, right, y, GRID);
    c.line(left - 5, y, left, y, BLACK);
    const s = label(v);
    c.text(left - 8 - Canvas.textWidth(s), y - 5, s, BLUE);
  }
  for (let v = 0; v <= yRight.max + 1e-9; v += yRight.step) {
    const y = pyR(v);
    c.line(right, y, right + 5, y, BLACK);
    c.text(right + 9, y - 5, label(v), RED);
  }
  for (let v = 0; v <= xAxis.max + 1e-9; v += xAxis.step) {
    const x = px(v * unit);
    c.line(x, top, x, bottom, GRID);
    c.line(x, bottom, x, bottom + 5, BLACK);
    const s = label(+v.toFixed(6));
    c.text(x - Canvas.textWidth(s) / 2, bottom + 9, s, BLACK);
  }
  c.line(left, top, left, bottom, BLACK);
  c.line(right, top, right, bottom, BLACK);
  c.line(left, bottom, right, bottom, BLACK);
  const xTitle = hours ? 'time (hours)' : 'time (minutes)';
  c.text((left + right) / 2 - Canvas.textWidth(xTitle) / 2, bottom + 24, xTitle, BLACK);

  // Series: steps between samples (the state holds until the next sample).
  const series = (
    f: (p: (typeof points)[number]) => number,
    py: (v: number) => number,
    colour: Rgb,
    thick: number,
    dash = 0,
  ) => {
    for (let i = 1; i < points.length; i++) {
      const a = points[i - 1];
      const b = points[i];
      if (a === undefined || b === undefined) continue;
      c.line(px(a.t), py(f(a)), px(b.t), py(f(a)), colour, thick, dash);
      c.line(px(b.t), py(f(a)), px(b.t), py(f(b)), colour, thick, dash);
    }
  };
  series((p) => p.hosts, pyR, GREY, 2);
  series((p) => p.desired, pyR, ORANGE, 2, 6);
  series((p) => p.running, pyR, RED, 2);
  series((p) => p.visible, pyL, BLUE, 1);

  // Legend.
  const entries: [Rgb, string][] = [
    [BLUE, 'visible messages (left)'],
    [RED, 'running tasks (right)'],
    [ORANGE, 'desired tasks (right)'],
    [GREY, 'GPU hosts (right)'],
  ];
  let lx = left;
  let ly = bottom + 46;
  for (const [colour, text] of entries) {
    const w = 30 + Canvas.textWidth(text) + 24;
    if (lx + w > right) {
      lx = left;
      ly += 20;
    }
    c.line(lx, ly + 4, lx + 22, ly + 4, colour, 3);
    c.text(lx + 28, ly, text, BLACK);
    lx += w;
  }
  return PNG.sync.write(c.png);
}
